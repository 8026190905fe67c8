package main

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/gorilla/websocket"
)

// frame is one delivery as every client receives it: built once, written
// to each connection as the same prepared message (gorilla compresses it
// once per compression setting, not once per client), and to each
// Socket.IO client as the same encoded packet of its namespace.
type frame struct {
	id       string
	instance string
	msg      *websocket.PreparedMessage
	// event and envelope are the Socket.IO event name and payload: the
	// envelope as the engine sent it, event written per EVORELAY_NAMING.
	event    string
	envelope json.RawMessage
	// packets are the encoded Socket.IO packets of the instance's
	// namespace and of "/", built on first use.
	packets [2]lazyPacket
	size    int
}

// allRoom is the room of /ws, the clients of every instance. It cannot
// clash with an instance: instance names are never empty.
const allRoom = ""

// window is a bounded, ordered record of the latest frames of one room,
// which clients resume from. It keeps at most maxEvents frames and, past
// the newest one, at most maxBytes of them.
type window struct {
	maxBytes int
	buf      []*frame // ring; nil when resume is off
	head, n  int
	bytes    int
	next     uint64            // sequence number of the next frame pushed
	index    map[string]uint64 // delivery id → sequence number
}

func newWindow(maxEvents, maxBytes int) *window {
	return &window{maxBytes: maxBytes, buf: make([]*frame, maxEvents), index: map[string]uint64{}}
}

// holds reports whether the window holds a frame with this id.
func (w *window) holds(id string) bool {
	_, ok := w.index[id]
	return ok
}

func (w *window) push(f *frame) {
	if len(w.buf) == 0 {
		return
	}
	if w.n == len(w.buf) {
		w.evict()
	}
	w.buf[(w.head+w.n)%len(w.buf)] = f
	w.n++
	w.bytes += f.size
	w.index[f.id] = w.next
	w.next++
	for w.bytes > w.maxBytes && w.n > 1 {
		w.evict()
	}
}

func (w *window) evict() {
	f := w.buf[w.head]
	seq := w.next - uint64(w.n)
	w.buf[w.head] = nil
	w.head = (w.head + 1) % len(w.buf)
	w.n--
	w.bytes -= f.size
	if w.index[f.id] == seq {
		delete(w.index, f.id)
	}
}

// after returns the frames that follow the one with id, oldest first, and
// whether id is in the window. When it is not, it returns every frame the
// window holds.
func (w *window) after(id string) ([]*frame, bool) {
	seq, ok := w.index[id]
	start := 0
	if ok {
		start = int(seq-(w.next-uint64(w.n))) + 1
	}
	out := make([]*frame, 0, w.n-start)
	for i := start; i < w.n; i++ {
		out = append(out, w.buf[(w.head+i)%len(w.buf)])
	}
	return out, ok
}

// room is the clients of one instance (or of /ws) and its window.
type room struct {
	clients map[*client]struct{}
	// conns counts connections holding a slot: joined clients, and those
	// between the limit check and the end of the upgrade.
	conns int
	win   *window
}

// stats are the hub's counters, for Health.
type stats struct {
	clients, allClients int
	delivered           uint64 // frames fanned out (duplicates excluded)
	noClient            uint64 // of those, with nobody listening
	duplicates          uint64 // deliveries whose id the window already held
	slow                uint64 // clients dropped for a full send buffer
	noPong              uint64 // clients dropped for not answering pings
}

// hub routes frames to the clients of their instance and of /ws, and
// keeps each room's window. One mutex guards it all: a frame is pushed to
// the windows and offered to every client in one step, so a client that
// joins sees each frame either in its replay or live, never both, never
// neither.
type hub struct {
	cfg processConfig

	mu     sync.Mutex
	rooms  map[string]*room
	live   map[*client]struct{} // every joined client until it leaves
	total  int
	closed bool
	st     stats
	// conns counts the goroutines the connections run (handlers and
	// readers), for Close to wait on.
	conns sync.WaitGroup
}

func newHub(cfg processConfig) *hub {
	h := &hub{cfg: cfg, rooms: map[string]*room{}, live: map[*client]struct{}{}}
	h.rooms[allRoom] = &room{clients: map[*client]struct{}{}, win: newWindow(cfg.resumeWindowAll, cfg.resumeWindowBytes)}
	return h
}

// roomLocked returns the room of an instance, creating it.
func (h *hub) roomLocked(name string) *room {
	r := h.rooms[name]
	if r == nil {
		r = &room{clients: map[*client]struct{}{}, win: newWindow(h.cfg.resumeWindow, h.cfg.resumeWindowBytes)}
		h.rooms[name] = r
	}
	return r
}

// errLimit is why a connection is refused before its upgrade.
type errLimit struct{ msg string }

func (e errLimit) Error() string { return e.msg }

// reserve takes a connection slot in a room, or says why it cannot.
// Every successful reserve is matched by one release.
func (h *hub) reserve(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errLimit{"the websocket sink is shutting down; reconnect shortly"}
	}
	if h.total >= h.cfg.maxConns {
		return errLimit{fmt.Sprintf("too many websocket connections: the limit is %d (EVORELAY_WEBSOCKET_MAX_CONNECTIONS); retry later", h.cfg.maxConns)}
	}
	r := h.roomLocked(name)
	if r.conns >= h.cfg.maxConnsPerRoom {
		where := "instance " + name
		if name == allRoom {
			where = "/ws"
		}
		return errLimit{fmt.Sprintf("too many websocket connections to %s: the limit is %d (EVORELAY_WEBSOCKET_MAX_CONNECTIONS_PER_INSTANCE); retry later", where, h.cfg.maxConnsPerRoom)}
	}
	r.conns++
	h.total++
	h.conns.Add(1)
	return nil
}

// release gives back a slot taken by reserve, removing c from its room if
// it joined.
func (h *hub) release(name string, c *client) {
	h.mu.Lock()
	r := h.rooms[name]
	if c != nil {
		h.removeLocked(r, c)
		delete(h.live, c)
	}
	r.conns--
	h.total--
	if name != allRoom && r.conns == 0 && r.win.n == 0 {
		delete(h.rooms, name)
	}
	h.mu.Unlock()
	h.conns.Done()
}

// join adds c to its room and gives it what it must be sent first: with
// since set, the frames after since (c.replay), led by a gap message
// (c.gap) when since is no longer in the window. It reports false when the
// hub has closed. From join on, c may be kicked; its connection comes
// later, with attach.
func (h *hub) join(c *client, since string, hasSince bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	r := h.rooms[c.room]
	if hasSince {
		frames, found := r.win.after(since)
		if !found {
			c.gap = newGap(c.room, since, frames)
		}
		c.replay = frames
	}
	r.clients[c] = struct{}{}
	h.live[c] = struct{}{}
	if c.room == allRoom {
		h.st.allClients++
	} else {
		h.st.clients++
	}
	return true
}

// attach gives a joined client its upgraded connection.
func (h *hub) attach(c *client, conn *websocket.Conn) {
	h.mu.Lock()
	c.conn = conn
	c.closeNow = func() { _ = conn.Close() }
	h.mu.Unlock()
}

// attachFunc gives a joined client the function that closes its
// connection outright.
func (h *hub) attachFunc(c *client, closeNow func()) {
	h.mu.Lock()
	c.closeNow = closeNow
	h.mu.Unlock()
}

// holds reports whether room's window holds the frame with id.
func (h *hub) holds(room, id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[room]
	return r != nil && r.win.holds(id)
}

// removeLocked takes c out of its room; it is a no-op the second time.
func (h *hub) removeLocked(r *room, c *client) {
	if _, ok := r.clients[c]; !ok {
		return
	}
	delete(r.clients, c)
	if c.room == allRoom {
		h.st.allClients--
	} else {
		h.st.clients--
	}
}

// publish records f in its instance's window and the global one and
// queues it to every client of both, without ever waiting for one: a
// client whose send buffer is full is dropped. It reports false, and
// sends nothing, when the instance's window already holds f's id (the
// host sent the delivery again).
func (h *hub) publish(f *frame) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.roomLocked(f.instance)
	if r.win.holds(f.id) {
		h.st.duplicates++
		return false
	}
	all := h.rooms[allRoom]
	r.win.push(f)
	all.win.push(f)
	h.st.delivered++
	if len(r.clients)+len(all.clients) == 0 {
		h.st.noClient++
		return true
	}
	h.offerLocked(r, f)
	h.offerLocked(all, f)
	return true
}

func (h *hub) offerLocked(r *room, f *frame) {
	for c := range r.clients {
		select {
		case c.send <- f:
		default:
			h.removeLocked(r, c)
			h.st.slow++
			c.kick(closeSlow, fmt.Sprintf("send buffer full (%d messages); reconnect with since=<last id>", h.cfg.sendBuffer))
		}
	}
}

// close stops new connections and asks every client to leave.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, r := range h.rooms {
		for c := range r.clients {
			h.removeLocked(r, c)
			c.kick(websocket.CloseGoingAway, "evorelay is shutting down; reconnect with since=<last id>")
		}
	}
}

// notePongMissed counts a client dropped for not answering pings.
func (h *hub) notePongMissed() {
	h.mu.Lock()
	h.st.noPong++
	h.mu.Unlock()
}

// closeConns closes every connection outright, for a Close whose time is
// up: the goroutines blocked on them return.
func (h *hub) closeConns() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.live {
		if c.closeNow != nil {
			c.closeNow()
		}
	}
}

// snapshot returns the counters.
func (h *hub) snapshot() stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st
}

// gapEvent names the message that tells a resuming client its since is no
// longer in the window. It is the same in both naming modes: it is not a
// WhatsApp event.
const gapEvent = "evorelay.gap"

// gapFrame is the gap message's shape.
type gapFrame struct {
	Event    string  `json:"event"`
	Instance *string `json:"instance"`
	Since    string  `json:"since"`
	Oldest   *string `json:"oldest"`
}

// newGap says that the events between since and the first frame that
// follows (oldest; null when the window is empty) cannot be replayed.
func newGap(roomName, since string, follow []*frame) *gapFrame {
	g := &gapFrame{Event: gapEvent, Since: since}
	if roomName != allRoom {
		g.Instance = &roomName
	}
	if len(follow) > 0 {
		g.Oldest = &follow[0].id
	}
	return g
}

// message is the gap as a websocket message.
func (g *gapFrame) message() *websocket.PreparedMessage {
	b, err := json.Marshal(g)
	if err != nil {
		panic(err) // strings only
	}
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, b)
	if err != nil {
		panic(err) // only fails for an invalid message type
	}
	return pm
}
