package pluginhost

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	sinkv1 "github.com/evorelay/evorelay/sdk/proto/sink/v1"
)

// strangerEnv, when set, makes the test binary a stranger to the plugin
// listening at its value: strangerDial.
const strangerEnv = "EVORELAY_TEST_STRANGER_DIAL"

// strangerDial calls Describe on the plugin at addr as a plain gRPC client
// in a process the host did not start, prints the outcome and exits.
func strangerDial(addr string) {
	conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var d *sinkv1.DescribeResponse
		d, err = sinkv1.NewSinkClient(conn).Describe(ctx, &sinkv1.DescribeRequest{})
		cancel()
		if err == nil {
			fmt.Println("described:", d.GetName())
		}
	}
	if err != nil {
		fmt.Println("refused:", err)
	}
	os.Exit(0)
}

// The plugin answers its host, and a process the host did not start
// cannot call it: on Linux the plugin checks who dials (no TLS), elsewhere
// go-plugin's AutoMTLS refuses a client without the host's certificate.
func TestOnlyTheHostReachesAPlugin(t *testing.T) {
	h, err := Start(context.Background(), options(pluginDir(t, "evorelay-sink-webhook")))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	p, _ := h.Plugin("webhook")
	if st := p.Status(); st.State != StateRunning {
		t.Fatalf("status %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, fe, err := p.Validate(ctx, "i", []byte(`{"enabled":true,"events":[],"url":"ftp://x"}`)); err != nil || len(fe) == 0 {
		t.Fatalf("the host's call: %v %v", fe, err)
	}
	p.mu.Lock()
	addr := p.client.ReattachConfig().Addr
	p.mu.Unlock()
	if addr.Network() != "unix" {
		t.Fatalf("the link is %s %s, not a Unix socket", addr.Network(), addr)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), strangerEnv+"="+addr.String())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "refused:") {
		t.Fatalf("a process the host did not start called the plugin: %v %s", err, out)
	}
	// The plugin still serves its host.
	if _, _, err := p.Validate(ctx, "i", []byte(`{"enabled":true,"events":[],"url":"ftp://x"}`)); err != nil {
		t.Fatalf("the host's call after the stranger's: %v", err)
	}
}
