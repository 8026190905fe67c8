package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The bare baselines that must run in a process of their own, as the
// sidecar does, run in a copy of this binary started with a hidden first
// argument (not a flag of the tool, so -help does not list them):
//
//	-serve-bare   an HTTP server on the listener passed as fd 3 that reads
//	              each body and answers 200; it ends when its stdin closes
//	-post-bare    one keep-alive client posting a load's webhook bodies one
//	              after the other; it prints the nanoseconds they took
const (
	serveBareArg = "-serve-bare"
	postBareArg  = "-post-bare"
)

// runChild runs the hidden mode args name, if they name one, and reports
// whether they did.
func runChild(args []string) bool {
	if len(args) == 0 || (args[0] != serveBareArg && args[0] != postBareArg) {
		return false
	}
	var err error
	if args[0] == serveBareArg {
		err = serveBare()
	} else {
		err = postBare(args[1:])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", args[0], err)
		os.Exit(1)
	}
	return true
}

// serveBare serves the inherited listener until stdin closes.
func serveBare() error {
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	})}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bareServer is a -serve-bare process.
type bareServer struct {
	url   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	logs  bytes.Buffer
}

// startBareServer starts a -serve-bare process on a loopback listener it
// hands over, and returns once it answers.
func startBareServer() (*bareServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := &bareServer{url: "http://" + l.Addr().String(), cmd: exec.Command(self, serveBareArg)}
	b.cmd.ExtraFiles = []*os.File{f}
	b.cmd.Stderr = &b.logs
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(b.url + "/ready")
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("bare server: %w %s", err, b.logs.String())
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	return b, nil
}

// stop closes the server's stdin, which ends it, and waits for it.
func (b *bareServer) stop() {
	_ = b.stdin.Close()
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
	}
}

// postBare posts the webhook bodies of a load (given by its flags) to
// -url one after the other from one keep-alive connection, and prints how
// long that took in nanoseconds.
func postBare(args []string) error {
	fs := flag.NewFlagSet(postBareArg, flag.ContinueOnError)
	url := fs.String("url", "", "receiver")
	n := fs.Int("events", 0, "events")
	fs.IntVar(size, "size", *size, "bytes of data per event")
	sh := shape{posters: 1, perPost: 1}
	fs.IntVar(&sh.instances, "instances", 1, "instances")
	fs.IntVar(&sh.chats, "chats", 1, "chats per instance")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reqs := newLoad("bare", sh, *n).webhookRequests(*url)
	client := newPostClient(1)
	t := target{url: *url, want: http.StatusOK}
	start := time.Now()
	for _, r := range reqs {
		if err := postOne(context.Background(), client, t, r); err != nil {
			return err
		}
	}
	fmt.Println(time.Since(start).Nanoseconds())
	return nil
}

// runBarePoster runs a -post-bare process for l's webhook bodies to url
// and returns how long its posts took.
func runBarePoster(ctx context.Context, l load, url string) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, self, postBareArg, "-url", url, "-events", strconv.Itoa(l.n),
		"-size", strconv.Itoa(*size), "-instances", strconv.Itoa(l.instances), "-chats", strconv.Itoa(l.chats))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("bare poster: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bare poster: printed %q", out)
	}
	return time.Duration(ns), nil
}
