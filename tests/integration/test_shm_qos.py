"""Integration tests of QoS 1/2 over shared memory (docs/shm-protocol.md
§6, §10.4): a QoS 1 publisher gets a reliable log, whose writer waits for
its slowest reader instead of lapping it.

- a deliberately slow shm subscriber loses nothing and sees every message
  in order, with no broker hop;
- a TCP subscriber at QoS 1 gets every message through the broker's own
  reader;
- a stuck (SIGSTOPped) subscriber is cut loose after
  shimmy_shm_reader_timeout, the publisher goes on, and the subscriber,
  once continued, learns it was detached and is attached again;
- kill -9 of a reliable reader unblocks the writer at once (long before
  the reader timeout);
- kill -9 of a reliable publisher: its readers drain the log, then drop it.

Needs SHIMMY_BIN (shimmy-pub, shimmy-sub) and mosquitto_sub; skips (77)
without them.
"""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmbase  # noqa: E402
from shmbase import PUB, SUB, ShmCase  # noqa: E402

# Publishers ask for the smallest log class (64 KiB ring): a few hundred
# records fill it, so the writer is really held back.
SMALL_LOG = dict(os.environ, SHIMMY_SHM_LOG_CLASS="0")


def stats_of(stderr, key):
    """The value after `key` in shimmy-sub's last stats line."""
    lines = [l for l in stderr.splitlines() if l.startswith("stats(")]
    assert lines, stderr
    words = lines[-1].replace(",", "").split()
    return int(words[words.index(key) + 1])


class QosBase(ShmCase):
    TIMEOUT_MS = 20000

    @classmethod
    def conf(cls):
        return "sys_interval 1\nshimmy_shm_reader_timeout %d\n" % cls.TIMEOUT_MS

    # -- helpers --------------------------------------------------------
    def spawn(self, argv, stdin=False, env=None):
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                             env=env)
        self.procs.append(p)
        return p

    def shm_sub(self, topic, extra=(), wait=0.4):
        argv = [SUB, "--unix", self.broker.unix_path, "-V", "5", "--require-shm",
                "-q", "1", "-t", topic, "--stats"] + list(extra)
        p = self.spawn(argv)
        time.sleep(wait)  # SUBACK before anyone publishes
        return p

    def shm_pub(self, topic, small=True):
        """A QoS 1 publisher reading lines from its stdin; small: it asks
        for the 64 KiB log class."""
        p = self.spawn([PUB, "--unix", self.broker.unix_path, "-V", "5",
                        "--require-shm", "-q", "1", "-t", topic, "-l"],
                       stdin=True, env=SMALL_LOG if small else None)
        p.feeders = []
        return p

    def feed(self, p, lines):
        """Writes lines to p's stdin from a thread: a held-back publisher
        stops reading, and the test must go on meanwhile."""
        data = "".join(l + "\n" for l in lines).encode()
        for t in p.feeders:  # in order
            t.join(30)

        def run():
            try:
                p.stdin.write(data)
                p.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass  # it died: end_pub() reports how

        t = threading.Thread(target=run, daemon=True)
        t.start()
        p.feeders.append(t)

    def end_pub(self, p, timeout=30):
        for t in p.feeders:
            t.join(timeout)
            self.assertFalse(t.is_alive(), "the publisher stopped reading its input")
        out, err = p.communicate(timeout=timeout)  # closes its stdin: EOF
        self.assertEqual(p.returncode, 0, "publisher rc %d: %s" % (p.returncode, err.decode()))

    def finish(self, p, timeout=30):
        out, err = p.communicate(timeout=timeout)
        self.assertEqual(p.returncode, 0, "rc %d: %s" % (p.returncode, err.decode()))
        return out.decode().splitlines(), err.decode()



def payloads(n, width=100):
    return ["%06d-" % i + "x" * (width - 7) for i in range(n)]


class TestReliablePaths(QosBase):
    def test_slow_shm_subscriber_no_loss_in_order_no_hop(self):
        n = 3000
        msgs = payloads(n)
        # The subscriber prints every message; we do not read its stdout
        # at first, so it blocks on the pipe (64 KiB) after ~600 lines and
        # stops reading the ring: a slow consumer.
        sub = self.shm_sub("qs/#", extra=["-C", str(n), "-W", "60", "-F", "%q %p"])
        time.sleep(1.2)
        before = self.sys("$SYS/broker/publish/messages/received")
        pub = self.shm_pub("qs/a")
        self.feed(pub, msgs)
        time.sleep(1.5)
        # Held back by the slow reader (a lossy log would have let it
        # finish at once, lapping the reader).
        self.assertIsNone(pub.poll(), "the publisher was not held back")
        lines, err = self.finish(sub, timeout=60)
        self.assertEqual(lines, ["1 " + m for m in msgs])  # QoS 1, all, in order
        self.assertEqual(stats_of(err, "lost"), 0, err)
        self.assertEqual(stats_of(err, "detached"), 0, err)
        self.end_pub(pub)
        time.sleep(1.2)
        after = self.sys("$SYS/broker/publish/messages/received")
        # Only the LOG_CREATE control message went through the broker.
        self.assertLessEqual(after - before, 1, (before, after))

    def test_shm_publisher_to_tcp_qos1(self):
        n = 600
        msgs = payloads(n)
        msub = self.spawn(["mosquitto_sub", "-p", str(self.broker.port), "-q", "1",
                           "-t", "qt/#", "-F", "%q %p", "-C", str(n), "-W", "30"])
        time.sleep(0.4)
        pub = self.shm_pub("qt/a")
        self.feed(pub, msgs)
        self.end_pub(pub)
        lines, _ = self.finish(msub)
        self.assertEqual(lines, ["1 " + m for m in msgs])
        time.sleep(1.2)
        self.assertGreaterEqual(self.sys("$SYS/broker/shm/messages/routed"), n)

    def test_killed_publisher_log_drains(self):
        n = 200
        msgs = payloads(n, width=1000)  # 200 KB: the sub blocks on its pipe
        sub = self.shm_sub("qk/#", extra=["-C", str(n), "-W", "30"])
        pub = self.shm_pub("qk/a", small=False)  # 1 MiB: all of it fits
        self.feed(pub, msgs)
        time.sleep(0.8)
        pub.kill()  # -9 with records still unread in its log
        pub.wait()
        lines, err = self.finish(sub)
        self.assertEqual(lines, msgs)
        self.assertEqual(stats_of(err, "lost"), 0, err)
        time.sleep(1.2)
        self.assertEqual(self.sys("$SYS/broker/shm/logs"), 0)


class TestStuckReader(QosBase):
    TIMEOUT_MS = 1000

    def test_stuck_reader_cut_loose_and_rejoins(self):
        n = 3000
        msgs = payloads(n)
        stuck = self.shm_sub("qc/#", extra=["-v", "-W", "60"])
        live = self.shm_sub("qc/#", extra=["-C", str(n + 1), "-W", "60", "--quiet"])
        stuck.send_signal(signal.SIGSTOP)
        pub = self.shm_pub("qc/a")
        t0 = time.monotonic()
        self.feed(pub, msgs)
        # The live reader gets everything: the publisher went on after
        # the stuck reader was cut loose (about 1 s).
        end = t0 + 20
        while time.monotonic() < end:
            if self.sys("$SYS/broker/shm/readers cut") >= 1:
                break
            time.sleep(0.2)
        self.assertGreaterEqual(self.sys("$SYS/broker/shm/readers cut"), 1)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        # Wake the stuck one: it learns it was cut, and is attached again
        # at the tail, so it gets what is published from then on.
        stuck.send_signal(signal.SIGCONT)
        time.sleep(1.5)
        self.feed(pub, ["after"])
        lines, err = self.finish(live, timeout=30)
        self.assertEqual(stats_of(err, "received"), n + 1, err)
        self.assertEqual(stats_of(err, "lost"), 0, err)
        self.assertEqual(stats_of(err, "detached"), 0, err)
        time.sleep(0.5)
        stuck.send_signal(signal.SIGTERM)
        out, serr = stuck.communicate(timeout=10)
        serr = serr.decode()
        self.assertEqual(stats_of(serr, "detached"), 1, serr)
        got = out.decode().splitlines()
        self.assertIn("qc/a after", got)
        self.assertLess(len(got), n + 1)  # it did miss messages
        self.end_pub(pub)


class TestKilledReader(QosBase):
    TIMEOUT_MS = 60000  # far longer than the test: only the close helps

    def test_kill9_reader_unblocks_writer(self):
        n = 3000
        msgs = payloads(n)
        victim = self.shm_sub("qd/#", extra=["-W", "60"])
        live = self.shm_sub("qd/#", extra=["-C", str(n), "-W", "60", "-F", "%p"])
        victim.send_signal(signal.SIGSTOP)
        pub = self.shm_pub("qd/a")
        self.feed(pub, msgs)
        time.sleep(1.5)
        # Held back by the stopped reader...
        self.assertIsNone(pub.poll(), "the publisher was not held back")
        self.assertIsNone(live.poll(), "the live reader got everything already")
        victim.kill()  # ...until it dies: the broker frees its entry
        victim.wait()
        t0 = time.monotonic()
        lines, err = self.finish(live, timeout=15)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(lines, msgs)
        self.assertEqual(stats_of(err, "lost"), 0, err)
        self.end_pub(pub)
        time.sleep(1.2)
        self.assertEqual(self.sys("$SYS/broker/shm/readers cut"), 0)


class TestLossyLapping(QosBase):
    def test_lapped_reader_loss_counted_and_in_sys(self):
        # QoS 0: the writer never waits. A subscriber that stops reading
        # (its stdout pipe is full) is lapped on a 64 KiB log. Every
        # message it hands out is intact and in order (lossy logs are
        # copied and checked before delivery), what it lost is counted
        # exactly, and the broker exports the sum of the readers' counts,
        # including readers since gone.
        n = 3000
        msgs = payloads(n)
        self.assertEqual(self.sys("$SYS/broker/shm/messages/lost"), 0)
        sub = self.spawn([SUB, "--unix", self.broker.unix_path, "-V", "5", "--require-shm",
                          "-q", "0", "-t", "ql/a", "--stats", "-F", "%p"])
        time.sleep(0.4)
        pub = self.spawn([PUB, "--unix", self.broker.unix_path, "-V", "5", "--require-shm",
                          "-q", "0", "-t", "ql/a", "-l"], stdin=True, env=SMALL_LOG)
        pub.feeders = []
        self.feed(pub, msgs)
        for t in pub.feeders:  # never held back; it stays connected, so
            t.join(30)         # its log stays (and the broker sees the slot)
        self.assertIsNone(pub.poll())
        got = []
        reader = threading.Thread(target=lambda: got.extend(
            l.decode().rstrip("\n") for l in sub.stdout), daemon=True)
        reader.start()
        seen, quiet_since = -1, time.time()
        while time.time() - quiet_since < 1.0 and len(got) < n:
            if len(got) != seen:
                seen, quiet_since = len(got), time.time()
            time.sleep(0.1)
        sub.send_signal(signal.SIGINT)
        err = sub.stderr.read().decode()
        sub.wait(10)
        reader.join(10)
        lost = stats_of(err, "lost")
        self.assertGreater(lost, 0, err)
        self.assertEqual(len(got) + lost, n, err)
        self.assertEqual(got, sorted(set(got)))  # in order, no repeats, gaps only
        self.assertTrue(set(got) <= set(msgs))
        # $SYS values are retained: wait for one taken after the exit.
        deadline = time.time() + 10
        while self.sys("$SYS/broker/shm/messages/lost") != lost and time.time() < deadline:
            time.sleep(0.5)
        self.assertEqual(self.sys("$SYS/broker/shm/messages/lost"), lost)
        self.end_pub(pub)


if __name__ == "__main__":
    shmbase.main()
