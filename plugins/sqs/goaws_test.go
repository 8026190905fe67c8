package main

// The tests talk to a real goaws (github.com/Admiral-Piett/goaws v0.4.5),
// an SQS server that speaks the query protocol, started here on a free
// loopback port and stopped after. If it is not installed, TestMain
// installs it (go install, through the Go module proxy) into
// $(go env GOPATH)/bin/goaws-v0.4.5/. EVORELAY_GOAWS names another binary.
// The tests fail, never skip, when it cannot start.
//
// What goaws v0.4.5 does and does not do, read in its source and checked
// by these tests:
//
//   - FIFO is decided by the ".fifo" suffix; CreateQueue ignores the
//     FifoQueue and ContentBasedDeduplication attributes (the requests'
//     fields are asserted on the wire instead).
//   - SendMessageBatch drops message attributes: they are stored only by
//     SendMessage. ReceiveMessage therefore returns none for the sink's
//     messages, and the attributes are asserted on the wire.
//   - MessageGroupId is stored but never returned by ReceiveMessage, and
//     not required; it is asserted on the wire.
//   - MessageDeduplicationId is enforced when the config sets
//     EnableDuplicates (it does here), but the window ends when the message
//     is deleted, not after 5 minutes as in AWS.
//   - SendMessageBatch never fails single entries (no BatchResultErrorEntry)
//     and checks neither the message size nor the batch size. Per-entry
//     failures are injected by a transport around the real server.
//   - ReceiveMessage on a FIFO queue with MaxNumberOfMessages > 1 hides
//     the group's further messages for the visibility timeout without
//     returning them; the tests receive one message at a time.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

const goawsVersion = "v0.4.5"

// goawsURL is the endpoint of the goaws TestMain started.
var goawsURL string

func TestMain(m *testing.M) {
	stop, err := startGoaws()
	for try := 1; try < 3 && errors.Is(err, errGoawsExited); try++ {
		stop, err = startGoaws() // its port was taken before it bound it, perhaps
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sqs tests: cannot start goaws:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "sqs tests: the end of goaws's log:\n%s\n", goawsLogTail(40))
	}
	stop()
	if err := goleak.Find(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, "sqs tests: goroutines left behind:", err)
		code = 1
	}
	os.Exit(code)
}

// goawsLog is the file goaws writes its log to.
var goawsLog string

// goawsLogTail returns the last n lines of goaws's log, each cut to 300
// bytes (goaws logs every message body).
func goawsLogTail(n int) string {
	b, err := os.ReadFile(goawsLog)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 300 {
			lines[i] = l[:300] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// errGoawsExited is startGoaws's error when goaws ended before it answered.
var errGoawsExited = errors.New("goaws exited")

// startGoaws runs goaws on a free loopback port with a config written for
// it, and waits until it answers.
func startGoaws() (stop func(), err error) {
	bin, err := goawsBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "evorelay-goaws-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// No Region: goaws then builds queue URLs as http://Host:Port/AccountId/name.
	conf := fmt.Sprintf(`Local:
  Host: 127.0.0.1
  Port: "%d"
  AccountId: "100010001000"
  EnableDuplicates: true
  QueueAttributeDefaults:
    VisibilityTimeout: 30
    ReceiveMessageWaitTimeSeconds: 0
    MaximumMessageSize: 262144
`, port)
	confPath := filepath.Join(dir, "goaws.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "goaws.log")
	goawsLog = logPath
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-config", confPath, "Local")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logFile.Close()
		_ = os.RemoveAll(dir)
	}
	goawsURL = "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(goawsURL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop, nil
			}
		}
		select {
		case err := <-exited:
			exited <- err
			log, _ := os.ReadFile(logPath)
			stop()
			return nil, fmt.Errorf("%w (%v): %s", errGoawsExited, err, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			stop()
			return nil, fmt.Errorf("goaws did not answer on %s within 30s: %s", goawsURL, log)
		}
	}
}

// goawsBinary finds goaws, installing it when it is missing.
func goawsBinary() (string, error) {
	if p := os.Getenv("EVORELAY_GOAWS"); p != "" {
		return p, nil
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOPATH: %w", err)
	}
	gopath := strings.SplitN(strings.TrimSpace(string(out)), string(os.PathListSeparator), 2)[0]
	dir := filepath.Join(gopath, "bin", "goaws-"+goawsVersion)
	bin := filepath.Join(dir, "cmd")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	install := exec.Command("go", "install", "github.com/Admiral-Piett/goaws/app/cmd@"+goawsVersion)
	install.Env = append(os.Environ(), "GOBIN="+dir)
	install.Dir = os.TempDir() // outside this module
	if out, err := install.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install goaws %s: %v: %s", goawsVersion, err, out)
	}
	return bin, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// call is one SQS request as it went on the wire.
type call struct {
	Action string
	Form   url.Values
}

// recorder is an http.RoundTripper that records every SQS request and
// passes it to the real server, unless alter answers it or changes it.
type recorder struct {
	next http.RoundTripper

	mu    sync.Mutex
	calls []call
	// alter, when set, may answer a request itself (return a response) or
	// let it through (return nil).
	alter func(c call, req *http.Request, next http.RoundTripper) (*http.Response, error)
}

func newRecorder() *recorder {
	return &recorder{next: http.DefaultTransport.(*http.Transport).Clone()}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var b []byte
	if req.Body != nil {
		var err error
		b, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	form, _ := url.ParseQuery(string(b))
	c := call{Action: firstOf(form["Action"]), Form: form}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	alter := r.alter
	r.mu.Unlock()
	if alter != nil {
		if resp, err := alter(c, req, r.next); resp != nil || err != nil {
			return resp, err
		}
	}
	return r.next.RoundTrip(req)
}

// actions returns the recorded calls of one action.
func (r *recorder) actions(action string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, c := range r.calls {
		if c.Action == action {
			out = append(out, c)
		}
	}
	return out
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.calls = nil
	r.mu.Unlock()
}

func (r *recorder) client() *http.Client { return &http.Client{Transport: r} }

// CloseIdleConnections lets http.Client.CloseIdleConnections (the sink's
// Close) reach the real transport.
func (r *recorder) CloseIdleConnections() {
	if c, ok := r.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func firstOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// batchEntries returns the entries of a recorded SendMessageBatch call,
// by position, each as its fields (Id, MessageBody, MessageGroupId,
// MessageDeduplicationId, and attr.<name> for each message attribute).
func batchEntries(c call) []map[string]string {
	byIndex := map[int]map[string]string{}
	attrNames := map[string]string{} // "n.k" → attribute name
	for k, v := range c.Form {
		parts := strings.SplitN(k, ".", 3)
		if len(parts) != 3 || parts[0] != "SendMessageBatchRequestEntry" {
			continue
		}
		i, err := strconv.Atoi(parts[1])
		if err != nil {
			continue
		}
		if byIndex[i] == nil {
			byIndex[i] = map[string]string{}
		}
		byIndex[i][parts[2]] = firstOf(v)
		if rest, ok := strings.CutPrefix(parts[2], "MessageAttribute."); ok {
			if n, ok := strings.CutSuffix(rest, ".Name"); ok {
				attrNames[parts[1]+"."+n] = firstOf(v)
			}
		}
	}
	out := make([]map[string]string, len(byIndex))
	for i := range out {
		e := byIndex[i+1]
		if e == nil {
			continue
		}
		for key, name := range attrNames {
			n, k, _ := strings.Cut(key, ".")
			if n != strconv.Itoa(i+1) {
				continue
			}
			e["attr."+name] = e["MessageAttribute."+k+".Value.StringValue"]
			e["attrType."+name] = e["MessageAttribute."+k+".Value.DataType"]
		}
		out[i] = e
	}
	return out
}

// waitCtx is the context of one test's SQS calls: generous, since a stuck
// call must fail the test rather than hang it.
func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
