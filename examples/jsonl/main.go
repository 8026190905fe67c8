// Command evorelay-sink-jsonl is an evorelay sink written out of tree with
// the SDK alone: it appends every event it receives, as one JSON line, to
// a file per instance in EVORELAY_JSONL_DIR. Drop the binary into the
// host's plugin directory and POST /jsonl/set/{instance} turns it on.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"github.com/evorelay/evorelay/sdk"
)

// settings are one instance's settings: enabled and events (the host
// checks them) and the file to append to, <instance>.jsonl by default.
type settings struct {
	sdk.Subscription
	File string `json:"file,omitempty"`
}

type sink struct {
	sdk.UnimplementedSink
	dir string
}

func main() { sdk.Serve(&sink{}) }

func (s *sink) Describe() sdk.Description { return sdk.Description{Name: "jsonl", Version: "0.1.0"} }

// Open reads EVORELAY_JSONL_DIR, the directory the files are in.
func (s *sink) Open(_ context.Context, cfg sdk.Config) error {
	if s.dir = cfg.Settings["dir"]; s.dir == "" {
		return errors.New("EVORELAY_JSONL_DIR: not set; give the directory to write to")
	}
	return nil
}

// Validate refuses unknown members, and a file outside the directory.
func (s *sink) Validate(_ context.Context, _ string, raw json.RawMessage) (json.RawMessage, error) {
	st, err := sdk.ParseSettings[settings](raw)
	if err != nil {
		return nil, err
	}
	if st.File != "" && (filepath.Base(st.File) != st.File || st.File[0] == '.') {
		return nil, sdk.FieldErrors{{Field: "file", Message: "must be a plain file name, such as shop.jsonl"}}
	}
	return json.Marshal(st)
}

// Deliver appends the batch (one lane of an instance's events, in order)
// and syncs the file. A failure is every delivery's error: the host retries them.
func (s *sink) Deliver(_ context.Context, batch []sdk.Delivery, acks sdk.Acks) error {
	st, err := sdk.SettingsOf[settings](batch[0])
	if err != nil {
		return err
	}
	if st.File == "" {
		st.File = batch[0].Instance + ".jsonl"
	}
	var lines []byte
	for _, d := range batch {
		lines = append(append(lines, d.Envelope...), '\n')
	}
	f, err := os.OpenFile(filepath.Join(s.dir, st.File), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil { // one write: batches of other instances do not interleave
		_, err = f.Write(lines)
		err = errors.Join(err, f.Sync(), f.Close())
	}
	for _, d := range batch {
		acks.Done(d.ID, err)
	}
	return nil
}
