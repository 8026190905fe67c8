#!/usr/bin/env bash
# Starts the local services the tests talk to, if they are not running.
# Commands are those of this machine kind (go-svc); each is a no-op when the
# service already answers.
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_up() { # port name seconds
	for _ in $(seq 1 "$3"); do up "$1" && return 0; sleep 1; done
	echo "services: $2 did not come up on 127.0.0.1:$1" >&2
	return 1
}

if ! up 5672; then
	echo "services: starting RabbitMQ"
	rabbitmq-server -detached
	wait_up 5672 RabbitMQ 90 || exit 1
fi

if ! up 4222; then
	echo "services: starting NATS (JetStream)"
	mkdir -p /var/lib/nats-server /var/log
	start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
		-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
	wait_up 4222 NATS 30 || exit 1
fi

if ! up 6379; then
	echo "services: starting Redis"
	mkdir -p /var/lib/redis /var/log/redis
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
		--dir /var/lib/redis --logfile /var/log/redis/ci.log
	wait_up 6379 Redis 30 || exit 1
fi
echo "services: RabbitMQ, NATS and Redis are up"
