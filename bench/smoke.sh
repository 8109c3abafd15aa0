#!/bin/sh
# bench.smoke: runs shimmy-bench briefly against a shimmyd on a free port
# and shimmy-hwlimits with tiny iteration counts; checks that both exit 0
# and print a parsable CSV row. No timing assertions: benchmarks are
# programs, not timed tests.
# Usage: smoke.sh SHIMMY_BENCH SHIMMY_HWLIMITS SHIMMYD
set -u
bench=$1 hw=$2 shimmyd=$3
dir=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
fail() { echo "bench.smoke: FAIL: $*" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null) ||
	port=$((20000 + $$ % 20000))
printf 'listener %s 127.0.0.1\nlistener 0 %s/shimmy.sock\nallow_anonymous true\nmax_queued_messages 100000\n' \
	"$port" "$dir" >"$dir/shimmy.conf"
"$shimmyd" -c "$dir/shimmy.conf" >"$dir/broker.log" 2>&1 &
pid=$!
i=0
until "$bench" --port "$port" --count 1 --warmup 0 --quiet >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -gt 50 ] && { cat "$dir/broker.log" >&2; fail "shimmyd did not come up on port $port"; }
	kill -0 "$pid" 2>/dev/null || { cat "$dir/broker.log" >&2; fail "shimmyd exited"; }
	sleep 0.1
done

# CSV row: 14 fields, numeric where a number belongs.
check_row() { # FILE SCENARIO
	awk -F, -v sc="$2" 'NR == 1 { hdr = ($1 == "system" && NF == 14) }
		NR == 2 && NF == 14 && $3 == sc && $8 ~ /^[0-9.]+$/ && $10 ~ /^[0-9.]+$/ &&
		$13 ~ /^[0-9]+$/ && $14 ~ /^[0-9.]+$/ { ok = 1 }
		END { exit !(hdr && ok) }' "$1" || { cat "$1" >&2; fail "bad CSV for $2"; }
}

"$bench" --port "$port" --system shimmy --count 2000 --size 16 --warmup 100 \
	--broker-pid "$pid" --csv - --quiet >"$dir/load.csv" || fail "shimmy-bench load exited $?"
check_row "$dir/load.csv" 16B_1p_1s_qos0
"$bench" --port "$port" --system shimmy --qos 1 --pubs 2 --subs 2 --count 500 \
	--size 1000 --broker-pid "$pid" --csv - --quiet >"$dir/qos1.csv" || fail "shimmy-bench qos1 exited $?"
check_row "$dir/qos1.csv" 1000B_2p_2s_qos1
"$bench" --port "$port" --system shimmy --mode rtt --count 200 \
	--broker-pid "$pid" --csv - --quiet >"$dir/rtt.csv" || fail "shimmy-bench rtt exited $?"
check_row "$dir/rtt.csv" rtt_16B_qos0
"$bench" --port "$port" --system shimmy --mode idle --conns 50 --hold-ms 100 \
	--broker-pid "$pid" --csv - --quiet >"$dir/idle.csv" || fail "shimmy-bench idle exited $?"
awk -F, 'NR == 2 && NF == 14 && $3 == "idle_conns_rss" && $4 ~ /^-?[0-9]+$/ { ok = 1 } END { exit !ok }' \
	"$dir/idle.csv" || { cat "$dir/idle.csv" >&2; fail "bad idle CSV"; }
"$bench" --transport shm --unix "$dir/shimmy.sock" --system shimmy --count 2000 --size 16 \
	--broker-pid "$pid" --csv - --quiet >"$dir/shm.csv" || fail "shimmy-bench --transport shm exited $?"
check_row "$dir/shm.csv" 16B_1p_1s_qos0
"$bench" --transport shm --unix "$dir/shimmy.sock" --system shimmy --mode rtt --count 200 \
	--broker-pid "$pid" --csv - --quiet >"$dir/shmrtt.csv" || fail "shimmy-bench --transport shm rtt exited $?"
check_row "$dir/shmrtt.csv" rtt_16B_qos0

"$hw" --iters 2000 >"$dir/hw.txt" || fail "shimmy-hwlimits exited $?"
grep -q '^cacheline_pingpong_rtt,[0-9.]*,' "$dir/hw.txt" || { cat "$dir/hw.txt" >&2; fail "bad hwlimits CSV"; }
grep -q '^futex_wake_latency,[0-9.]*,' "$dir/hw.txt" || fail "no futex row"
echo "bench.smoke: ok"
