package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"runtime/debug"
)

// errorEnvelope is the one shape every error is written in, the one
// Evolution API clients parse.
type errorEnvelope struct {
	Status   int    `json:"status"`
	Error    string `json:"error"`
	Response struct {
		Message []string `json:"message"`
	} `json:"response"`
}

// writeError writes the error envelope with one message per problem.
func writeError(w http.ResponseWriter, status int, messages ...string) {
	e := errorEnvelope{Status: status, Error: http.StatusText(status)}
	e.Response.Message = messages
	if e.Response.Message == nil {
		e.Response.Message = []string{}
	}
	writeJSON(w, status, e)
}

// writeUnavailable writes a 503 the client should retry.
func writeUnavailable(w http.ResponseWriter, messages ...string) {
	w.Header().Set("Retry-After", retryAfterSeconds)
	writeError(w, http.StatusServiceUnavailable, messages...)
}

// jsonContentType is every JSON answer's Content-Type, shared: net/http
// copies the header when it writes it.
var jsonContentType = []string{"application/json; charset=utf-8"}

// writeJSON writes v as JSON, or a 500 envelope if v cannot be encoded.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		b.Reset()
		e := errorEnvelope{Status: status, Error: http.StatusText(status)}
		e.Response.Message = []string{"internal error: the answer could not be encoded as JSON: " + err.Error()}
		_ = json.NewEncoder(&b).Encode(e)
	}
	writeRaw(w, status, b.Bytes())
}

// writeRaw writes a JSON body that is already encoded.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(body)
	if len(body) == 0 || body[len(body)-1] != '\n' {
		_, _ = w.Write([]byte{'\n'})
	}
}

func stack() []byte { return debug.Stack() }

// statusWriter records the status written, for metrics and for knowing
// whether a panic can still be answered. It keeps the writer's optional
// abilities (flush, hijack) reachable, for /ws.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher when the underlying writer can flush.
func (w *statusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker, for websocket upgrades.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}
