#!/usr/bin/env bash
# Starts and stops a throwaway redis-server on loopback for the redisstore tests.
#
#   eval "$(bash redisstore/testdata/redis.sh start)"   # sets AUTOREFRESH_REDIS_ADDR
#   (cd redisstore && go test -race ./...)
#   bash redisstore/testdata/redis.sh stop
#
# start installs the Debian package redis-server when redis-server is missing,
# starts it daemonized on a free port of 127.0.0.1 without persistence, and
# prints one line for eval: export AUTOREFRESH_REDIS_ADDR=127.0.0.1:PORT.
# Everything else goes to stderr. stop shuts down the server that start
# started (found through its pid file) and nothing else.
#
# State lives in $AUTOREFRESH_REDIS_DIR (default /tmp/autorefresh-redis).
set -euo pipefail

dir=${AUTOREFRESH_REDIS_DIR:-/tmp/autorefresh-redis}
pidfile=$dir/redis.pid
log() { echo "redis.sh: $*" >&2; }

port_in_use() {
	# A successful connect means something listens there.
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

running() {
	[[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

install() {
	command -v redis-server >/dev/null && return
	log "redis-server not found; installing the Debian package"
	if [[ $(id -u) != 0 ]]; then
		log "need root to run apt-get; install redis-server yourself"
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update >&2
	apt-get install -y --no-install-recommends redis-server >&2
}

start() {
	install
	mkdir -p "$dir"
	if running; then
		log "already running (pid $(cat "$pidfile"))"
		echo "export AUTOREFRESH_REDIS_ADDR=$(cat "$dir/addr")"
		return
	fi
	local base=$((20000 + RANDOM % 20000)) port
	for ((i = 0; i < 50; i++)); do
		port=$((base + i))
		port_in_use "$port" && continue
		rm -f "$pidfile"
		redis-server --bind 127.0.0.1 --port "$port" \
			--save "" --appendonly no \
			--daemonize yes --pidfile "$pidfile" \
			--dir "$dir" --logfile "$dir/redis.log" >&2 || continue
		for ((j = 0; j < 50; j++)); do
			if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
				echo "127.0.0.1:$port" >"$dir/addr"
				log "redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$port"
				echo "export AUTOREFRESH_REDIS_ADDR=127.0.0.1:$port"
				return
			fi
			sleep 0.1
		done
		log "redis-server did not answer on port $port; see $dir/redis.log"
		stop_server
	done
	log "could not start redis-server"
	exit 1
}

stop_server() {
	running || { rm -f "$pidfile"; return 0; }
	local pid
	pid=$(cat "$pidfile")
	kill "$pid"
	for ((j = 0; j < 50; j++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
	rm -f "$pidfile" "$dir/addr"
	log "stopped redis-server (pid $pid)"
}

case ${1:-} in
start) start ;;
stop) stop_server ;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
