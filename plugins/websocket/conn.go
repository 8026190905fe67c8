package main

import (
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// closeSlow is the close code for a client that cannot keep up: 1008,
// policy violation (the policy being the bounded send buffer).
const closeSlow = websocket.ClosePolicyViolation

// maxClientMessage bounds what a client may send; clients have nothing to
// say but pongs and close frames.
const maxClientMessage = 4096

// closeGrace is how long a kicked client has to answer the close frame
// before its connection is closed anyway.
const closeGrace = time.Second

// client is one websocket connection. Two goroutines run it: writeLoop
// (the HTTP handler's own goroutine) and readLoop.
type client struct {
	// conn is set by hub.attach once the upgrade succeeds.
	conn *websocket.Conn
	room string
	cfg  *processConfig
	// send is the bounded queue of live frames.
	send chan *frame
	// gap and replay are what join decided to send before anything live:
	// a gap message (nil for none) and the replayed frames.
	gap    *gapFrame
	replay []*frame
	// closeNow closes the connection outright; set once it exists.
	closeNow func()

	kickOnce    sync.Once
	kicked      chan struct{} // closed by kick
	kickCode    int
	kickReason  string
	readerEnded chan struct{} // closed when readLoop returns
	// pongMissed is set by readLoop when the client stopped answering.
	pongMissed bool
}

func newClient(room string, cfg *processConfig) *client {
	return &client{
		room:        room,
		cfg:         cfg,
		send:        make(chan *frame, cfg.sendBuffer),
		kicked:      make(chan struct{}),
		readerEnded: make(chan struct{}),
	}
}

// kick asks writeLoop to close the connection with code and reason. It
// never blocks; the first call wins.
func (c *client) kick(code int, reason string) {
	c.kickOnce.Do(func() {
		c.kickCode, c.kickReason = code, reason
		close(c.kicked)
	})
}

// readLoop reads until the connection ends: it answers pings and close
// frames (gorilla does), extends the deadline on every pong, and discards
// anything else a client sends. A client silent for ping_interval +
// pong_timeout is taken as dead.
func (c *client) readLoop() {
	defer close(c.readerEnded)
	wait := c.cfg.pingInterval + c.cfg.pongTimeout
	c.conn.SetReadLimit(maxClientMessage)
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(wait))
	})
	for {
		if _, _, err := c.conn.NextReader(); err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				c.pongMissed = true
			}
			return
		}
	}
}

// writeLoop sends the replay, then live frames and pings, until the
// client is kicked, the reader ends, or a write fails. It closes the
// connection and waits for readLoop before returning.
func (c *client) writeLoop() {
	defer func() {
		_ = c.conn.Close()
		<-c.readerEnded
	}()
	if c.gap != nil {
		if c.stopping() || c.write(c.gap.message()) != nil {
			c.closeIfKicked()
			return
		}
	}
	for _, f := range c.replay {
		if c.stopping() || c.write(f.msg) != nil {
			c.closeIfKicked()
			return
		}
	}
	c.replay = nil
	ping := time.NewTicker(c.cfg.pingInterval)
	defer ping.Stop()
	for {
		if c.stopping() {
			c.closeIfKicked()
			return
		}
		select {
		case f := <-c.send:
			if c.write(f.msg) != nil {
				return
			}
		case <-ping.C:
			if c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.writeTimeout)) != nil {
				return
			}
		case <-c.kicked:
		case <-c.readerEnded:
		}
	}
}

func (c *client) write(pm *websocket.PreparedMessage) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.cfg.writeTimeout))
	return c.conn.WritePreparedMessage(pm)
}

// stopping reports whether the client was kicked or its reader ended.
func (c *client) stopping() bool {
	select {
	case <-c.kicked:
		return true
	case <-c.readerEnded:
		return true
	default:
		return false
	}
}

// closeIfKicked sends the close frame of a kicked client and gives it
// closeGrace to answer.
func (c *client) closeIfKicked() {
	select {
	case <-c.kicked:
	default:
		return
	}
	msg := websocket.FormatCloseMessage(c.kickCode, c.kickReason)
	if c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(c.cfg.writeTimeout)) != nil {
		return
	}
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-c.readerEnded:
	case <-t.C:
	}
}
