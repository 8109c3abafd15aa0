#!/usr/bin/python3
"""Worker threads (shimmy_threads): connections are dealt round-robin to
the loops, so clients connected one after another sit on different
threads. Routing, fan-out, takeover, wills and large output must work
across them exactly as on one loop. Run with 4 loops on any machine."""

import socket
import threading
import time
import unittest

import harness as h
from harness import V311, V5


@unittest.skipIf(h.is_mosquitto(), "shimmy_threads is Shimmy's")
class TestWorkers(h.BrokerTestCase):
    # Unlimited queues: the flood tests check delivery, not the drop limit.
    CONF = "shimmy_threads 4\nmax_queued_messages 0\n"

    def test_log_names_the_threads(self):
        self.assertIn("Running 4 worker threads.", self.broker.log())

    def test_fanout_across_loops(self):
        """4 publishers and 8 subscribers on 4 loops, QoS 1: every
        subscriber gets every message once, in each publisher's order."""
        base = h.uniq("fan/")
        subs = []
        for i in range(8):
            c = self.paho(client_id=h.uniq("fs%d-" % i))
            c.connect()
            self.assertEqual(c.subscribe(base + "/#", 1), [1])
            subs.append(c)
        pubs = []
        for i in range(4):
            c = self.paho(client_id=h.uniq("fp%d-" % i))
            c.connect()
            pubs.append(c)
        n = 300
        errors = []

        def run(i, c):
            try:
                infos = [c.publish("%s/%d" % (base, i), b"%d:%d" % (i, k), 1, wait=False)
                         for k in range(n)]
                for info in infos:
                    info.wait_for_publish(30)
                    if not info.is_published():
                        errors.append("publisher %d: not acknowledged" % i)
                        return
            except Exception as e:  # reported below, not swallowed
                errors.append("publisher %d: %r" % (i, e))

        ts = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(pubs)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])
        for si, c in enumerate(subs):
            seen = {i: [] for i in range(4)}
            for _ in range(4 * n):
                m = c.get(timeout=20)
                p, k = m.payload.decode().split(":")
                self.assertEqual(m.topic, "%s/%s" % (base, p))
                seen[int(p)].append(int(k))
            c.expect_none(0.3)
            for p in range(4):
                self.assertEqual(seen[p], list(range(n)),
                                 "subscriber %d, publisher %d: order or loss" % (si, p))

    def test_stream_while_written(self):
        """One publisher floods 20000 small messages from one loop while the
        subscriber's loop writes them out without the core lock: every
        byte arrives, in order (the core must not move output it handed
        out)."""
        topic = h.uniq("flood/")
        sub = self.raw(timeout=20)
        self.assertEqual(sub.connect(h.uniq("fs"))[1], 0)
        sub.subscribe([(topic, 0)])
        pub = self.raw()
        self.assertEqual(pub.connect(h.uniq("fp"))[1], 0)
        n = 20000
        pkts = b"".join(h.pk_publish(topic, b"%08d" % k + b"x" * 192) for k in range(n))
        pub.send(pkts)
        for k in range(n):
            m = h.parse_publish(sub.recv_type(h.PUBLISH, timeout=20))
            self.assertEqual(m["payload"][:8], b"%08d" % k)

    def test_takeover_across_loops(self):
        """The same client id from four connections in turn (four loops):
        each newcomer takes the session over, the previous connection is
        closed (v5: DISCONNECT 0x8E), and the last one works."""
        cid = h.uniq("tk")
        prev = None
        for i in range(4):
            r = self.raw()
            self.assertEqual(r.connect(cid, version=V5, clean=False)[1], 0)
            if prev is not None:
                p = prev.recv(timeout=5)
                self.assertEqual(p.type, h.DISCONNECT)
                self.assertEqual(h.disconnect_reason(p), 0x8E)
                prev.wait_closed()
            prev = r
        topic = h.uniq("tk/")
        prev.subscribe([(topic, 1)], version=V5)
        prev.send(h.pk_publish(topic, b"self", 1, pid=7, version=V5))
        got = []
        for _ in range(2):
            got.append(prev.recv(timeout=5).type)
        self.assertEqual(sorted(got), sorted([h.PUBACK, h.PUBLISH]))

    def test_will_reaches_every_loop(self):
        """A will published by a connection's loop reaches subscribers on
        all the other loops."""
        topic = h.uniq("will/")
        subs = []
        for i in range(4):
            c = self.paho(client_id=h.uniq("ws%d-" % i))
            c.connect()
            c.subscribe(topic, 0)
            subs.append(c)
        r = h.RawClient(self.port)
        r.send(h.pk_connect(h.uniq("wc"), will=(topic, b"gone", 0, False)))
        self.assertEqual(h.parse_connack(r.recv_type(h.CONNACK))[1], 0)
        r.sock.shutdown(socket.SHUT_RDWR)
        r.close()
        for c in subs:
            self.assertEqual(c.get(timeout=5).payload, b"gone")


@unittest.skipIf(h.is_mosquitto(), "mosquitto buffers QoS 0 for online clients "
                 "without back-pressure")
class TestBackpressure(h.BrokerTestCase):
    """A QoS 0 flood into a consumer slower than the publisher: the broker
    stops reading the publisher instead of dropping (up to the time
    bound), and a consumer that stops reading altogether does not hold the
    publisher back for its other subscribers."""
    CONF = "shimmy_threads 2\n"
    N = 600          # 64 KB messages: about 40 MB, past the 16 MiB drop line
    SIZE = 65536

    def _flood(self, topic):
        pub = self.raw(timeout=60)
        self.assertEqual(pub.connect(h.uniq("bp"))[1], 0)
        body = b"y" * (self.SIZE - 8)
        data = b"".join(h.pk_publish(topic, b"%08d" % k + body) for k in range(self.N))
        t = threading.Thread(target=pub.send, args=(data,))
        t.start()
        return t

    def test_slow_consumer_loses_nothing(self):
        topic = h.uniq("bp/")
        sub = self.raw(timeout=20)
        sub.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.assertEqual(sub.connect(h.uniq("bs"))[1], 0)
        sub.subscribe([(topic, 0)])
        t = self._flood(topic)
        for k in range(self.N):
            m = h.parse_publish(sub.recv_type(h.PUBLISH, timeout=20))
            self.assertEqual(m["payload"][:8], b"%08d" % k, "message %d lost or reordered" % k)
            if k % 8 == 0:
                time.sleep(0.004)  # slower than the publisher, still reading
        t.join(30)
        self.assertFalse(t.is_alive())

    def test_stuck_consumer_does_not_stall_others(self):
        topic = h.uniq("bq/")
        stuck = self.raw(timeout=20)
        stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.assertEqual(stuck.connect(h.uniq("st"))[1], 0)
        stuck.subscribe([(topic, 0)])
        ok = self.raw(timeout=20)
        self.assertEqual(ok.connect(h.uniq("ok"))[1], 0)
        ok.subscribe([(topic, 0)])
        t = self._flood(topic)
        for k in range(self.N):
            m = h.parse_publish(ok.recv_type(h.PUBLISH, timeout=20))
            self.assertEqual(m["payload"][:8], b"%08d" % k)
        t.join(30)
        self.assertFalse(t.is_alive())
        self.assertIn("is not reading its messages fast enough", self.broker.log())


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@unittest.skipIf(h.is_mosquitto(), "adaptive polling is Shimmy's")
class TestAdaptivePolling(h.BrokerTestCase):
    """Request/response traffic makes the loops poll between events
    (shimmy_adaptive_poll_us, on by default); once the traffic stops, an
    idle broker must go back to sleeping, not burn a core."""
    CONF = "shimmy_threads 2\n"

    def test_idle_after_round_trips_sleeps(self):
        topic = h.uniq("rr/")
        c = self.raw()
        self.assertEqual(c.connect(h.uniq("rr"))[1], 0)
        c.subscribe([(topic, 0)])
        for k in range(2000):
            c.send(h.pk_publish(topic, b"%06d" % k))
            m = h.parse_publish(c.recv_type(h.PUBLISH, timeout=10))
            self.assertEqual(m["payload"], b"%06d" % k)
        time.sleep(0.5)  # windows shrink on the first long gap
        pid = self.broker.proc.pid
        t0 = cpu_ticks(pid)
        time.sleep(3)
        used = cpu_ticks(pid) - t0
        # A polling loop would use about 300 ticks (a core for 3 s).
        self.assertLessEqual(used, 10, "idle broker used %d ticks in 3 s" % used)


if __name__ == "__main__":
    unittest.main()
