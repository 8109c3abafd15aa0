#!/usr/bin/env bash
# bench/run_bench.sh — `make bench`: Shimmy against Mosquitto, in one run on
# this machine, with ratios (absolute numbers on shared machines drift).
#
# Usage: bench/run_bench.sh [BINDIR]   (default build/bin; builds nothing)
# Starts shimmyd and mosquitto on free loopback ports with identical
# settings (lib.sh write_conf), runs each scenario on both, one after the
# other, and prints a table. Writes bench/results/<timestamp>.csv (columns:
# see bench/run.h) and bench/results/<timestamp>-hwlimits.csv.
# Scenarios: 10k idle connections (broker RSS/conn; first, on fresh
# brokers), 16 B 1 pub -> 1 sub (QoS 0 and 1), fan-out 1 pub -> 10 subs,
# 100 KB 1 -> 1 (these as fast as possible: throughput, and the latency of
# a full window), 16 B at a fixed 10k msgs/s (one-way latency p50/p99/p99.9)
# and round-trip latency, then the shared-memory path (16 B msgs/s as a
# ratio to mosquitto TCP, one-way p50 with a busy-polling subscriber next to
# the cache-line ping-pong half-RTT, 100 KB GB/s). About two minutes here. The latency scenarios also
# run against a third broker, shimmy-busypoll: shimmyd with
# `shimmy_busy_poll_us 100` (it polls instead of sleeping for 100 us after
# each network event), reported on its own rows.
# Environment: BENCH_SCALE_PCT (default 100) scales message counts.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/bin}
BIN=$(cd "$BIN" && pwd)
BENCH="$BIN/shimmy-bench"
SCALE=${BENCH_SCALE_PCT:-100}
for f in "$BIN/shimmyd" "$BENCH" "$BIN/shimmy-hwlimits"; do
	[ -x "$f" ] || { echo "run_bench: $f missing: run 'make bench'" >&2; exit 1; }
done
. bench/lib.sh
[ -x "$MOSQUITTO" ] || { echo "run_bench: $MOSQUITTO missing (scripts/deps.sh test)" >&2; exit 1; }

# 10k connections per broker plus the clients' ends: raise the fd limit
# for the brokers (inherited) and for shimmy-bench.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d)
cleanup() { stop_all_brokers; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p bench/results
STAMP=$(date +%Y%m%d-%H%M%S)
CSV=bench/results/$STAMP.csv
SYSTEMS="shimmy mosquitto"
declare -A PORT PID
for s in $SYSTEMS shimmy-busypoll; do
	PORT[$s]=$(free_port)
	write_conf "$TMP/$s.conf" "${PORT[$s]}" 127.0.0.1
	[ "$s" = shimmy-busypoll ] && echo "shimmy_busy_poll_us 100" >>"$TMP/$s.conf"
	# shimmy also listens on a Unix socket for the shared-memory path.
	[ "$s" = shimmy ] && printf 'listener 0 %s\nshimmy_shm true\n' "$TMP/shimmy.sock" >>"$TMP/$s.conf"
	start_broker "$s" "$TMP/$s.conf" "$TMP/$s.log"
	PID[$s]=$BROKER_PID
done
for s in $SYSTEMS shimmy-busypoll; do
	wait_port 127.0.0.1 "${PORT[$s]}" || { cat "$TMP/$s.log" >&2; echo "run_bench: $s did not start" >&2; exit 1; }
done
echo "run_bench: shimmyd pid ${PID[shimmy]} port ${PORT[shimmy]}; mosquitto pid ${PID[mosquitto]} port ${PORT[mosquitto]}; $(nproc) cpus" >&2

run() { # SYSTEM SCENARIO ARGS...
	local s=$1 sc=$2
	shift 2
	echo "run_bench: $s $sc" >&2
	if ! "$BENCH" --port "${PORT[$s]}" --broker-pid "${PID[$s]}" --system "$s" \
		--scenario "$sc" --csv "$CSV" --quiet "$@" >>"$TMP/bench.out" 2>>"$TMP/bench.err"; then
		echo "run_bench: $s $sc failed:" >&2
		tail -5 "$TMP/bench.err" >&2
	fi
	kill -0 "${PID[$s]}" 2>/dev/null || { echo "run_bench: $s died" >&2; tail -20 "$TMP/$s.log" >&2; exit 1; }
}

n() { local v=$(( $1 * SCALE / 100 )); echo $(( v > 0 ? v : 1 )); }

for s in $SYSTEMS; do run "$s" idle_10k --mode idle --conns 10000 --hold-ms 1000; done
for s in $SYSTEMS; do run "$s" 16B_1to1_qos0 --size 16 --count "$(n 1000000)"; done
for s in $SYSTEMS; do run "$s" 16B_1to1_qos1 --size 16 --qos 1 --count "$(n 200000)"; done
for s in $SYSTEMS; do run "$s" 16B_fanout_1to10 --size 16 --subs 10 --count "$(n 100000)"; done
for s in $SYSTEMS; do run "$s" 100KB_1to1 --size 102400 --count "$(n 20000)"; done
for s in $SYSTEMS shimmy-busypoll; do run "$s" 16B_1to1_at10k --size 16 --rate 10000 --count "$(n 30000)" --warmup 1000; done
for s in $SYSTEMS shimmy-busypoll; do run "$s" rtt_16B --mode rtt --size 16 --count "$(n 20000)"; done
# Shared-memory path (libshimmy over shimmy's Unix socket, no broker hop):
# 16 B flat out, one-way latency at 10k msgs/s with a busy-polling
# subscriber, and 100 KB throughput. Compared below with mosquitto's TCP
# row of the same scenario and with shimmy-hwlimits' cache-line half-RTT.
SHM=(--transport shm --unix "$TMP/shimmy.sock")
# The 16 B row publishes 16 messages per shimmy_pub_loan_many/commit_many
# (each its own record and commit; mosquitto's publisher likewise writes
# 256 KiB of PUBLISH packets per syscall); the _each row, one call pair
# per message.
run shimmy shm_16B_1to1 "${SHM[@]}" --size 16 --count "$(n 20000000)" --warmup "$(n 1000000)" --pub-batch 16
run shimmy shm_16B_1to1_each "${SHM[@]}" --size 16 --count "$(n 20000000)" --warmup "$(n 1000000)"
run shimmy shm_lat_16B "${SHM[@]}" --mode latency --size 16 --rate 10000 --count "$(n 30000)" --warmup 1000
run shimmy shm_100KB_1to1 "${SHM[@]}" --size 102400 --count "$(n 100000)" --warmup 1000

"$BIN/shimmy-hwlimits" --iters 200000 --csv "bench/results/$STAMP-hwlimits.csv" >"$TMP/hw.txt" 2>&1 ||
	echo "run_bench: shimmy-hwlimits failed" >&2

# The table: one row per scenario and metric, ratio = shimmy / mosquitto.
awk -F, '
NR == 1 { next }
$3 ~ /^shm_/ { next } # shared-memory rows: their own table below
{
	sc = $3; sys = $1
	if (!(sc in seen)) { seen[sc] = 1; order[++n] = sc }
	if (sc == "idle_conns_rss" || $3 ~ /^idle/) {
		v[sc, "RSS B/conn", sys] = $4; m[sc, 1] = "RSS B/conn"; lower[sc, 1] = 1; next
	}
	if (sc ~ /^rtt/) {
		v[sc, "RTT p50 us", sys] = $10; m[sc, 1] = "RTT p50 us"; lower[sc, 1] = 1
		v[sc, "RTT p99 us", sys] = $11; m[sc, 2] = "RTT p99 us"; lower[sc, 2] = 1
		next
	}
	if (sc ~ /_at[0-9]+k$/) { # fixed rate: latency is the measure
		v[sc, "p50 us", sys] = $10; m[sc, 1] = "p50 us"; lower[sc, 1] = 1
		v[sc, "p99 us", sys] = $11; m[sc, 2] = "p99 us"; lower[sc, 2] = 1
		v[sc, "p99.9 us", sys] = $12; m[sc, 3] = "p99.9 us"; lower[sc, 3] = 1
		if ($13 > 0) lost[sc, sys] = $13
		next
	}
	if ($4 >= 100000) { v[sc, "MB/s", sys] = $9; m[sc, 1] = "MB/s" }
	else { v[sc, "deliveries/s", sys] = $8; m[sc, 1] = "deliveries/s" }
	v[sc, "p99 us (loaded)", sys] = $11; m[sc, 2] = "p99 us (loaded)"; lower[sc, 2] = 1
	if ($14 != "" && $8 > 0) {
		v[sc, "broker CPU us/dlv", sys] = sprintf("%.3f", $14 * 1e6 / ($5 * $7))
		m[sc, 3] = "broker CPU us/dlv"; lower[sc, 3] = 1
	}
	if ($13 > 0) lost[sc, sys] = $13
}
END {
	printf "%-18s %-18s %14s %14s %10s\n", "scenario", "metric", "shimmy", "mosquitto", "ratio"
	for (i = 1; i <= n; i++) {
		sc = order[i]
		for (k = 1; k <= 3; k++) {
			if (!((sc, k) in m)) continue
			mt = m[sc, k]; a = v[sc, mt, "shimmy"]; b = v[sc, mt, "mosquitto"]
			r = (a != "" && b != "" && b + 0 != 0) ? sprintf("%.2fx", a / b) : "-"
			printf "%-18s %-18s %14s %14s %10s %s\n", (k == 1 ? sc : ""), mt, a, b, r,
				(lower[sc, k] ? "(lower is better)" : "")
			c = v[sc, mt, "shimmy-busypoll"]
			if (c != "" && b != "" && b + 0 != 0)
				printf "%-18s %-18s %14s %14s %10s %s\n", "", mt " (busypoll)", c, b,
					sprintf("%.2fx", c / b), "(shimmy_busy_poll_us 100)"
		}
		if ((sc, "shimmy") in lost || (sc, "mosquitto") in lost)
			printf "%-18s lost: shimmy %d, mosquitto %d\n", "", lost[sc, "shimmy"], lost[sc, "mosquitto"]
	}
}' "$CSV"
# The 100 KB TCP row next to its ceilings (shimmy-hwlimits, same run): one
# loopback TCP stream between two processes, and the same stream through a
# bare relay process (read/write through a buffer, and splice() with no
# copy in the relay). A broker's path is the relay's, plus the protocol, so
# its MB/s stays below the relay rows whatever it does.
awk -F, -v hw="bench/results/$STAMP-hwlimits.csv" '
BEGIN {
	while ((getline l < hw) > 0) { split(l, f, ","); gbs[f[1]] = f[5] * 1000 }
	names[1] = "tcp_loopback_100KB"; label[1] = "ceiling: 1 hop"; what[1] = "(one loopback TCP stream)"
	names[2] = "tcp_relay_100KB"; label[2] = "ceiling: relay"; what[2] = "(pub -> read/write relay -> sub)"
	names[3] = "tcp_splice_relay_100KB"; label[3] = "ceiling: splice"; what[3] = "(pub -> splice relay -> sub)"
}
$3 == "100KB_1to1" && $1 == "mosquitto" { mq = $9 }
END {
	for (i = 1; i <= 3; i++)
		if (gbs[names[i]] > 0)
			printf "%-18s %-18s %14.0f %14s %10s %s\n", "", label[i] " MB/s", gbs[names[i]], "",
				(mq > 0 ? sprintf("%.2fx", gbs[names[i]] / mq) : "-"), what[i]
	if (mq > 0)
		printf "%-18s %-18s %14.0f %14s %10s %s\n", "", "target MB/s", 5 * mq, "", "5.00x", "(5x mosquitto)"
}' "$CSV"
echo
echo "shared-memory path (shimmy-bench --transport shm; targets: >= 200x mosquitto TCP msgs/s, p50 <= 3x ping-pong half-RTT, >= 5 GB/s):"
awk -F, -v hw="bench/results/$STAMP-hwlimits.csv" '
BEGIN { while ((getline l < hw) > 0) { split(l, f, ","); if (f[1] == "cacheline_pingpong_rtt") half = f[2] / 2000 } }
NR == 1 { next }
$3 == "16B_1to1_qos0" && $1 == "mosquitto" { mq = $8 }
$3 == "shm_16B_1to1" { shm = $8; lost16 = $13 }
$3 == "shm_16B_1to1_each" { each = $8; lost16 += $13 }
$3 == "shm_lat_16B" { p50 = $10; p99 = $11; lostl = $13 }
$3 == "shm_100KB_1to1" { gbs = $9 / 1000; lostb = $13 }
END {
	printf "%-26s %14s %14s %10s %s\n", "metric", "shimmy shm", "reference", "ratio", "target"
	printf "%-26s %14s %14s %10s %s\n", "16B 1->1 msgs/s", shm, mq " (mosq tcp)",
		(mq > 0 && shm != "") ? sprintf("%.0fx", shm / mq) : "-", ">= 200x"
	printf "%-26s %14s %14s %10s %s\n", "  one loan per message", each, mq " (mosq tcp)",
		(mq > 0 && each != "") ? sprintf("%.0fx", each / mq) : "-", ""
	printf "%-26s %14s %14s %10s %s\n", "one-way p50 us @10k/s", p50, (half > 0 ? sprintf("%.3f (hw 1/2 RTT)", half) : "-"),
		(half > 0 && p50 != "") ? sprintf("%.2fx", p50 / half) : "-", "<= 3x"
	printf "%-26s %14s\n", "one-way p99 us @10k/s", p99
	printf "%-26s %14s %14s %10s %s\n", "100KB 1->1 GB/s", (gbs != "" ? sprintf("%.2f", gbs) : ""), "5.00", "-", ">= 5 GB/s"
	if (lost16 + lostl + lostb > 0) printf "lost: 16B %d, latency %d, 100KB %d\n", lost16, lostl, lostb
}' "$CSV"
echo
echo "hardware limits (shimmy-hwlimits):"
sed -n '1,9p' "$TMP/hw.txt"
echo
echo "results: $CSV, bench/results/$STAMP-hwlimits.csv"
if [ -s "$TMP/bench.err" ] && grep -q "failed\|error" "$TMP/bench.err"; then
	echo "run_bench: errors during the run:" >&2
	grep "failed\|error" "$TMP/bench.err" | head >&2
fi
