package main

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/evorelay/evorelay/sdk"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name, in, want string
		bad            []string // fields named in the errors
	}{
		{name: "flat", in: `{"enabled":true,"events":["MESSAGES_UPSERT"]}`, want: `{"enabled":true,"events":["MESSAGES_UPSERT"]}`},
		{name: "all events", in: `{"enabled":true,"events":[]}`, want: `{"enabled":true,"events":[]}`},
		{name: "no events field", in: `{"enabled":false}`, want: `{"enabled":false,"events":[]}`},
		{name: "evolution read-only fields dropped", in: `{"id":"x","instanceId":"y","createdAt":"z","updatedAt":"w","enabled":true,"events":["CALL"]}`,
			want: `{"enabled":true,"events":["CALL"]}`},
		{name: "unknown field", in: `{"enabled":true,"events":[],"url":"ws://x"}`, bad: []string{"url"}},
		{name: "wrong types", in: `{"enabled":"yes","events":"MESSAGES_UPSERT"}`, bad: []string{"enabled", "events"}},
		{name: "not an object", in: `[1]`, bad: []string{"enabled"}},
		{name: "null", in: `null`, bad: []string{"enabled"}},
	}
	s := New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := s.Validate(context.Background(), "i", json.RawMessage(tt.in))
			if len(tt.bad) == 0 {
				if err != nil || string(out) != tt.want {
					t.Fatalf("Validate = %s, %v; want %s", out, err, tt.want)
				}
				again, err := s.Validate(context.Background(), "i", out)
				if err != nil || string(again) != string(out) {
					t.Errorf("validating again = %s, %v", again, err)
				}
				return
			}
			var fe sdk.FieldErrors
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %s, %v; want field errors", out, err)
			}
			var named []string
			for _, e := range fe {
				named = append(named, e.Field)
				if e.Message == "" {
					t.Errorf("field %s: empty message", e.Field)
				}
			}
			if !equal(named, tt.bad) {
				t.Errorf("fields %v, want %v", named, tt.bad)
			}
		})
	}
}
