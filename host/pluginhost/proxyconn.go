package pluginhost

import (
	"bufio"
	"net"
	"net/http"
	"time"
)

// proxyWriteTimeout is how long one write of the websocket proxy may
// block, to the client or to the plugin, before both connections are
// closed: a client that stops reading must not hold the host's
// connections (and file descriptors) once the plugin has given up on it.
var proxyWriteTimeout = 10 * time.Second

// deadlineConn gives every Write its own deadline.
type deadlineConn struct {
	net.Conn
}

func (c deadlineConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(proxyWriteTimeout))
	return c.Conn.Write(b)
}

// hijackWriter hands httputil.ReverseProxy, when it takes over an
// upgraded connection, a client connection whose writes have deadlines.
// The proxy closes both connections as soon as either copy ends: either
// side closing, or a write that timed out.
type hijackWriter struct {
	http.ResponseWriter
}

func (w hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	dc := deadlineConn{c}
	// Buffered writes reach the connection through the deadlines too.
	rw.Writer.Reset(dc)
	return dc, rw, nil
}

// Flush keeps streamed responses flowing.
func (w hijackWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }
