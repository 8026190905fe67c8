package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/zishang520/socket.io/servers/socket/v3"

	"github.com/evorelay/evorelay/sdk"
	"github.com/evorelay/evorelay/sdk/events"
)

const (
	sinkName    = "websocket"
	sinkVersion = "0.1.0"
)

// Sink relays deliveries to the websocket clients connected through the
// host's proxy.
type Sink struct {
	sdk.UnimplementedSink

	cfg      processConfig
	naming   events.Naming
	log      hclog.Logger
	hub      *hub
	upgrader *websocket.Upgrader
	// sio serves Socket.IO (socketio.go); hostSocket is where it asks the
	// host about keys sent in auth payloads.
	sio        *socket.Server
	hostSocket string
	// sioReady holds, per socket that joined the hub and is not connected
	// yet, the channel sioConnection closes.
	sioReady sync.Map
	srv      *http.Server
	served   chan struct{} // closed when srv.Serve returns

	mu     sync.Mutex
	opened bool
	closed bool
}

// New returns a sink that is not open yet.
func New() *Sink { return &Sink{} }

// Describe names the sink and asks the host for a socket.
func (s *Sink) Describe() sdk.Description {
	return sdk.Description{Name: sinkName, Version: sinkVersion, Listener: true}
}

// Open reads the process settings and serves HTTP on the host's socket.
func (s *Sink) Open(_ context.Context, c sdk.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened {
		return errors.New("websocket: Open called twice")
	}
	log := c.Log()
	cfg, err := parseProcessConfig(c)
	if err != nil {
		return err
	}
	if c.ListenSocket == "" {
		return errors.New("websocket: the host gave no Unix socket to listen on (Config.ListenSocket); this sink needs a host that proxies /ws to it")
	}
	ln, err := listenUnix(c.ListenSocket)
	if err != nil {
		return err
	}
	s.cfg, s.naming, s.log, s.hostSocket = cfg, c.Naming, log, c.HostSocket
	s.hub = newHub(cfg)
	s.upgrader = newUpgrader(cfg, log)
	var sio http.Handler
	s.sio, sio = s.newSocketIO()
	s.srv = &http.Server{
		Handler:           s.routes(sio),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln) // returns when Close closes the server
	}()
	s.opened = true
	log.Info("listening", "socket", c.ListenSocket, "ping_interval", cfg.pingInterval.String(), "send_buffer", cfg.sendBuffer,
		"resume_window", cfg.resumeWindow, "max_connections", cfg.maxConns)
	return nil
}

// listenUnix listens on path, replacing a socket a previous process left
// behind, and lets only this user connect.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("websocket: listen on %s: the path exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("websocket: remove the stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("websocket: listen: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("websocket: restrict the socket to this user: %w", err)
	}
	return ln, nil
}

// wireFrame is a message as clients receive it: the seed's {event,
// instance, data} and the delivery id, to resume from.
type wireFrame struct {
	Event    string          `json:"event"`
	Instance string          `json:"instance"`
	Data     json.RawMessage `json:"data"`
	ID       string          `json:"id"`
}

// frame builds a delivery's message once, for every client.
func (s *Sink) frame(d sdk.Delivery) (*frame, error) {
	env, err := d.Decode()
	if err != nil {
		return nil, fmt.Errorf("websocket: the envelope is not a JSON object: %w", err)
	}
	data := env.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(wireFrame{Event: s.naming.Name(d.Event), Instance: d.Instance, Data: data, ID: d.ID}); err != nil {
		return nil, fmt.Errorf("websocket: encode the message: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, b)
	if err != nil {
		return nil, fmt.Errorf("websocket: prepare the message: %w", err)
	}
	name := s.naming.Name(d.Event)
	// Socket.IO clients get the envelope as Evolution API sends it.
	sioEnv, err := events.WithEvent(d.Envelope, name)
	if err != nil {
		return nil, fmt.Errorf("websocket: the envelope is not a JSON object: %w", err)
	}
	return &frame{id: d.ID, instance: d.Instance, msg: pm, event: name, envelope: sioEnv, size: len(b) + len(sioEnv)}, nil
}

// Deliver queues each delivery to the clients of its instance and of /ws
// and acknowledges it: websocket is live delivery, so a delivery is done
// once it is queued to every client connected now, or when none is. It
// never waits for a client; a client that cannot take it is dropped.
func (s *Sink) Deliver(_ context.Context, batch []sdk.Delivery, acks sdk.Acks) error {
	s.mu.Lock()
	h := s.hub
	s.mu.Unlock()
	if h == nil {
		return errors.New("websocket: not open")
	}
	for _, d := range batch {
		f, err := s.frame(d)
		if err != nil {
			acks.Done(d.ID, sdk.Permanent(err))
			continue
		}
		h.publish(f)
		acks.Done(d.ID, nil)
	}
	return nil
}

// Health is ready while the socket is served; Detail counts clients and
// deliveries.
func (s *Sink) Health(context.Context) sdk.Health {
	s.mu.Lock()
	opened, closed := s.opened, s.closed
	s.mu.Unlock()
	switch {
	case !opened:
		return sdk.Health{Detail: "not open"}
	case closed:
		return sdk.Health{Detail: "closed"}
	}
	st := s.hub.snapshot()
	return sdk.Health{Ready: true, Detail: describeStats(st),
		Gauges: map[string]float64{
			"connections":        float64(st.clients + st.allClients),
			"connections_global": float64(st.allClients),
		},
		Counters: map[string]float64{
			"delivered":           float64(st.delivered),
			"delivered_no_client": float64(st.noClient),
			"dropped_slow":        float64(st.slow),
			"dropped_no_pong":     float64(st.noPong),
		}}
}

func describeStats(st stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d clients (%d on /ws); %d delivered, %d with no client",
		st.clients+st.allClients, st.allClients, st.delivered, st.noClient)
	if st.slow > 0 {
		fmt.Fprintf(&b, "; %d slow clients dropped", st.slow)
	}
	if st.noPong > 0 {
		fmt.Fprintf(&b, "; %d dead clients dropped (no pong)", st.noPong)
	}
	if st.duplicates > 0 {
		fmt.Fprintf(&b, "; %d repeated deliveries not resent", st.duplicates)
	}
	return b.String()
}

// Close says goodbye to every client (1001, going away), stops serving the
// socket and waits for the connections to end, closing them outright when
// ctx ends first.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.opened || s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	s.hub.close()
	s.sio.Close(nil)
	err := s.srv.Close()
	<-s.served
	done := make(chan struct{})
	go func() {
		s.hub.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.hub.closeConns()
		<-done
	}
	if err != nil {
		return fmt.Errorf("websocket: close the listener: %w", err)
	}
	return nil
}
