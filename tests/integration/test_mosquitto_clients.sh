#!/bin/bash
# Integration test with the stock mosquitto_pub / mosquitto_sub clients, in
# MQTT 3.1.1 and 5.0. Run by harness.py, which starts the broker and exports
# MQTT_HOST, MQTT_PORT and (with --unix) MQTT_UNIX:
#   /usr/bin/python3 harness.py run --broker B --unix -- ./test_mosquitto_clients.sh
# Exit status 0 when every check passed.
set -u
: "${MQTT_HOST:?run me through harness.py run}" "${MQTT_PORT:?}"
H=(-h "$MQTT_HOST" -p "$MQTT_PORT")
TMP=$(mktemp -d /tmp/shimmy-it-mc.XXXXXX)
FAILS=0
CHECKS=0
P=mc$$
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$TMP"' EXIT

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
check() { # check DESCRIPTION EXPECTED ACTUAL
	CHECKS=$((CHECKS + 1))
	if [ "$2" == "$3" ]; then echo "ok: $1"; else fail "$1: expected [$2] got [$3]"; fi
}

# wait_for FILE PATTERN: until PATTERN appears in FILE (5 s)
wait_for() {
	for _ in $(seq 50); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}

# background subscriber on TOPIC/#, synchronised by a retained TOPIC/ready
# message it must receive first, so nothing published later can be missed.
# It counts COUNT + 2 messages: the retained sync message and its clearing.
start_sub() { # start_sub VERSION TOPIC COUNT OUTFILE [extra args]
	local v=$1 t=$2 n=$3 out=$4
	shift 4
	mosquitto_pub "${H[@]}" -V "$v" -t "$t/ready" -m ready -r -q 1 || fail "pub ready"
	mosquitto_sub "${H[@]}" -V "$v" -t "$t/#" -q 2 -v -C $((n + 2)) -W 15 "$@" >"$out" 2>&1 &
	wait_for "$out" "$t/ready ready" || fail "$v: subscriber never saw the sync message"
	mosquitto_pub "${H[@]}" -V "$v" -t "$t/ready" -n -r -q 1   # clear it
}

for V in mqttv311 mqttv5; do
	T=$P/$V
	# --- QoS 0/1/2 live delivery, both directions ---
	start_sub $V "$T/live" 3 "$TMP/live.$V"
	SUBPID=$!
	for q in 0 1 2; do
		mosquitto_pub "${H[@]}" -V $V -t "$T/live/q$q" -m "msg$q" -q $q || fail "$V pub qos $q rc"
	done
	wait $SUBPID
	check "$V sub exit status" 0 $?
	check "$V qos 0/1/2 delivered" "$T/live/q0 msg0|$T/live/q1 msg1|$T/live/q2 msg2" \
		"$(grep -v ready "$TMP/live.$V" | paste -sd'|')"

	# --- ordering: 200 messages from one publisher (stdin, one per line) ---
	start_sub $V "$T/ord" 200 "$TMP/ord.$V"
	SUBPID=$!
	seq 1 200 | mosquitto_pub "${H[@]}" -V $V -t "$T/ord/x" -q 1 -l || fail "$V pub -l"
	wait $SUBPID
	check "$V 200 messages in order" "$(seq 1 200 | sed "s|^|$T/ord/x |" | md5sum)" \
		"$(grep -v ready "$TMP/ord.$V" | md5sum)"

	# --- retained: stored, replaced, cleared ---
	mosquitto_pub "${H[@]}" -V $V -t "$T/ret" -m one -r -q 1
	mosquitto_pub "${H[@]}" -V $V -t "$T/ret" -m two -r -q 1
	check "$V retained replaced" "two" "$(mosquitto_sub "${H[@]}" -V $V -t "$T/ret" -C 1 -W 5)"
	check "$V retained flag" "1 two" \
		"$(mosquitto_sub "${H[@]}" -V $V -t "$T/ret" -C 1 -W 5 -F '%r %p')"
	mosquitto_pub "${H[@]}" -V $V -t "$T/ret" -n -r -q 1
	mosquitto_sub "${H[@]}" -V $V -t "$T/ret" -C 1 -W 1 >"$TMP/cleared.$V" 2>&1
	check "$V retained cleared by empty payload" "" "$(cat "$TMP/cleared.$V" | grep -v -i timed)"

	# --- offline persistent session ---
	SID=$P-$V-persist
	X=(); [ $V = mqttv5 ] && X=(-x 300)
	mosquitto_sub "${H[@]}" -V $V -i "$SID" -c "${X[@]}" -q 1 -t "$T/off" -E
	check "$V persistent subscribe" 0 $?
	for i in 1 2 3; do mosquitto_pub "${H[@]}" -V $V -t "$T/off" -m "o$i" -q 1; done
	check "$V offline messages delivered on resume" "o1 o2 o3" \
		"$(mosquitto_sub "${H[@]}" -V $V -i "$SID" -c "${X[@]}" -q 1 -t "$T/off" -C 3 -W 5 | paste -sd' ')"

	# --- will on abnormal exit ---
	start_sub $V "$T/will" 1 "$TMP/will.$V"
	SUBPID=$!
	mosquitto_sub "${H[@]}" -V $V -t "$T/none" --will-topic "$T/will/w" --will-payload bye \
		--will-qos 1 >/dev/null 2>&1 &
	VICTIM=$!
	sleep 0.5
	{ kill -9 $VICTIM; wait $VICTIM; } 2>/dev/null
	wait $SUBPID
	check "$V will on kill -9" "$T/will/w bye" "$(grep -v ready "$TMP/will.$V")"

	# --- wildcard + and $-topics ---
	start_sub $V "$T/wc" 1 "$TMP/wc.$V"
	SUBPID=$!
	mosquitto_pub "${H[@]}" -V $V -t "\$x/$T/wc/a" -m dollar -q 1
	mosquitto_pub "${H[@]}" -V $V -t "$T/wc/a" -m plain -q 1
	wait $SUBPID
	check "$V # does not match \$ topics" "$T/wc/a plain" "$(grep -v ready "$TMP/wc.$V")"

	# --- 100 KB payload intact ---
	head -c 100000 /dev/urandom >"$TMP/big"
	mosquitto_sub "${H[@]}" -V $V -t "$T/big" -C 1 -W 10 -N >"$TMP/big.out.$V" &
	SUBPID=$!
	sleep 0.5
	mosquitto_pub "${H[@]}" -V $V -t "$T/big" -f "$TMP/big" -q 1
	wait $SUBPID
	check "$V 100 KB payload" "$(md5sum <"$TMP/big")" "$(md5sum <"$TMP/big.out.$V")"
done

# --- MQTT 5 only: user property forwarded, message expiry ---
T=$P/v5only
start_sub mqttv5 "$T" 1 "$TMP/prop" -F '%t %p %P'
SUBPID=$!
mosquitto_pub "${H[@]}" -V mqttv5 -t "$T/p" -m hello -q 1 -D publish user-property origin mc
wait $SUBPID
check "v5 user property forwarded" "$T/p hello origin:mc" "$(grep -v ready "$TMP/prop")"

# --- unix socket listener (listener 0 PATH), if the harness made one ---
if [ -n "${MQTT_UNIX:-}" ]; then
	mosquitto_sub --unix "$MQTT_UNIX" -V mqttv5 -t "$P/ux" -C 1 -W 10 >"$TMP/ux" &
	SUBPID=$!
	sleep 0.5
	mosquitto_pub --unix "$MQTT_UNIX" -V mqttv311 -t "$P/ux" -m "over-unix" -q 1
	wait $SUBPID
	check "unix socket pub/sub" "over-unix" "$(cat "$TMP/ux")"
fi

echo "test_mosquitto_clients: $CHECKS checks, $FAILS failed"
[ $FAILS -eq 0 ]
