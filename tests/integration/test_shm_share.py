"""Integration tests of shared subscriptions over shared memory
(docs/shm-protocol.md §7): an shm publisher's log, read by `$share/G/f`
groups through one share page per (group, log), each message claimed by
exactly one member with atomics and no broker hop.

Covers: exactly-once across shm members, with the broker's routing
counters unchanged; a member killed with -9 mid-stream; two groups on one
topic; a plain shm subscriber beside a group; a mixed group (an shm member
and a TCP member, for whom the broker claims from the same page); pages
freed when the last member leaves; group losses in the client's stats.

Needs SHIMMY_BIN (shimmy-pub, shimmy-sub) and mosquitto_sub; skips (77)
without them.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmbase  # noqa: E402
from shmbase import PUB, SUB, ShmCase  # noqa: E402


class Member:
    """A subscriber process whose output goes to a file, so the test can
    count what it got while it runs."""

    def __init__(self, argv):
        fd, self.path = tempfile.mkstemp(prefix="shimmy-share-", suffix=".out")
        self.out = os.fdopen(fd, "wb")
        self.err_path = self.path + ".err"
        self.errf = open(self.err_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=self.errf,
                                     stdin=subprocess.DEVNULL)

    def lines(self):
        with open(self.path, "rb") as f:
            data = f.read().decode()
        # A line being written right now has no newline yet.
        return data.split("\n")[:-1]

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        self.errf.close()
        return self.lines()

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode()

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.errf.close()
        for p in (self.path, self.err_path):
            try:
                os.unlink(p)
            except OSError:
                pass


class ShareBase(ShmCase):
    def setUp(self):
        super().setUp()
        self.members = []

    def tearDown(self):
        for m in self.members:
            m.cleanup()
        super().tearDown()

    # -- helpers --------------------------------------------------------
    def shm_member(self, *filters, extra=()):
        argv = [SUB, "--unix", self.broker.unix_path, "-V", "5", "--require-shm"]
        argv += list(extra)
        for f in filters:
            argv += ["-t", f]
        m = Member(argv)
        self.members.append(m)
        return m

    def tcp_member(self, flt):
        m = Member(["mosquitto_sub", "-p", str(self.broker.port), "-V", "mqttv5",
                    "-t", flt])
        self.members.append(m)
        return m

    def settle(self):
        time.sleep(0.5)  # SUBACK (and with it the share pages) before publishing
        for m in self.members:
            self.assertIsNone(m.proc.poll(), "member exited: " + m.stderr())

    def publisher(self, topic):
        """A long-lived shm publisher fed line by line."""
        p = subprocess.Popen([PUB, "--unix", self.broker.unix_path, "-V", "5",
                              "--require-shm", "-t", topic, "-l"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    def feed(self, pub, lines, chunk=100, pause=0.002):
        """Writes lines in paced chunks, so every member keeps claiming."""
        for i in range(0, len(lines), chunk):
            pub.stdin.write("".join(l + "\n" for l in lines[i:i + chunk]).encode())
            pub.stdin.flush()
            time.sleep(pause)

    def close_pub(self, pub):
        pub.stdin.close()
        pub.wait(20)
        self.assertEqual(pub.returncode, 0, pub.stderr.read().decode())

    def wait_total(self, members, n, timeout=20.0):
        """Waits until members hold n lines in all; then a little longer,
        so duplicates (more than n) would show."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if sum(len(m.lines()) for m in members) >= n:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        return sum(len(m.lines()) for m in members)


    def counters(self):
        time.sleep(1.2)  # the next $SYS interval
        return {k: self.sys(k) for k in (
            "$SYS/broker/publish/messages/received",
            "$SYS/broker/shm/messages/routed",
            "$SYS/broker/shm/messages/inbound",
            "$SYS/broker/shm/messages/share claimed")}

    def assert_exactly_once(self, outs, expected):
        got = [l for o in outs for l in o]
        dups = sorted({l for l in got if got.count(l) > 1}) if len(got) != len(set(got)) else []
        self.assertEqual(dups, [], "delivered more than once")
        self.assertEqual(len(got), len(expected), "count across the group")
        self.assertEqual(set(got), set(expected), "set across the group")


class TestShmGroups(ShareBase):
    def test_exactly_once_no_broker_hop(self):
        n = 4000
        a = self.shm_member("$share/g/s1")
        b = self.shm_member("$share/g/s1")
        self.settle()
        before = self.counters()
        pub = self.publisher("s1")
        msgs = ["m%d" % i for i in range(n)]
        self.feed(pub, msgs)
        total = self.wait_total([a, b], n)
        self.close_pub(pub)
        outs = [a.stop(), b.stop()]
        self.assertEqual(total, n)
        self.assert_exactly_once(outs, msgs)
        self.assertGreater(len(outs[0]), 0, "member a got nothing")
        self.assertGreater(len(outs[1]), 0, "member b got nothing")
        after = self.counters()
        # Only the publisher's control messages (LOG_CREATE, and maybe a
        # release) reached the broker as PUBLISHes; it routed nothing, wrote
        # nothing into inbound logs and claimed nothing.
        self.assertLessEqual(after["$SYS/broker/publish/messages/received"]
                             - before["$SYS/broker/publish/messages/received"], 2)
        for k in ("$SYS/broker/shm/messages/routed", "$SYS/broker/shm/messages/inbound",
                  "$SYS/broker/shm/messages/share claimed"):
            self.assertEqual(after[k], before[k], k)

    def test_three_members_and_page_freed_when_last_leaves(self):
        n = 3000
        ms = [self.shm_member("$share/three/s3") for _ in range(3)]
        self.settle()
        pub = self.publisher("s3")
        msgs = ["t%d" % i for i in range(n)]
        self.feed(pub, msgs)
        self.assertEqual(self.wait_total(ms, n), n)
        time.sleep(1.2)
        self.assertEqual(self.sys("$SYS/broker/shm/shares"), 1)
        self.assertEqual(self.sys("$SYS/broker/shm/share members"), 3)
        outs = [m.stop() for m in ms]
        self.assert_exactly_once(outs, msgs)
        self.assertGreaterEqual(sum(1 for o in outs if o), 2, [len(o) for o in outs])
        # The publisher is still there; its log stays, the page goes.
        time.sleep(1.2)
        self.assertEqual(self.sys("$SYS/broker/shm/share members"), 0)
        self.assertEqual(self.sys("$SYS/broker/shm/shares"), 0)
        self.assertEqual(self.sys("$SYS/broker/shm/logs"), 1)
        self.close_pub(pub)

    def test_member_killed_mid_stream(self):
        n = 3000
        ms = [self.shm_member("$share/k/s2") for _ in range(3)]
        self.settle()
        pub = self.publisher("s2")
        msgs = ["k%d" % i for i in range(n)]
        self.feed(pub, msgs[:1000])
        time.sleep(0.3)
        ms[0].proc.kill()  # -9, possibly in the middle of a claim
        ms[0].proc.wait()
        time.sleep(0.5)    # the broker sees the socket close
        self.feed(pub, msgs[1000:])
        survivors = ms[1:]
        dead_out = ms[0].lines()
        got = self.wait_total(survivors, n - len(dead_out) - 1)
        self.close_pub(pub)
        outs = [dead_out] + [m.stop() for m in survivors]
        all_got = [l for o in outs for l in o]
        self.assertEqual(len(all_got), len(set(all_got)), "delivered more than once")
        self.assertTrue(set(all_got) <= set(msgs))
        # The killed member may have claimed one message it never printed.
        self.assertLessEqual(n - len(all_got), 1, (n, len(all_got), got))
        # Everything published after the kill went to the survivors.
        after = set(msgs[1000:])
        self.assertEqual(after - set(l for o in outs[1:] for l in o), set())
        time.sleep(1.2)
        self.assertEqual(self.sys("$SYS/broker/shm/share members"), 0)

    def test_two_groups_same_topic(self):
        n = 2000
        g1 = [self.shm_member("$share/one/s4") for _ in range(2)]
        g2 = [self.shm_member("$share/two/s4") for _ in range(2)]
        self.settle()
        pub = self.publisher("s4")
        msgs = ["d%d" % i for i in range(n)]
        self.feed(pub, msgs)
        self.assertEqual(self.wait_total(g1 + g2, 2 * n), 2 * n)
        self.close_pub(pub)
        self.assert_exactly_once([m.stop() for m in g1], msgs)
        self.assert_exactly_once([m.stop() for m in g2], msgs)

    def test_plain_subscriber_beside_group(self):
        n = 2000
        plain = self.shm_member("s5")
        grp = [self.shm_member("$share/p/s5") for _ in range(2)]
        self.settle()
        pub = self.publisher("s5")
        msgs = ["p%d" % i for i in range(n)]
        self.feed(pub, msgs)
        self.assertEqual(self.wait_total([plain] + grp, 2 * n), 2 * n)
        self.close_pub(pub)
        self.assertEqual(plain.stop(), msgs)  # every message, in order
        self.assert_exactly_once([m.stop() for m in grp], msgs)

    def test_member_in_group_and_plain_on_same_topic(self):
        # One client, two subscriptions: the plain one gets everything, the
        # group (of which it is the only member) everything once more.
        n = 500
        m = self.shm_member("s6", "$share/self/s6")
        self.settle()
        pub = self.publisher("s6")
        msgs = ["s%d" % i for i in range(n)]
        self.feed(pub, msgs)
        self.assertEqual(self.wait_total([m], 2 * n), 2 * n)
        self.close_pub(pub)
        out = m.stop()
        self.assertEqual(sorted(out), sorted(msgs + msgs))

    def test_group_loss_in_stats(self):
        # A stopped sole member is lapped: the group's loss is reported in
        # its stats ("share lost"), and what it got plus what the group lost
        # never exceeds what was published.
        n = 30000
        m = self.shm_member("$share/lossy/s7", extra=["--stats"])
        self.settle()
        pub = self.publisher("s7")
        self.feed(pub, ["first"])
        time.sleep(0.3)
        m.proc.send_signal(signal.SIGSTOP)
        payload = "x" * 200
        self.feed(pub, [payload] * n, chunk=1000, pause=0)
        time.sleep(0.3)
        m.proc.send_signal(signal.SIGCONT)
        self.feed(pub, ["last"])
        end = time.monotonic() + 10
        while time.monotonic() < end and "last" not in m.lines():
            time.sleep(0.05)
        self.close_pub(pub)
        out = m.stop()
        self.assertIn("last", out)
        stats = m.stderr()
        line = [l for l in stats.splitlines() if l.startswith("stats(exit)")]
        self.assertTrue(line, stats)
        words = line[0].replace(",", "").split()
        lost = int(words[words.index("share") + 2])
        self.assertGreater(lost, 0, line[0])
        self.assertLess(len(out), n + 2)
        self.assertLessEqual(len(out) + lost, n + 2, line[0])


class TestMixedGroups(ShareBase):
    def test_shm_and_tcp_member_exactly_once(self):
        # The broker claims from the group's page for its TCP member, as one
        # more claimant: still exactly once across the whole group.
        n = 2000
        shm = self.shm_member("$share/mix/s8")
        tcp = self.tcp_member("$share/mix/s8")
        self.settle()
        before = self.counters()
        pub = self.publisher("s8")
        msgs = ["x%d" % i for i in range(n)]
        self.feed(pub, msgs)
        self.assertEqual(self.wait_total([shm, tcp], n), n)
        self.close_pub(pub)
        outs = [shm.stop(), tcp.stop()]
        self.assert_exactly_once(outs, msgs)
        self.assertGreater(len(outs[0]), 0, "shm member got nothing")
        self.assertGreater(len(outs[1]), 0, "TCP member got nothing")
        after = self.counters()
        claimed = (after["$SYS/broker/shm/messages/share claimed"]
                   - before["$SYS/broker/shm/messages/share claimed"])
        self.assertEqual(claimed, len(outs[1]))
        # The broker did not read the log as a whole (no broadcast reader).
        self.assertEqual(after["$SYS/broker/shm/messages/routed"],
                         before["$SYS/broker/shm/messages/routed"])

    def test_tcp_only_group_of_shm_publisher(self):
        n = 1000
        tcp = [self.tcp_member("$share/tcp/s9") for _ in range(2)]
        self.settle()
        pub = self.publisher("s9")
        msgs = ["y%d" % i for i in range(n)]
        self.feed(pub, msgs)
        self.assertEqual(self.wait_total(tcp, n), n)
        self.close_pub(pub)
        outs = [m.stop() for m in tcp]
        self.assert_exactly_once(outs, msgs)
        self.assertGreater(len(outs[0]), 0)
        self.assertGreater(len(outs[1]), 0)

    def test_tcp_publisher_to_shm_group(self):
        # A TCP publisher: the broker routes to one member per message, as
        # before (through the chosen shm member's inbound log).
        n = 200
        ms = [self.shm_member("$share/t/s10") for _ in range(2)]
        self.settle()
        p = subprocess.run(["mosquitto_pub", "-p", str(self.broker.port), "-t", "s10", "-l"],
                           input="".join("z%d\n" % i for i in range(n)).encode(),
                           capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(self.wait_total(ms, n), n)
        self.assert_exactly_once([m.stop() for m in ms], ["z%d" % i for i in range(n)])


if __name__ == "__main__":
    shmbase.main()
