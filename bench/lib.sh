# bench/lib.sh — shell helpers shared by run_bench.sh and run_paper.sh:
# free ports, broker start/stop with identical settings, readiness waits.
# Sourced, not run. Expects $TMP (a private temp dir) and $BIN.

MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
BROKER_PIDS=""

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + (RANDOM % 20000)))
}

# write_conf FILE PORT ADDR: the same settings for every broker. Queues are
# large so that QoS 0 is not dropped for reasons of the test; inflight is
# both brokers' default, written out so it is visibly identical.
write_conf() {
	cat >"$1" <<CONF
listener $2 $3
allow_anonymous true
max_queued_messages 10000000
max_inflight_messages 20
max_connections -1
log_type error
log_type warning
CONF
}

# wait_port HOST PORT [NETNS]: until something accepts on HOST:PORT (5 s).
wait_port() {
	i=0
	while :; do
		if [ -n "${3:-}" ]; then
			ip netns exec "$3" bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && return 0
		else
			bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && return 0
		fi
		i=$((i + 1))
		[ $i -gt 100 ] && return 1
		sleep 0.05
	done
}

# start_broker SYSTEM CONF LOG [NETNS]: starts shimmyd or mosquitto in the
# background; sets $BROKER_PID.
start_broker() {
	local sys=$1 conf=$2 log=$3 ns=${4:-} exe
	case $sys in
	shimmy | shimmy-busypoll | shimmy-shm) exe="$BIN/shimmyd" ;;
	mosquitto) exe="$MOSQUITTO" ;;
	*) echo "unknown system $sys" >&2; return 1 ;;
	esac
	if [ -n "$ns" ]; then
		ip netns exec "$ns" "$exe" -c "$conf" >"$log" 2>&1 &
	else
		"$exe" -c "$conf" >"$log" 2>&1 &
	fi
	BROKER_PID=$!
	BROKER_PIDS="$BROKER_PIDS $BROKER_PID"
}

stop_broker() {
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	BROKER_PIDS=$(echo "$BROKER_PIDS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
}

stop_all_brokers() {
	for p in $BROKER_PIDS; do kill "$p" 2>/dev/null; done
	for p in $BROKER_PIDS; do wait "$p" 2>/dev/null; done
	BROKER_PIDS=""
}
