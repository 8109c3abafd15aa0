#!/bin/sh
# Container isolation: the broker runs in its own IPC, mount and network
# namespaces with a private /dev/shm; the subscriber and the publisher each
# run in another such set. They share only the socket's directory, yet the
# shm path works: segments are memfds passed over the socket, and futexes
# on shared file mappings work across IPC namespaces.
# Usage: test_shm_namespaces.sh SHIMMYD BINDIR. Exit 77 without unshare/root.
set -u
BROKER=$1
BIN=$2
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
command -v unshare >/dev/null || { echo "SKIP: no unshare"; exit 77; }
unshare --ipc --mount --net --fork --kill-child true 2>/dev/null ||
	{ echo "SKIP: namespaces not available"; exit 77; }

D=$(mktemp -d /tmp/shimmy-ns-XXXXXX)
chmod 755 "$D"
printf 'listener 0 %s/s.sock\nallow_anonymous true\n' "$D" > "$D/b.conf"
NS="unshare --ipc --mount --net --fork --kill-child"
PRIV="mount -t tmpfs none /dev/shm &&"
fail() {
	echo "FAIL: $*"
	cat "$D/b.log" 2>/dev/null
	for p in $(pgrep -P "$BPID"); do kill -KILL "$p"; done
	exit 1
}

$NS sh -c "$PRIV exec $BROKER -c $D/b.conf -v" > "$D/b.log" 2>&1 &
BPID=$!
i=0
while [ ! -S "$D/s.sock" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -S "$D/s.sock" ] || fail "broker socket did not appear"

$NS sh -c "$PRIV exec $BIN/shimmy-sub --unix $D/s.sock -V 5 --require-shm -t 'ns/#' -v -C 3 -W 15 --stats" \
	> "$D/sub.out" 2> "$D/sub.err" &
SPID=$!
sleep 0.5
printf 'one\ntwo\nthree\n' | $NS sh -c "$PRIV exec $BIN/shimmy-pub --unix $D/s.sock -V 5 --require-shm -t ns/x -l" \
	|| fail "publisher failed"
wait $SPID || fail "subscriber failed: $(cat "$D/sub.err")"
[ "$(cat "$D/sub.out")" = "ns/x one
ns/x two
ns/x three" ] || fail "unexpected output: $(cat "$D/sub.out")"
grep -q "shm active" "$D/sub.err" || fail "subscriber not on shm: $(cat "$D/sub.err")"
# SIGTERM to shimmyd itself (a child of unshare): clean exit, status 0.
CHILD=$(pgrep -P "$BPID" | head -n 1)
[ -n "$CHILD" ] && kill -TERM "$CHILD"
wait "$BPID"
RC=$?
[ "$RC" = 0 ] || { echo "FAIL: broker exit status $RC"; cat "$D/b.log"; exit 1; }
rm -rf "$D"
echo "OK: shm path across separate IPC/mount/net namespaces"
