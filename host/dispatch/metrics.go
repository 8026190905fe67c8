package dispatch

import (
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the dispatcher's Prometheus series. A nil *Metrics records
// nothing.
type Metrics struct {
	deliveries *prometheus.CounterVec
	inFlight   *prometheus.GaugeVec
	open       *prometheus.GaugeVec
	latency    *prometheus.HistogramVec
}

// latencyBuckets span a delivery on its first try (milliseconds) to one
// that succeeded after hours of retries.
var latencyBuckets = []float64{
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
	60, 300, 900, 3600, 3 * 3600, 12 * 3600, 24 * 3600,
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "evorelay_deliveries_total",
			Help: "Deliveries settled, by sink and outcome (ok, retry, dead, skipped: not for this sink's settings, released: handed back when a plugin died, deferred: put back on the schedule untried because the instance's destination stalled, held: put back on the schedule untried, in order, by the instance's rate limit or open circuit, expired: dead-lettered by the instance's expire_after).",
		}, []string{"sink", "outcome"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "evorelay_deliveries_in_flight",
			Help: "Deliveries sent to a sink's plugin and not yet acknowledged.",
		}, []string{"sink"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "evorelay_delivery_latency_seconds",
			Help:    "Time from ingest (the 202) to the sink's ok, retries included, of each delivered event.",
			Buckets: latencyBuckets,
		}, []string{"sink"}),
	}
	m.open = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "evorelay_circuits_open",
		Help: "Instances whose circuit to a sink is open: their deliveries wait, untried, for a probe after the cool-down.",
	}, []string{"sink"})
	reg.MustRegister(m.deliveries, m.inFlight, m.open, m.latency)
	return m
}

func (m *Metrics) count(sink, outcome string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.deliveries.WithLabelValues(sink, outcome).Add(float64(n))
}

func (m *Metrics) inflight(sink string, n int) {
	if m == nil {
		return
	}
	m.inFlight.WithLabelValues(sink).Set(float64(n))
}

func (m *Metrics) circuits(sink string, open int) {
	if m == nil {
		return
	}
	m.open.WithLabelValues(sink).Set(float64(open))
}

// delivered observes the latency of the event with id, a ULID carrying
// its ingest time; other ids are not observed.
func (m *Metrics) delivered(sink, id string, now time.Time) {
	if m == nil {
		return
	}
	u, err := ulid.ParseStrict(id)
	if err != nil {
		return
	}
	m.latency.WithLabelValues(sink).Observe(max(now.Sub(ulid.Time(u.Time())).Seconds(), 0))
}
