package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// runWebhook measures a bare HTTP client, then the sidecar with and
// without fsync, against one receiver.
func runWebhook(data string) error {
	recv, err := newReceiver()
	if err != nil {
		return err
	}
	defer recv.Close()
	bare, err := runBareHTTP(recv, data)
	if err != nil {
		return err
	}
	report("bare client → receiver", bare, bare, "")
	for _, sc := range []struct {
		name string
		env  []string
	}{
		{"sidecar → webhook (durable)", nil},
		{"sidecar → webhook (EVORELAY_SPOOL_NOSYNC)", []string{"EVORELAY_SPOOL_NOSYNC=true"}},
	} {
		res, err := sidecarWebhook(recv, data, sc.env)
		if err != nil {
			return err
		}
		report(sc.name, res, bare, fmt.Sprintf("ingest %.0f events/s", res.ingest))
	}
	return nil
}

// receiver counts distinct webhook-ids.
type receiver struct {
	*http.Server
	*counter
	url string
}

func newReceiver() (*receiver, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + l.Addr().String() + "/hook", counter: newCounter()}
	r.Server = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.see(req.Header.Get("webhook-id"))
	})}
	go func() { _ = r.Serve(l) }()
	return r, nil
}

// runBareHTTP posts the body the webhook plugin would send, one worker
// per instance, each waiting for its answer before the next (ordered).
func runBareHTTP(recv *receiver, data string) (result, error) {
	recv.expect(*events)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := fmt.Sprintf(`{"event":"MESSAGES_UPSERT","instance":"i","data":%s,"destination":%q,"date_time":"2024-01-01T12:00:00.000Z","sender":null,"server_url":null,"apikey":null}`, data, recv.url)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, *instances)
	for w := range *instances {
		wg.Go(func() {
			for i := w; i < *events; i += *instances {
				req, _ := http.NewRequest("POST", recv.url, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("webhook-id", fmt.Sprint(i))
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	if err := recv.wait(); err != nil {
		return result{}, err
	}
	rate := rate(start)
	return result{delivered: rate, ingest: rate}, nil
}

// sidecarWebhook starts evorelay with the webhook plugin, sets a webhook
// per instance, and posts the events as an engine would.
func sidecarWebhook(recv *receiver, data string, env []string) (result, error) {
	s, err := startSidecar("webhook", env)
	if err != nil {
		return result{}, err
	}
	defer s.stop()
	for i := range *instances {
		if err := s.set("webhook", fmt.Sprintf("bench%d", i), map[string]any{"url": recv.url, "enabled": true, "events": []string{"MESSAGES_UPSERT"}}); err != nil {
			return result{}, err
		}
	}
	return measureSidecar(s, recv.counter, data, func(i int) string { return fmt.Sprintf("bench%d", i%*instances) })
}
