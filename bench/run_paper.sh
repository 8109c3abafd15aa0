#!/usr/bin/env bash
# bench/run_paper.sh — `make bench-paper`: the evaluation of the Shimmy
# paper (Abranches et al., HotEdge'19, Figures 4-6) on this machine.
#
# Usage: bench/run_paper.sh [BINDIR]   (default build/bin; builds nothing)
#
# Grid: payloads 16 B and 100 KB; 10k, 100k and 1M messages (100 KB: 10k
# and 100k only: 1M x 100 KB is 100 GB of traffic per run, minutes each);
# 1 publisher -> 1 subscriber, QoS 0; throughput and average latency.
#  - local:  broker, publisher and subscriber on loopback.
#  - remote: broker and subscriber in network namespace B, publisher in
#            namespace P; B and P are joined by a veth pair (10.201.0.1/24 in
#            B, 10.201.0.2/24 in P). The script creates both namespaces and
#            the pair, and removes them on exit. Needs root.
# Systems: shimmy, mosquitto (same settings, lib.sh), and kafka-mock when
# shimmy-bench has librdkafka: librdkafka's in-process mock cluster, NOT a
# Kafka broker, so it is labelled kafka-mock and runs locally only.
# Publishers run at most a bounded window ahead of the subscriber
# (shimmy-bench --window, 16 MiB of payload), so memory stays bounded and
# latency is that of a saturated but bounded pipeline.
# Writes bench/results/paper-<timestamp>.csv (run_bench.sh's columns plus
# avg_us) and PNG plots paper-<timestamp>-{throughput,latency}-{16B,100KB}.png.
# Environment: PAPER_COUNTS_16B, PAPER_COUNTS_100KB (message counts),
# PAPER_REMOTE=0 to skip the namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/bin}
BIN=$(cd "$BIN" && pwd)
BENCH="$BIN/shimmy-bench"
for f in "$BIN/shimmyd" "$BENCH"; do
	[ -x "$f" ] || { echo "run_paper: $f missing: run 'make bench-paper'" >&2; exit 1; }
done
. bench/lib.sh
COUNTS_16B=${PAPER_COUNTS_16B:-10000 100000 1000000}
COUNTS_100KB=${PAPER_COUNTS_100KB:-10000 100000}
REMOTE=${PAPER_REMOTE:-1}
ulimit -n 65536 2>/dev/null || true

TMP=$(mktemp -d)
NS_B=shb-b-$$ NS_P=shb-p-$$ VETH_B=shbb$$ VETH_P=shbp$$
ADDR_B=10.201.0.1 ADDR_P=10.201.0.2
netns_made=0
cleanup() {
	stop_all_brokers
	if [ $netns_made = 1 ]; then
		ip netns del "$NS_B" 2>/dev/null || true # removes the veth pair too
		ip netns del "$NS_P" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p bench/results
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=bench/results/paper-$STAMP
CSV=$OUT.csv

# shimmy-shm: Shimmy's shared-memory path (publisher and subscriber on the
# broker's Unix socket, data through shared-memory logs): local only, as it
# is in the paper; across hosts it needs federation.
SYSTEMS="shimmy shimmy-shm mosquitto"
if "$BENCH" --kafka mock --count 10 --warmup 0 --quiet >/dev/null 2>&1; then
	SYSTEMS="$SYSTEMS kafka-mock"
else
	echo "run_paper: shimmy-bench has no librdkafka: kafka-mock skipped" >&2
fi

make_netns() {
	ip netns add "$NS_B"
	ip netns add "$NS_P"
	netns_made=1
	ip link add "$VETH_B" type veth peer name "$VETH_P"
	ip link set "$VETH_B" netns "$NS_B"
	ip link set "$VETH_P" netns "$NS_P"
	ip -n "$NS_B" addr add $ADDR_B/24 dev "$VETH_B"
	ip -n "$NS_P" addr add $ADDR_P/24 dev "$VETH_P"
	for ns in "$NS_B" "$NS_P"; do ip -n "$ns" link set lo up; done
	ip -n "$NS_B" link set "$VETH_B" up
	ip -n "$NS_P" link set "$VETH_P" up
}

# one LOCATION SYSTEM PAYLOAD COUNT
one() {
	local loc=$1 sys=$2 size=$3 count=$4 args=()
	local sc="paper_${loc}"
	echo "run_paper: $loc $sys ${size}B x $count" >&2
	if [ "$sys" = kafka-mock ]; then
		args=(--kafka mock)
	elif [ "$sys" = shimmy-shm ]; then
		args=(--system "$sys" --transport shm --unix "$TMP/shm.sock" --broker-pid "$PID")
	elif [ "$loc" = local ]; then
		args=(--system "$sys" --port "$PORT" --broker-pid "$PID")
	else
		args=(--system "$sys" --port "$PORT" --broker-pid "$PID"
		      --pub-netns "$NS_P" --sub-netns "$NS_B" --host $ADDR_B)
	fi
	"$BENCH" "${args[@]}" --scenario "$sc" --size "$size" --count "$count" \
		--csv "$CSV" --csv-avg --quiet >>"$TMP/bench.out" 2>>"$TMP/bench.err" ||
		echo "run_paper: $loc $sys ${size}B x $count failed: $(tail -1 "$TMP/bench.err")" >&2
}

grid() { # LOCATION SYSTEM
	for c in $COUNTS_16B; do one "$1" "$2" 16 "$c"; done
	for c in $COUNTS_100KB; do one "$1" "$2" 102400 "$c"; done
}

for sys in $SYSTEMS; do
	if [ "$sys" = kafka-mock ]; then grid local "$sys"; continue; fi
	PORT=$(free_port)
	write_conf "$TMP/$sys.conf" "$PORT" 127.0.0.1
	[ "$sys" = shimmy-shm ] && printf 'listener 0 %s\nshimmy_shm true\n' "$TMP/shm.sock" >>"$TMP/$sys.conf"
	start_broker "$sys" "$TMP/$sys.conf" "$TMP/$sys.log"
	PID=$BROKER_PID
	wait_port 127.0.0.1 "$PORT" || { cat "$TMP/$sys.log" >&2; exit 1; }
	grid local "$sys"
	stop_broker "$PID"
done

if [ "$REMOTE" = 1 ]; then
	if [ "$(id -u)" != 0 ] || ! make_netns 2>"$TMP/netns.err"; then
		echo "run_paper: cannot create network namespaces (root needed): remote runs skipped" >&2
		cat "$TMP/netns.err" >&2 2>/dev/null || true
	else
		for sys in $SYSTEMS; do
			[ "$sys" = kafka-mock ] && continue # in-process: no remote path
			[ "$sys" = shimmy-shm ] && continue # same host only (federation: later)
			PORT=$(free_port)
			write_conf "$TMP/$sys-r.conf" "$PORT" $ADDR_B
			start_broker "$sys" "$TMP/$sys-r.conf" "$TMP/$sys-r.log" "$NS_B"
			PID=$BROKER_PID
			wait_port $ADDR_B "$PORT" "$NS_B" || { cat "$TMP/$sys-r.log" >&2; exit 1; }
			grid remote "$sys"
			stop_broker "$PID"
		done
	fi
fi

# Table and plots. Series = system + location; x = message count.
awk -F, 'NR > 1 { loc = $3; sub(/^paper_/, "", loc)
	printf "%-11s %-7s %7s %8s %14.0f %10.1f %12.1f %5d\n", $1, loc, $4, $5, $8, $9, $15, $13 }' "$CSV" |
	{ printf "%-11s %-7s %7s %8s %14s %10s %12s %5s\n" system where payload messages msgs/s MB/s avg_lat_us lost; cat; }

if command -v gnuplot >/dev/null; then
	for size in 16 102400; do
		label=$([ $size = 16 ] && echo 16B || echo 100KB)
		for what in throughput latency; do
			col=$([ $what = throughput ] && echo 8 || echo 15)
			dat="$TMP/$what-$label.dat"
			# Rows: message count; columns: one per series (0 = not measured).
			awk -F, -v size=$size -v col=$col '
				NR > 1 && $4 == size { loc = $3; sub(/^paper_/, "", loc); s = $1 " " loc
					if (!(s in si)) { si[s] = ++ns; sn[ns] = s }
					if (!($5 in ci)) { ci[$5] = ++nc; cn[nc] = $5 }
					v[$5, s] = $col }
				END { printf "messages"; for (j = 1; j <= ns; j++) printf "\t\"%s\"", sn[j]; print ""
					for (i = 1; i <= nc; i++) { c = cn[i]
						printf "%s", (c >= 1000000 ? c / 1000000 "M" : c / 1000 "k")
						for (j = 1; j <= ns; j++) printf "\t%s", ((c, sn[j]) in v ? v[c, sn[j]] : "NaN")
						print "" } }' "$CSV" >"$dat"
			nser=$(head -1 "$dat" | awk -F'\t' '{ print NF - 1 }')
			[ "$nser" -ge 1 ] || continue
			ylabel=$([ $what = throughput ] && echo "messages/s (log)" || echo "average latency, us (log)")
			gnuplot <<GP || echo "run_paper: gnuplot failed for $what $label" >&2
set terminal pngcairo size 900,540 noenhanced
set output "$OUT-$what-$label.png"
set title "$what, $label payload, 1 pub -> 1 sub, QoS 0 (this machine)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set ylabel "$ylabel"
set xlabel "messages"
set key outside right top
set grid ytics
plot for [i=2:$((nser + 1))] "$dat" using i:xtic(1) title columnheader(i)
GP
		done
	done
	echo "run_paper: plots: $(ls "$OUT"-*.png 2>/dev/null | tr '\n' ' ')"
else
	echo "run_paper: gnuplot missing (scripts/deps.sh test): no plots" >&2
fi
echo "run_paper: results: $CSV"
