package main

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/evorelay/evorelay/host/pluginhost"
	"github.com/evorelay/evorelay/host/spool"
)

// oldestReporter is a spool that can tell, per sink, when the oldest event
// the sink has not settled was accepted (spool.Embedded does).
type oldestReporter interface {
	Oldest() (map[string]time.Time, error)
}

// pluginStatuses is what the metrics need of the plugin host.
type pluginStatuses interface {
	Status() []pluginhost.Status
}

// pluginStates are the states evorelay_plugin_state reports, each as its
// own series (1 for the current one), so that a series never changes
// identity when the state does.
var pluginStates = []string{
	pluginhost.StateStarting, pluginhost.StateRunning, pluginhost.StateRestarting,
	pluginhost.StateFailed, pluginhost.StateStopped,
}

// stateMetrics reports the spool's and the plugins' state at each scrape,
// from the same snapshots /readyz shows.
type stateMetrics struct {
	spool   spool.Spool
	plugins pluginStatuses
	now     func() time.Time

	events, scheduled, bytes, limitEvents, limitBytes *prometheus.Desc
	backlog, oldest, dead, ready, state, restarts     *prometheus.Desc
	gauge, counter                                    *prometheus.Desc
}

func newStateMetrics(sp spool.Spool, ph pluginStatuses) *stateMetrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &stateMetrics{
		spool: sp, plugins: ph, now: time.Now,
		events:      d("evorelay_spool_events", "Accepted events in the spool's log."),
		scheduled:   d("evorelay_spool_scheduled_retries", "Deliveries waiting in the retry schedule, all sinks."),
		bytes:       d("evorelay_spool_bytes", "Bytes of the spool's log."),
		limitEvents: d("evorelay_spool_limit_events", "EVORELAY_SPOOL_MAX_EVENTS (0: unbounded)."),
		limitBytes:  d("evorelay_spool_limit_bytes", "EVORELAY_SPOOL_MAX_BYTES (0: unbounded)."),
		backlog:     d("evorelay_sink_backlog", "Events a sink has not settled yet (log and retries).", "sink"),
		oldest:      d("evorelay_sink_oldest_undelivered_seconds", "Age of the oldest event a sink has not settled (log and retries); 0 when it has none.", "sink"),
		dead:        d("evorelay_sink_dead_letters", "Dead letters kept for a sink.", "sink"),
		ready:       d("evorelay_plugin_ready", "1 when the plugin's process runs and its health check says it is ready.", "sink"),
		state:       d("evorelay_plugin_state", "1 for the plugin's current state (starting, running, restarting, failed, stopped), 0 for the others.", "sink", "state"),
		restarts:    d("evorelay_plugin_restarts_total", "Times the plugin's process was replaced.", "sink"),
		gauge:       d("evorelay_plugin_measurement", "A plugin's own measurement (e.g. websocket connections), as of its last health check.", "sink", "name"),
		counter:     d("evorelay_plugin_count_total", "A plugin's own running total (e.g. websocket delivered) since its process started, as of its last health check.", "sink", "name"),
	}
}

func (m *stateMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.events, m.scheduled, m.bytes, m.limitEvents, m.limitBytes, m.backlog, m.oldest, m.dead, m.ready, m.state, m.restarts, m.gauge, m.counter} {
		ch <- d
	}
}

func (m *stateMetrics) Collect(ch chan<- prometheus.Metric) {
	st := m.spool.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(m.events, float64(st.Events))
	gauge(m.scheduled, float64(st.Scheduled))
	gauge(m.bytes, float64(st.Bytes))
	gauge(m.limitEvents, float64(st.Limit.Events))
	gauge(m.limitBytes, float64(st.Limit.Bytes))
	for sink, n := range st.Backlog {
		gauge(m.backlog, float64(n), sink)
	}
	for sink, n := range st.Dead {
		gauge(m.dead, float64(n), sink)
	}
	if o, ok := m.spool.(oldestReporter); ok {
		if oldest, err := o.Oldest(); err == nil {
			now := m.now()
			for sink := range st.Backlog {
				age := 0.0
				if t, ok := oldest[sink]; ok {
					age = max(now.Sub(t).Seconds(), 0)
				}
				gauge(m.oldest, age, sink)
			}
		}
	}
	for _, p := range m.plugins.Status() {
		ready := 0.0
		if p.State == pluginhost.StateRunning && p.Ready {
			ready = 1
		}
		gauge(m.ready, ready, p.Name)
		for _, s := range pluginStates {
			v := 0.0
			if s == p.State {
				v = 1
			}
			gauge(m.state, v, p.Name, s)
		}
		ch <- prometheus.MustNewConstMetric(m.restarts, prometheus.CounterValue, float64(p.Restarts), p.Name)
		for name, v := range p.Gauges {
			gauge(m.gauge, v, p.Name, name)
		}
		for name, v := range p.Counters {
			ch <- prometheus.MustNewConstMetric(m.counter, prometheus.CounterValue, v, p.Name, strings.TrimSuffix(name, "_total"))
		}
	}
}
