package main

import (
	"context"
	"fmt"
	"net/http"
)

// chatsEvents bounds the chats scenario: at 10 ms a request, 16 chats
// deliver 8,000 events in 5 s.
const chatsEvents = 8000

// runChats measures one instance's chats to a receiver that takes
// -receiver-delay to answer, as a bot or a flow that does some work does:
// bare, one sequential keep-alive POSTer per chat, the most an order per
// chat allows; then the sidecar with the default "ordering": "chat"; then,
// on a sixteenth of the events, with "ordering": "instance", which sends
// one request at a time.
func runChats(l load) (row, error) {
	recv, err := newReceiver()
	if err != nil {
		return row{}, err
	}
	defer recv.Close()
	recv.delay = *receiverDelay
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	t := recv.expect(l.n)
	cpu := startMeter(0)
	took, err := post(ctx, target{url: recv.url, want: http.StatusOK}, l.webhookRequests(recv.url), l.chats)
	if err == nil {
		err = t.wait(ctx)
	}
	if err != nil {
		return row{}, err
	}
	bare := rate(l.n, took)
	line(fmt.Sprintf("bare: %d keep-alive POSTers (one a chat)", l.chats), bare, 0, fmt.Sprintf("receiver answers after %s", *receiverDelay))
	printCPU(cpu, l.n)

	s, err := webhookSidecar(l, recv)
	if err != nil {
		return row{}, err
	}
	defer s.stop()
	r, err := s.compare(l, recv.expect(l.n), `webhook, "ordering": "chat"`, bare, "≥0.8×")
	if err != nil {
		return row{}, err
	}

	one := l
	one.n = max(l.n/16, 1)
	if err := s.setWebhooks(l, recv.url, map[string]any{"ordering": "instance"}); err != nil {
		return row{}, err
	}
	res, err := s.measure(one, recv.expect(one.n))
	if err != nil {
		return row{}, err
	}
	line(fmt.Sprintf(`webhook, "ordering": "instance" (%d events)`, one.n), res.delivered, bare, "")
	return r, nil
}
