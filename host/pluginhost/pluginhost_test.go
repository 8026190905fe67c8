package pluginhost

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// webhookBin is the real webhook plugin, built once.
var webhookBin string

func TestMain(m *testing.M) {
	if addr := os.Getenv(strangerEnv); addr != "" {
		strangerDial(addr) // a process of its own for TestOnlyTheHostReachesAPlugin
	}
	// Quick restarts, and a hanging plugin given up on soon. Set once:
	// supervisors of one test may outlive it.
	restartBackoff0, startTimeout = 10*time.Millisecond, 5*time.Second
	dir, err := os.MkdirTemp("", "pluginhost-")
	if err != nil {
		panic(err)
	}
	webhookBin = filepath.Join(dir, "webhook")
	out, err := exec.Command("go", "build", "-o", webhookBin, "../../plugins/webhook").CombinedOutput()
	code := 1
	if err != nil {
		fmt.Fprintf(os.Stderr, "build the webhook plugin: %v\n%s", err, out)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// pluginDir holds links to the webhook binary under the given file names.
func pluginDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.Symlink(webhookBin, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func options(dir string) Options {
	return Options{Dir: dir, Settings: func(string) map[string]string { return nil }, SocketDir: dir}
}

func TestDiscover(t *testing.T) {
	dir := pluginDir(t, "evorelay-sink-webhook", "other-tool")
	must(t, os.WriteFile(filepath.Join(dir, "evorelay-sink-notes"), []byte("not executable"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "evorelay-sink-dir"), 0o755))
	got, err := discover(dir)
	if err != nil || len(got) != 1 || filepath.Base(got[0]) != "evorelay-sink-webhook" {
		t.Fatalf("discover = %v, %v; want only the executable evorelay-sink-webhook", got, err)
	}
	if _, err := discover(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "EVORELAY_PLUGIN_DIR") {
		t.Fatalf("a missing directory: %v; want an error naming EVORELAY_PLUGIN_DIR", err)
	}
}

// script writes an executable shell script into dir as file.
func script(t *testing.T, dir, file, body string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, file), []byte("#!/bin/sh\n"+body+"\n"), 0o755))
}

// Bad files in the plugin directory never stop the host: each is shown
// failed with its reason, its calls answer that reason at once, it is
// retried with backoff, and the good plugin beside them serves.
func TestBadPluginsDoNotStopTheHost(t *testing.T) {
	dir := pluginDir(t, "evorelay-sink-webhook", "evorelay-sink-hook", "evorelay-sink-events")
	attempts := filepath.Join(t.TempDir(), "attempts")
	// Prints to stdout, then runs a real plugin: go-plugin reads the
	// first line as its handshake.
	script(t, dir, "evorelay-sink-chatty", "echo starting up; exec "+webhookBin)
	// Never answers the handshake; counts how often it was started.
	script(t, dir, "evorelay-sink-hangs", "echo x >> "+attempts+"; exec sleep 600")
	// Answers the handshake for application protocol 99.
	script(t, dir, "evorelay-sink-future", "echo '1|99|unix|/nonexistent.sock|grpc|'; exec sleep 600")

	h, err := Start(context.Background(), options(dir))
	if err != nil {
		t.Fatalf("Start with bad plugins beside a good one: %v", err)
	}
	defer h.Close(context.Background())

	want := map[string]string{
		"chatty": "starting up",
		"hangs":  "timeout",
		"future": "version",
		"hook":   "name the file evorelay-sink-webhook",
		"events": "is a route of the host",
	}
	seen := map[string]bool{}
	for _, st := range h.Status() {
		seen[st.Name] = true
		if st.Name == "webhook" {
			if st.State != StateRunning || !st.Ready {
				t.Errorf("webhook beside bad plugins: %+v; want running and ready", st)
			}
			continue
		}
		if st.State != StateFailed || !strings.Contains(st.LastError, want[st.Name]) {
			t.Errorf("%s: %+v; want failed, the reason saying %q", st.Name, st, want[st.Name])
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("%s is not in Status %+v", name, h.Status())
		}
	}
	if got := h.Names(); fmt.Sprint(got) != "[chatty future hangs hook webhook]" {
		t.Errorf("Names() = %v; want every plugin but the reserved one", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bad, _ := h.Plugin("chatty")
	if _, _, err := bad.Validate(ctx, "i", []byte(`{"enabled":false,"events":[]}`)); err == nil || !strings.Contains(err.Error(), "starting up") {
		t.Errorf("Validate on a failed plugin: %v; want its reason at once", err)
	}
	good, _ := h.Plugin("webhook")
	if _, fe, err := good.Validate(ctx, "i", []byte(`{"enabled":true,"events":[],"url":"ftp://x"}`)); err != nil || len(fe) == 0 {
		t.Errorf("Validate on the good plugin: %v %v", fe, err)
	}

	deadline := time.Now().Add(time.Minute)
	for {
		b, _ := os.ReadFile(attempts)
		if strings.Count(string(b), "x") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hanging plugin was started %d times in a minute; want it retried", strings.Count(string(b), "x"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRestartsAKilledPlugin(t *testing.T) {
	h, err := Start(context.Background(), options(pluginDir(t, "evorelay-sink-webhook")))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := h.Plugin("webhook")
	st := p.Status()
	if st.State != StateRunning || st.PID == 0 || st.Version == "" || !st.Ready {
		t.Fatalf("status %+v", st)
	}
	must(t, syscall.Kill(st.PID, syscall.SIGKILL))
	deadline := time.Now().Add(30 * time.Second)
	for {
		now := p.Status()
		if now.State == StateRunning && now.PID != st.PID && now.Restarts == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted: %+v", now)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, fe, err := p.Validate(ctx, "i", []byte(`{"enabled":true,"events":[],"url":"ftp://x"}`)); err != nil || len(fe) == 0 || fe[0].Field != "url" {
		t.Fatalf("validate through the new process: %v %v", fe, err)
	}
	pid := p.Status().PID
	h.Close(context.Background())
	if p.Status().State != StateStopped {
		t.Fatalf("state after Close: %s", p.Status().State)
	}
	deadline = time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("plugin process %d still runs after Close", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A plugin that keeps dying is shown as failed, is still restarted, and
// serves again once it stays up.
func TestCrashLoopIsFailed(t *testing.T) {
	h, err := Start(context.Background(), options(pluginDir(t, "evorelay-sink-webhook")))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	p, _ := h.Plugin("webhook")
	sawFailed := false
	for kill := 1; kill <= failedAfter; kill++ {
		pid := p.Status().PID
		must(t, syscall.Kill(pid, syscall.SIGKILL))
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := p.Status()
			sawFailed = sawFailed || st.State == StateFailed
			if st.PID != pid && st.PID != 0 && st.State != StateRestarting {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: not replaced: %+v", kill, st)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	st := p.Status()
	if !sawFailed || st.State != StateFailed || st.Restarts != failedAfter || st.LastError == "" {
		t.Fatalf("after %d crashes in a row: %+v (saw failed: %v); want failed, with the restarts and the last error", failedAfter, st, sawFailed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := p.Validate(ctx, "i", []byte(`{"enabled":false,"events":[]}`)); err != nil {
		t.Fatalf("a failed plugin whose process runs must still answer: %v", err)
	}
}

// A plugin process gets its own EVORELAY_<NAME>_* settings and the system
// variables, never the admin key or another plugin's secrets.
func TestPluginEnvironment(t *testing.T) {
	t.Setenv("EVORELAY_API_KEY", "admin-key-must-not-leak")
	t.Setenv("EVORELAY_RABBITMQ_URI", "amqp://user:broker-password@10.0.0.1:5672/")
	t.Setenv("EVORELAY_WEBHOOKS_TOKEN", "a-plugin-named-webhooks")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
	t.Setenv("EVORELAY_WEBHOOK_TIMEOUT", "7s")
	t.Setenv("TZ", "UTC")
	opts := options(pluginDir(t, "evorelay-sink-webhook"))
	opts.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: io.Discard})
	h, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	p, _ := h.Plugin("webhook")
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.Status().PID))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(raw), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for _, k := range []string{"EVORELAY_API_KEY", "EVORELAY_RABBITMQ_URI", "EVORELAY_WEBHOOKS_TOKEN", "AWS_SECRET_ACCESS_KEY"} {
		if v, ok := env[k]; ok {
			t.Errorf("the webhook plugin's environment holds %s=%s", k, v)
		}
	}
	for k, want := range map[string]string{"EVORELAY_WEBHOOK_TIMEOUT": "7s", "TZ": "UTC", "PATH": os.Getenv("PATH"), "EVORELAY_LOG_LEVEL": "debug"} {
		if env[k] != want {
			t.Errorf("the webhook plugin's environment: %s=%q; want %q", k, env[k], want)
		}
	}
}
