package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// ParseSettings decodes one instance's settings, as Validate receives
// them, into a T: members by their json tags, as encoding/json does, but
// refusing what a lenient decoder would let through. A member T has no
// field for (names are case-sensitive), a value of the wrong type, or
// settings that are not a JSON object come back as FieldErrors naming the
// field, ready to return from Validate:
//
//	func (s *Sink) Validate(_ context.Context, _ string, raw json.RawMessage) (json.RawMessage, error) {
//		st, err := sdk.ParseSettings[settings](raw)
//		if err != nil {
//			return nil, err
//		}
//		// check st's own fields, then
//		return json.Marshal(st)
//	}
//
// T is a struct; embed Subscription in it for "enabled" and "events".
func ParseSettings[T any](raw json.RawMessage) (T, error) {
	var st T
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return st, FieldErrors{{Field: "settings", Message: `must be a JSON object, e.g. {"enabled": true, "events": ["MESSAGES_UPSERT"]}`}}
	}
	known := jsonNames(reflect.TypeFor[T]())
	var fe FieldErrors
	for _, name := range slices.Sorted(maps.Keys(members)) {
		if !slices.Contains(known, name) {
			fe.Add(name, "unknown field; these settings take %s", strings.Join(known, ", "))
		}
	}
	if err := fe.Err(); err != nil {
		return st, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fieldError(err, known)
	}
	return st, nil
}

// fieldError turns an encoding/json error into FieldErrors, naming the
// field by its JSON path (without the Go names of embedded structs).
func fieldError(err error, known []string) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		path := strings.Split(te.Field, ".")
		for len(path) > 1 && !slices.Contains(known, path[0]) {
			path = path[1:]
		}
		return FieldErrors{{Field: strings.Join(path, "."), Message: fmt.Sprintf("got a JSON %s, want %s", te.Value, jsonKind(te.Type))}}
	}
	return FieldErrors{{Field: "settings", Message: err.Error()}}
}

// jsonKind names a Go type as the JSON a client must send.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list, each " + jsonKind(t.Elem())
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.String()
}

// jsonNames lists the top-level member names encoding/json decodes into a
// struct type: tagged names, untagged field names, and those of embedded
// structs without a tag.
func jsonNames(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case name == "-" && tag == "-":
		case f.Anonymous && name == "":
			out = append(out, jsonNames(f.Type)...)
		case !f.IsExported():
		case name != "":
			out = append(out, name)
		default:
			out = append(out, f.Name)
		}
	}
	return out
}

// settingsCache holds the last decoded settings of each (type, instance).
var settingsCache struct {
	sync.Mutex
	m map[settingsKey]settingsEntry
}

type settingsKey struct {
	t        reflect.Type
	instance string
}

type settingsEntry struct {
	raw []byte
	v   any
}

// maxCachedSettings bounds the cache; it starts over when full.
const maxCachedSettings = 4096

// SettingsOf returns d's instance settings as a T, decoded once per
// instance and settings: every delivery of a batch carries the same ones,
// and they change only when a client sets them again. Members T has no
// field for are ignored here (Validate refused them when the settings were
// set; a newer host may add members of its own). An error means the stored
// settings do not fit T at all and retrying cannot help: it is Permanent.
func SettingsOf[T any](d Delivery) (T, error) {
	key := settingsKey{reflect.TypeFor[T](), d.Instance}
	settingsCache.Lock()
	e, ok := settingsCache.m[key]
	settingsCache.Unlock()
	if ok && bytes.Equal(e.raw, d.Settings) {
		return e.v.(T), nil
	}
	var st T
	if err := json.Unmarshal(d.Settings, &st); err != nil {
		return st, Permanent(fmt.Errorf("instance settings: %w", fieldError(err, jsonNames(key.t))))
	}
	settingsCache.Lock()
	if len(settingsCache.m) >= maxCachedSettings || settingsCache.m == nil {
		settingsCache.m = make(map[settingsKey]settingsEntry)
	}
	settingsCache.m[key] = settingsEntry{raw: bytes.Clone(d.Settings), v: st}
	settingsCache.Unlock()
	return st, nil
}
