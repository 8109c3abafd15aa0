#!/bin/bash
# Integration test of shimmy-pub / shimmy-sub (clients/tools) against a real
# broker and against mosquitto_pub / mosquitto_sub, in MQTT 3.1.1 and 5.0,
# over TCP and the Unix socket. Run by harness.py with --unix:
#   harness.py run --broker B --unix -- test_clients_tools.sh BINDIR
# BINDIR holds shimmy-pub and shimmy-sub. Exit status 0 when every check passed.
set -u
: "${MQTT_HOST:?run me through harness.py run}" "${MQTT_PORT:?}"
BIN=${1:?usage: test_clients_tools.sh BINDIR}
SPUB=$BIN/shimmy-pub
SSUB=$BIN/shimmy-sub
H=(-h "$MQTT_HOST" -p "$MQTT_PORT")
TMP=$(mktemp -d /tmp/shimmy-it-ct.XXXXXX)
FAILS=0
CHECKS=0
P=ct$$
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$TMP"' EXIT

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
check() { # check DESCRIPTION EXPECTED ACTUAL
	CHECKS=$((CHECKS + 1))
	if [ "$2" == "$3" ]; then echo "ok: $1"; else fail "$1: expected [$2] got [$3]"; fi
}
wait_for() { # wait_for FILE PATTERN (5 s)
	for _ in $(seq 50); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}

# start_sub SUBCMD VERSION TOPIC COUNT OUTFILE [extra]: background subscriber
# on TOPIC/#, synchronised by a retained TOPIC/ready message it must see
# first (then cleared), so nothing published later is missed. SUBCMD is
# "shimmy" or "mosq". It exits after COUNT + 2 messages (ready + clear).
start_sub() {
	local kind=$1 v=$2 t=$3 n=$4 out=$5
	shift 5
	mosquitto_pub "${H[@]}" -V mqttv311 -t "$t/ready" -m ready -r -q 1 || fail "pub ready"
	if [ "$kind" = shimmy ]; then
		"$SSUB" "${H[@]}" -V "$v" -t "$t/#" -q 2 -v -C $((n + 2)) -W 15 "$@" >"$out" 2>"$out.err" &
	else
		mosquitto_sub "${H[@]}" -V "$v" -t "$t/#" -q 2 -v -C $((n + 2)) -W 15 "$@" >"$out" 2>"$out.err" &
	fi
	wait_for "$out" "$t/ready ready" || fail "$kind $v: subscriber never saw the sync message: $(cat "$out.err")"
	mosquitto_pub "${H[@]}" -V mqttv311 -t "$t/ready" -n -r -q 1
}
body() { grep -v ready "$1" | paste -sd'|'; }

for V in 311 5; do
	MV=mqttv$V; [ $V = 311 ] || MV=mqttv5
	T=$P/v$V

	# --- shimmy-pub -> mosquitto_sub, QoS 0/1/2 ---
	start_sub mosq $MV "$T/a" 3 "$TMP/a.$V"
	SUBPID=$!
	for q in 0 1 2; do "$SPUB" "${H[@]}" -V $V -t "$T/a/q$q" -m "m$q" -q $q || fail "v$V shimmy-pub qos $q rc"; done
	wait $SUBPID
	check "v$V shimmy-pub -> mosquitto_sub qos 0/1/2" "$T/a/q0 m0|$T/a/q1 m1|$T/a/q2 m2" "$(body "$TMP/a.$V")"

	# --- mosquitto_pub -> shimmy-sub, QoS 0/1/2; -C count exits 0 ---
	start_sub shimmy $V "$T/b" 3 "$TMP/b.$V"
	SUBPID=$!
	for q in 0 1 2; do mosquitto_pub "${H[@]}" -V $MV -t "$T/b/q$q" -m "n$q" -q $q; done
	wait $SUBPID
	check "v$V shimmy-sub -C exit status" 0 $?
	check "v$V mosquitto_pub -> shimmy-sub qos 0/1/2" "$T/b/q0 n0|$T/b/q1 n1|$T/b/q2 n2" "$(body "$TMP/b.$V")"

	# --- -l: 300 lines in order, shimmy to shimmy, QoS 1 and 2 ---
	for q in 1 2; do
		start_sub shimmy $V "$T/l$q" 300 "$TMP/l$q.$V"
		SUBPID=$!
		seq 1 300 | "$SPUB" "${H[@]}" -V $V -t "$T/l$q/x" -q $q -l || fail "v$V pub -l"
		wait $SUBPID
		check "v$V -l 300 lines in order (qos $q)" "$(seq 1 300 | sed "s|^|$T/l$q/x |" | md5sum)" \
			"$(grep -v ready "$TMP/l$q.$V" | md5sum)"
	done

	# --- retained: set by shimmy-pub -r, seen by shimmy-sub and mosquitto_sub, cleared by -n ---
	"$SPUB" "${H[@]}" -V $V -t "$T/ret" -m one -r -q 1
	"$SPUB" "${H[@]}" -V $V -t "$T/ret" -m two -r -q 1
	check "v$V retained (shimmy-sub, %r flag)" "1 two" "$("$SSUB" "${H[@]}" -V $V -t "$T/ret" -C 1 -W 5 -F '%r %p')"
	check "v$V retained (mosquitto_sub)" "two" "$(mosquitto_sub "${H[@]}" -V $MV -t "$T/ret" -C 1 -W 5)"
	"$SPUB" "${H[@]}" -V $V -t "$T/ret" -n -r -q 1
	"$SSUB" "${H[@]}" -V $V -t "$T/ret" -C 1 -W 1 >"$TMP/cl.$V" 2>/dev/null
	check "v$V -W timeout exit status 27" 27 $?
	check "v$V retained cleared by -n -r" "" "$(cat "$TMP/cl.$V")"

	# --- 100 KB file payload (loan API path) intact, both directions ---
	head -c 100000 /dev/urandom >"$TMP/big"
	mosquitto_sub "${H[@]}" -V $MV -t "$T/big" -C 1 -W 10 -N >"$TMP/big1.$V" &
	SUBPID=$!
	sleep 0.5
	"$SPUB" "${H[@]}" -V $V -t "$T/big" -f "$TMP/big" -q 1
	wait $SUBPID
	check "v$V 100 KB shimmy-pub -f" "$(md5sum <"$TMP/big")" "$(md5sum <"$TMP/big1.$V")"
	"$SSUB" "${H[@]}" -V $V -t "$T/big2" -C 1 -W 10 -N >"$TMP/big2.$V" &
	SUBPID=$!
	sleep 0.5
	mosquitto_pub "${H[@]}" -V $MV -t "$T/big2" -f "$TMP/big" -q 2
	wait $SUBPID
	check "v$V 100 KB shimmy-sub" "$(md5sum <"$TMP/big")" "$(md5sum <"$TMP/big2.$V")"
	# stdin (-s) through a pipe
	"$SSUB" "${H[@]}" -V $V -t "$T/big3" -C 1 -W 10 -N >"$TMP/big3.$V" &
	SUBPID=$!
	sleep 0.5
	cat "$TMP/big" | "$SPUB" "${H[@]}" -V $V -t "$T/big3" -s -q 0
	wait $SUBPID
	check "v$V 100 KB shimmy-pub -s" "$(md5sum <"$TMP/big")" "$(md5sum <"$TMP/big3.$V")"

	# --- --require-shm over TCP: non-zero exit, clear message ---
	"$SPUB" "${H[@]}" -V 5 -t "$T/x" -m x --require-shm >/dev/null 2>"$TMP/rs.$V"
	RC=$?
	check "v$V --require-shm over tcp fails" 1 $RC
	grep -q "did not negotiate the shared-memory extension" "$TMP/rs.$V" || fail "require-shm message: $(cat "$TMP/rs.$V")"
done

# --- --require-shm with 3.1.1 is a usage error ---
"$SSUB" "${H[@]}" -V 311 -t x --require-shm >/dev/null 2>"$TMP/rs311"
check "--require-shm with -V 311 fails" 1 $?
grep -q "needs MQTT 5" "$TMP/rs311" || fail "require-shm 311 message: $(cat "$TMP/rs311")"

# --- MQTT 5 properties: shimmy-pub -D -> mosquitto_sub and shimmy-sub %P ---
T=$P/props
start_sub mosq mqttv5 "$T" 1 "$TMP/p1" -F '%t %p %P'
SUBPID=$!
"$SPUB" "${H[@]}" -V 5 -t "$T/p" -m hello -q 1 -D publish user-property origin shimmy
wait $SUBPID
check "v5 user property shimmy-pub -> mosquitto_sub" "$T/p hello origin:shimmy" "$(body "$TMP/p1")"
"$SSUB" "${H[@]}" -V 5 -t "$T/q" -C 1 -W 5 -F '%t %p %P' >"$TMP/p2" &
SUBPID=$!
sleep 0.5
mosquitto_pub "${H[@]}" -V mqttv5 -t "$T/q" -m hi -q 1 -D publish user-property k1 v1 -D publish user-property k2 v2
wait $SUBPID
check "v5 user properties mosquitto_pub -> shimmy-sub" "$T/q hi k1:v1 k2:v2" "$(cat "$TMP/p2")"

# --- --stats at exit ---
"$SSUB" "${H[@]}" -V 5 -t "$P/st" -C 5 -W 10 --stats --quiet 2>"$TMP/st" &
SUBPID=$!
sleep 0.5
for i in 1 2 3 4 5; do "$SPUB" "${H[@]}" -V 5 -t "$P/st" -m "12345" -q 1; done
wait $SUBPID
check "--stats exit status" 0 $?
grep -q "received 5 msgs, 25 bytes" "$TMP/st" || fail "--stats output: $(cat "$TMP/st")"
grep -q "lost 0" "$TMP/st" || fail "--stats losses: $(cat "$TMP/st")"

# --- Unix socket: shimmy both ends, and mixed with mosquitto ---
if [ -n "${MQTT_UNIX:-}" ]; then
	U=(--unix "$MQTT_UNIX")
	for V in 311 5; do
		"$SSUB" "${U[@]}" -V $V -t "$P/ux$V" -C 2 -W 10 -q 1 >"$TMP/ux.$V" 2>&1 &
		SUBPID=$!
		sleep 0.5
		"$SPUB" "${U[@]}" -V $V -t "$P/ux$V" -m "u1" -q 1 || fail "unix pub"
		mosquitto_pub --unix "$MQTT_UNIX" -t "$P/ux$V" -m "u2" -q 2
		wait $SUBPID
		check "v$V unix socket shimmy-sub" "u1|u2" "$(paste -sd'|' "$TMP/ux.$V")"
	done
	mosquitto_sub --unix "$MQTT_UNIX" -t "$P/ux" -C 1 -W 10 >"$TMP/ux.m" &
	SUBPID=$!
	sleep 0.5
	"$SPUB" "${U[@]}" -V 5 -t "$P/ux" -m "over-unix" -q 2
	wait $SUBPID
	check "unix shimmy-pub -> mosquitto_sub" "over-unix" "$(cat "$TMP/ux.m")"
	# The shm extension is offered over unix; shimmyd echoes it
	# (SHIMMY_EXPECT_SHM=1), mosquitto does not: --require-shm must then
	# fail clearly, with a non-zero exit. -E: exit once subscribed.
	"$SSUB" "${U[@]}" -V 5 -t x -E --require-shm >/dev/null 2>"$TMP/rsu"
	RC=$?
	if [ "${SHIMMY_EXPECT_SHM:-0}" = 1 ]; then
		check "unix --require-shm succeeds" 0 $RC
	else
		check "unix --require-shm fails without broker support" 1 $RC
		grep -q "did not negotiate the shared-memory extension" "$TMP/rsu" || fail "unix require-shm message: $(cat "$TMP/rsu")"
	fi
fi

echo "test_clients_tools: $CHECKS checks, $FAILS failed"
[ $FAILS -eq 0 ]
