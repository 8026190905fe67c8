package api

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's own; a nil *metrics records nothing.
type metrics struct {
	requests    *prometheus.CounterVec
	accepted    prometheus.Counter
	ingestBytes prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "evorelay_api_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "evorelay_api_events_accepted_total",
			Help: "Events accepted into the spool by the ingest routes.",
		}),
		ingestBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "evorelay_api_ingest_bytes_total",
			Help: "Request body bytes read by the ingest routes.",
		}),
	}
	m.requests = register(reg, m.requests)
	m.accepted = register(reg, m.accepted)
	m.ingestBytes = register(reg, m.ingestBytes)
	return m
}

// register registers c, or returns the collector already registered under
// its name (a second handler built on the same registry shares it).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("api: registering metrics: " + err.Error())
	}
	return c
}

func (m *metrics) request(route string, code int) {
	if m == nil {
		return
	}
	if code == 0 {
		code = 200 // nothing written: net/http answers 200
	}
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
}

func (m *metrics) ingested(bytes int64, accepted int) {
	if m == nil {
		return
	}
	m.ingestBytes.Add(float64(bytes))
	m.accepted.Add(float64(accepted))
}
