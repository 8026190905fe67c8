package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/evorelay/evorelay/sdk/sinktest"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the binaries built once for the whole run: evorelay and
// plugins/evorelay-sink-<name>.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "evorelay-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := 1
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles the host and every plugin, as `make build` does.
func build(dir string) error {
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	run := func(out, pkg string) error {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
		return nil
	}
	if err := run(filepath.Join(dir, "evorelay"), "./host"); err != nil {
		return err
	}
	plugins, _ := filepath.Glob(filepath.Join(root, "plugins", "*", "main.go"))
	// EVORELAY_E2E_PLUGINS=webhook,websocket builds only those, to iterate
	// faster; CI builds every plugin.
	only := map[string]bool{}
	for _, n := range strings.Split(os.Getenv("EVORELAY_E2E_PLUGINS"), ",") {
		if n != "" {
			only[n] = true
		}
	}
	for _, p := range plugins {
		name := filepath.Base(filepath.Dir(p))
		if len(only) > 0 && !only[name] {
			continue
		}
		if err := run(filepath.Join(dir, "plugins", "evorelay-sink-"+name), "./plugins/"+name); err != nil {
			return err
		}
	}
	return nil
}

const testKey = "e2e-test-key"

// Sidecar is one evorelay process under test.
type Sidecar struct {
	t         *testing.T
	URL       string
	Addr      string
	DataDir   string
	PluginDir string
	env       []string
	cmd       *exec.Cmd
	exited    chan struct{}
	logs      *syncBuffer
	// Client sends Do's requests: http.DefaultClient, or one that trusts
	// the test CA when the sidecar serves HTTPS.
	Client *http.Client
	// up is the route that answers 200 once the sidecar is started:
	// /readyz, or /healthz for a sidecar expected not to be ready.
	up string
}

// StartSidecar starts evorelay with the named plugins (all when none) on a
// free loopback port, a fresh data dir, and extra env ("K=V").
func StartSidecar(t *testing.T, plugins []string, env ...string) *Sidecar {
	t.Helper()
	return startSidecar(t, plugins, nil, env...)
}

// StartUnreadySidecar is StartSidecar with extra files put in the plugin
// directory first (plugin, given the directory, writes them); it waits
// only for /healthz, since a bad plugin keeps /readyz at 503.
func StartUnreadySidecar(t *testing.T, plugins []string, plugin func(dir string), env ...string) *Sidecar {
	t.Helper()
	return startSidecar(t, plugins, plugin, env...)
}

func startSidecar(t *testing.T, plugins []string, extra func(dir string), env ...string) *Sidecar {
	t.Helper()
	pdir := t.TempDir()
	if len(plugins) == 0 {
		entries, _ := os.ReadDir(filepath.Join(binDir, "plugins"))
		for _, e := range entries {
			plugins = append(plugins, strings.TrimPrefix(e.Name(), "evorelay-sink-"))
		}
	}
	for _, p := range plugins {
		src := filepath.Join(binDir, "plugins", "evorelay-sink-"+p)
		if err := os.Symlink(src, filepath.Join(pdir, "evorelay-sink-"+p)); err != nil {
			t.Fatal(err)
		}
	}
	s := &Sidecar{t: t, DataDir: t.TempDir(), PluginDir: pdir, Addr: freeAddr(t), Client: http.DefaultClient, up: "/readyz"}
	if extra != nil {
		extra(pdir)
		s.up = "/healthz"
	}
	s.URL = "http://" + s.Addr
	if tls := tlsClient(env); tls != nil {
		s.URL, s.Client = "https://"+s.Addr, tls
	}
	s.env = append([]string{
		"EVORELAY_ADDR=" + s.Addr,
		"EVORELAY_API_KEY=" + testKey,
		"EVORELAY_DATA_DIR=" + s.DataDir,
		"EVORELAY_PLUGIN_DIR=" + pdir,
		"EVORELAY_LOG_LEVEL=debug",
		// The tests' receivers listen on loopback, which the egress policy
		// refuses by default; a test that wants the default passes
		// "EVORELAY_EGRESS_ALLOW=" (empty is unset).
		"EVORELAY_EGRESS_ALLOW=127.0.0.0/8",
	}, env...)
	s.start()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sidecar log:\n%s", s.logs.String())
		}
	})
	return s
}

func (s *Sidecar) start() {
	s.t.Helper()
	s.logs = &syncBuffer{}
	s.cmd = exec.Command(filepath.Join(binDir, "evorelay"))
	s.cmd.Env = append(os.Environ(), s.env...)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.t.Fatalf("evorelay exited at start-up:\n%s", s.logs.String())
		default:
		}
		if code, _ := s.Do("GET", s.up, nil); code == http.StatusOK {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("evorelay: %s not 200 after 30s:\n%s", s.up, s.logs.String())
}

// Kill9 kills the host with SIGKILL, as a crash would.
func (s *Sidecar) Kill9() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// Terminate sends SIGTERM and waits for the exit; it returns the exit code.
func (s *Sidecar) Terminate(timeout time.Duration) int {
	s.t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.t.Fatalf("evorelay did not exit within %s of SIGTERM", timeout)
	}
	return s.cmd.ProcessState.ExitCode()
}

// Restart starts the host again on the same port and data dir.
func (s *Sidecar) Restart() { s.start() }

// Stop ends the host if it runs.
func (s *Sidecar) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// Do sends a request with the API key and returns status and body.
func (s *Sidecar) Do(method, path string, body any) (int, []byte) {
	return s.DoKey(method, path, body, testKey)
}

// DoKey is Do with a given key ("" sends none).
func (s *Sidecar) DoKey(method, path string, body any, key string) (int, []byte) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("apikey", key)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// MustDo is Do that fails the test unless the status is want.
func (s *Sidecar) MustDo(want int, method, path string, body any) []byte {
	s.t.Helper()
	code, b := s.Do(method, path, body)
	if code != want {
		s.t.Fatalf("%s %s = %d %s; want %d", method, path, code, b, want)
	}
	return b
}

// PluginPID is the process id of a plugin, from GET /plugins.
func (s *Sidecar) PluginPID(name string) int {
	s.t.Helper()
	for _, p := range s.Plugins() {
		if p.Name == name && p.State == "running" {
			return p.PID
		}
	}
	return 0
}

type pluginStatus struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	PID      int    `json:"pid"`
}

// Plugins is GET /plugins.
func (s *Sidecar) Plugins() []pluginStatus {
	s.t.Helper()
	var out []pluginStatus
	if err := json.Unmarshal(s.MustDo(200, "GET", "/plugins", nil), &out); err != nil {
		s.t.Fatal(err)
	}
	return out
}

// Logs is what the host printed so far.
func (s *Sidecar) Logs() string { return s.logs.String() }

// eventually polls cond until it holds or the time is up
// (sinktest.Eventually).
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	sinktest.Eventually(t, what, within, cond)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
