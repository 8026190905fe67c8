package main

// route is where one event of one instance is published: the exchange, the
// routing key, and the durable queue bound to the exchange with that key.
type route struct {
	exchange string
	key      string
	queue    string
}

// global is the all-instances mode (EVORELAY_RABBITMQ_GLOBAL=true).
type global struct {
	on       bool
	exchange string // EVORELAY_RABBITMQ_GLOBAL_EXCHANGE, default evolution_exchange
	prefix   string // EVORELAY_RABBITMQ_GLOBAL_PREFIX, optional
}

// routeFor names the broker objects of one event, as Evolution API does.
// wire is the event's wire name (messages.upsert).
//
// Per instance i: topic exchange i, routing key wire, queue i.wire.
// Global: topic exchange g.exchange, routing key wire, queue wire, or
// prefix.wire when a prefix is set; every instance's events of one kind
// share that queue, and the instance is in the message's headers and body.
func routeFor(instance, wire string, g global) route {
	if g.on {
		q := wire
		if g.prefix != "" {
			q = g.prefix + "." + wire
		}
		return route{exchange: g.exchange, key: wire, queue: q}
	}
	return route{exchange: instance, key: wire, queue: instance + "." + wire}
}
