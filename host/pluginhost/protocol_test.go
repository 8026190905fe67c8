package pluginhost

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// oldPlugin builds testdata/oldproto into a plugin dir as
// evorelay-sink-oldproto.
func oldPlugin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, BinaryPrefix+"oldproto"), "./testdata/oldproto").CombinedOutput()
	if err != nil {
		t.Fatalf("build testdata/oldproto: %v\n%s", err, out)
	}
	return dir
}

// A plugin built for protocol 1 still runs, and reads the batch's settings
// on every delivery, where protocol 1 put them.
func TestRunsAPluginOfThePreviousProtocol(t *testing.T) {
	h, err := Start(context.Background(), options(oldPlugin(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	p, _ := h.Plugin("oldproto")
	if got := p.Describe().GetProtocolVersion(); got != sinkv1.PreviousProtocolVersion {
		t.Fatalf("the plugin speaks protocol %d, want %d", got, sinkv1.PreviousProtocolVersion)
	}
	c, err := p.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stream, err := c.Deliver(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	settings := `{"enabled":true,"events":[]}`
	err = stream.Send(&sinkv1.DeliverRequest{Instance: "shop", Settings: []byte(settings), Deliveries: []*sinkv1.Delivery{
		{Id: "a", Instance: "shop", Event: "CALL", Envelope: []byte(`{}`)},
		{Id: "b", Instance: "shop", Event: "CALL", Envelope: []byte(`{}`)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetAcks()) != 2 {
		t.Fatalf("acks %v, want 2", resp.GetAcks())
	}
	for _, a := range resp.GetAcks() {
		if a.GetReason() != settings {
			t.Errorf("delivery %s carried settings %q, want %q", a.GetId(), a.GetReason(), settings)
		}
	}
}

// A plugin of a protocol the host does not run is refused (shown failed)
// with a message that says which SDK to build it with.
func TestRefusesAnUnknownProtocolNamingTheSDK(t *testing.T) {
	dir := oldPlugin(t)
	t.Setenv("EVORELAY_OLDPROTO_VERSION", "99")
	h, err := Start(context.Background(), options(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	want := "rebuild the plugin with github.com/evorelay/evorelay/sdk " + sinkv1.SDKVersion
	st := h.Status()
	if len(st) != 1 || st[0].State != StateFailed || !strings.Contains(st[0].LastError, want) {
		t.Fatalf("status %+v; want failed, the reason saying %q", st, want)
	}
}
