package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/evorelay/evorelay/host/pluginhost"
	"github.com/evorelay/evorelay/host/spool"
)

// stateMetrics reports the spool's and the plugins' state at each scrape,
// from the same snapshots /readyz shows.
type stateMetrics struct {
	spool   spool.Spool
	plugins *pluginhost.Host

	events, scheduled, bytes, limitEvents, limitBytes *prometheus.Desc
	backlog, dead, up, restarts, gauge                *prometheus.Desc
}

func newStateMetrics(sp spool.Spool, ph *pluginhost.Host) *stateMetrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &stateMetrics{
		spool: sp, plugins: ph,
		events:      d("evorelay_spool_events", "Accepted events in the spool's log."),
		scheduled:   d("evorelay_spool_scheduled_retries", "Deliveries waiting in the retry schedule, all sinks."),
		bytes:       d("evorelay_spool_bytes", "Bytes of the spool's log."),
		limitEvents: d("evorelay_spool_limit_events", "EVORELAY_SPOOL_MAX_EVENTS (0: unbounded)."),
		limitBytes:  d("evorelay_spool_limit_bytes", "EVORELAY_SPOOL_MAX_BYTES (0: unbounded)."),
		backlog:     d("evorelay_sink_backlog", "Events a sink has not settled yet (log and retries).", "sink"),
		dead:        d("evorelay_sink_dead_letters", "Dead letters kept for a sink.", "sink"),
		up:          d("evorelay_plugin_up", "1 when the plugin's process runs and says it is ready.", "sink", "state"),
		restarts:    d("evorelay_plugin_restarts_total", "Times the plugin's process was replaced.", "sink"),
		gauge:       d("evorelay_plugin_gauge", "A plugin's own measurement (e.g. websocket connections), as of its last health check.", "sink", "name"),
	}
}

func (m *stateMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.events, m.scheduled, m.bytes, m.limitEvents, m.limitBytes, m.backlog, m.dead, m.up, m.restarts, m.gauge} {
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
	for _, p := range m.plugins.Status() {
		up := 0.0
		if p.State == pluginhost.StateRunning && p.Ready {
			up = 1
		}
		gauge(m.up, up, p.Name, p.State)
		ch <- prometheus.MustNewConstMetric(m.restarts, prometheus.CounterValue, float64(p.Restarts), p.Name)
		for name, v := range p.Gauges {
			gauge(m.gauge, v, p.Name, name)
		}
	}
}
