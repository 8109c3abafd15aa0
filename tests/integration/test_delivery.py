#!/usr/bin/python3
"""Delivery: QoS 0/1/2 in both directions, ordering, DUP resend after
reconnect, inflight limits, offline queue limit."""

import socket
import time

import harness as h
from harness import V311, V5


def ack(r, m):
    """Acknowledge a received PUBLISH dict m on raw client r (full QoS flow)."""
    if m["qos"] == 1:
        r.send(h.pk_puback(m["pid"]))
    elif m["qos"] == 2:
        r.send(h.pk_pubrec(m["pid"]))
        rel = r.recv_type(h.PUBREL)
        assert rel.flags == 2, "PUBREL fixed-header flags must be 0010 [MQTT-3.6.1-1]"
        r.send(h.pk_pubcomp(m["pid"]))


class TestQoS(h.BrokerTestCase):

    def _raw_matrix(self, version):
        topic = h.uniq("qm/")
        subs = {}
        for sq in range(3):
            r = self.raw()
            self.assertEqual(r.connect(h.uniq("s"), version=version)[1], 0)
            sa = r.subscribe([("%s/%d" % (topic, sq), sq)])
            granted = sa.body[-1]
            self.assertEqual(granted, sq, "SUBACK must grant the requested QoS")
            subs[sq] = r
        pub = self.raw()
        self.assertEqual(pub.connect(h.uniq("p"), version=version)[1], 0)
        pid = 100
        for pq in range(3):
            for sq in range(3):
                pid += 1
                payload = ("pq%d-sq%d" % (pq, sq)).encode()
                pub.send(h.pk_publish("%s/%d" % (topic, sq), payload, pq, pid=pid, version=version))
                # publisher side of the flow (client -> broker)
                if pq == 1:
                    a = pub.recv_type(h.PUBACK)
                    self.assertEqual(a.body[:2], h.u16(pid), "PUBACK packet id")
                elif pq == 2:
                    a = pub.recv_type(h.PUBREC)
                    self.assertEqual(a.body[:2], h.u16(pid), "PUBREC packet id")
                    pub.send(h.pk_pubrel(pid))
                    c = pub.recv_type(h.PUBCOMP)
                    self.assertEqual(c.body[:2], h.u16(pid), "PUBCOMP packet id")
                # subscriber side (broker -> client): QoS is min(pub, sub)
                m = h.parse_publish(subs[sq].recv_type(h.PUBLISH), version)
                self.assertEqual(m["payload"], payload)
                self.assertEqual(m["qos"], min(pq, sq), "delivered QoS for %s" % payload)
                self.assertFalse(m["dup"])
                if m["qos"]:
                    self.assertNotEqual(m["pid"], 0)
                ack(subs[sq], m)
        for r in subs.values():
            r.no_packet(0.3)

    def test_raw_qos_matrix_v311(self):
        self._raw_matrix(V311)

    def test_raw_qos_matrix_v5(self):
        self._raw_matrix(V5)

    def _paho_matrix(self, version):
        topic = h.uniq("pm/")
        sub = self.paho(version=version)
        sub.connect()
        self.assertEqual(sub.subscribe(topic + "/#", 2), [2])
        pub = self.paho(version=version)
        pub.connect()
        for q in range(3):
            pub.publish("%s/%d" % (topic, q), b"m%d" % q, q)
            m = sub.get()
            self.assertEqual((m.topic, m.payload, m.qos), ("%s/%d" % (topic, q), b"m%d" % q, q))

    def test_paho_qos_v311(self):
        self._paho_matrix(V311)

    def test_paho_qos_v5(self):
        self._paho_matrix(V5)

    def test_qos2_duplicate_publish_delivered_once(self):
        topic = h.uniq("eo/")
        sub = self.paho()
        sub.connect()
        sub.subscribe(topic, 2)
        pub = self.raw()
        pub.connect(h.uniq("p"))
        pub.send(h.pk_publish(topic, b"once", 2, pid=7))
        pub.recv_type(h.PUBREC)
        pub.send(h.pk_publish(topic, b"once", 2, pid=7, dup=True))  # resend before PUBREL
        pub.recv_type(h.PUBREC)
        pub.send(h.pk_pubrel(7))
        pub.recv_type(h.PUBCOMP)
        self.assertEqual(sub.get().payload, b"once")
        sub.expect_none(0.7)

    # -- ordering --------------------------------------------------------------

    def _order(self, qos, version, n=1000):
        topic = h.uniq("ord/")
        sub = self.paho(version=version, max_inflight=100)
        sub.connect()
        sub.subscribe(topic, qos)
        pub = self.paho(version=version, max_inflight=20)
        pub.connect()
        last = None
        for i in range(n):
            last = pub.publish(topic, b"%d" % i, qos, wait=False)
        last.wait_for_publish(30)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            try:
                got.append(int(sub.msgs.get(timeout=2).payload))
            except Exception:
                break
        self.assertEqual(got, list(range(n)),
                         "qos %d: messages lost or reordered (got %d, first bad index %s)"
                         % (qos, len(got), next((i for i, v in enumerate(got) if v != i), None)))

    def test_order_qos0_1000(self):
        self._order(0, V311)

    def test_order_qos1_1000(self):
        self._order(1, V5)

    def test_order_qos2_1000(self):
        self._order(2, V311)

    def test_order_two_publishers(self):
        topic = h.uniq("ord2/")
        sub = self.paho(max_inflight=100)
        sub.connect()
        sub.subscribe(topic, 1)
        pubs = [self.paho(version=V5), self.paho(version=V311)]
        for p in pubs:
            p.connect()
        last = []
        for i in range(300):
            for k, p in enumerate(pubs):
                last.append(p.publish(topic, b"%d:%d" % (k, i), 1, wait=False))
        for info in last[-2:]:
            info.wait_for_publish(30)
        seqs = {0: [], 1: []}
        for _ in range(600):
            k, i = sub.get(10).payload.split(b":")
            seqs[int(k)].append(int(i))
        self.assertEqual(seqs[0], list(range(300)))
        self.assertEqual(seqs[1], list(range(300)))


class TestResend(h.BrokerTestCase):
    """Unacknowledged outgoing messages are resent with DUP=1 and the same
    packet id when a persistent session reconnects [MQTT-4.4.0-1]."""

    def _resend(self, version, qos):
        cid, topic = h.uniq("dup"), h.uniq("dup/")
        pr = [(h.PROP_SESSION_EXPIRY, 300)] if version == V5 else []
        r = self.raw()
        # v3.1.1 needs clean=0 for a session to outlive the connection; v5
        # uses clean start + session expiry
        self.assertEqual(r.connect(cid, clean=version == V5, version=version,
                                   properties=pr)[1], 0)
        r.subscribe([(topic, qos)])
        r.send(h.pk_disconnect(version))
        r.close()
        r = self.raw()
        sp, rc, _ = r.connect(cid, clean=False, version=version, properties=pr)
        self.assertEqual((sp, rc), (1, 0))
        p = self.paho()
        p.connect()
        p.publish(topic, b"resend-me", qos)
        m1 = h.parse_publish(r.recv_type(h.PUBLISH), version)
        self.assertEqual((m1["payload"], m1["qos"], m1["dup"]), (b"resend-me", qos, False))
        r.close()  # no ack
        time.sleep(0.2)
        r = self.raw()
        sp, rc, _ = r.connect(cid, clean=False, version=version, properties=pr)
        self.assertEqual((sp, rc), (1, 0))
        m2 = h.parse_publish(r.recv_type(h.PUBLISH), version)
        self.assertEqual(m2["payload"], b"resend-me")
        self.assertTrue(m2["dup"], "resent PUBLISH must have DUP=1 [MQTT-3.3.1-1]")
        self.assertEqual(m2["pid"], m1["pid"], "resent PUBLISH must keep its packet id")
        self.assertEqual(m2["qos"], qos)
        ack(r, m2)
        r.no_packet(0.5)

    def test_resend_qos1_v311(self):
        self._resend(V311, 1)

    def test_resend_qos2_v311(self):
        self._resend(V311, 2)

    def test_resend_qos1_v5(self):
        self._resend(V5, 1)

    def test_pubrel_resent_after_pubrec(self):
        cid, topic = h.uniq("rel"), h.uniq("rel/")
        r = self.raw()
        r.connect(cid, clean=False)
        r.subscribe([(topic, 2)])
        p = self.paho()
        p.connect()
        p.publish(topic, b"q2", 2)
        m = h.parse_publish(r.recv_type(h.PUBLISH))
        r.send(h.pk_pubrec(m["pid"]))
        rel = r.recv_type(h.PUBREL)
        self.assertEqual(rel.body[:2], h.u16(m["pid"]))
        r.close()  # no PUBCOMP
        time.sleep(0.2)
        r = self.raw()
        self.assertEqual(r.connect(cid, clean=False)[:2], (1, 0))
        rel = r.recv_type(h.PUBREL)   # [MQTT-4.4.0-1]: resend PUBREL, not PUBLISH
        self.assertEqual(rel.body[:2], h.u16(m["pid"]))
        r.send(h.pk_pubcomp(m["pid"]))
        r.no_packet(0.5)


class TestInflight(h.BrokerTestCase):
    CONF = "max_inflight_messages 2\n"

    def _inflight(self, version, properties=()):
        topic = h.uniq("inf/")
        r = self.raw()
        self.assertEqual(r.connect(h.uniq("inf"), version=version, properties=properties)[1], 0)
        r.subscribe([(topic, 1)])
        p = self.paho()
        p.connect()
        for i in range(10):
            p.publish(topic, b"%d" % i, 1)
        got = [h.parse_publish(r.recv_type(h.PUBLISH), version) for _ in range(2)]
        self.assertEqual([m["payload"] for m in got], [b"0", b"1"])
        r.no_packet(1.0)  # a 3rd PUBLISH would exceed the inflight window of 2
        # mosquitto 2.0.11 sends two PUBLISHes per PUBACK once the window is
        # full, so the window grows by one per ack (db__message_delete_outgoing,
        # mosquitto#2301). Only the first window is checked there; any other
        # broker must keep <= 2 unacknowledged at every step.
        limit = 10 if h.is_mosquitto() else 2
        seen = [m["payload"] for m in got]
        while len(seen) < 10:
            r.send(h.pk_puback(got.pop(0)["pid"]))
            try:
                while True:
                    m = h.parse_publish(r.recv(0.4), version)
                    got.append(m)
                    seen.append(m["payload"])
            except socket.timeout:
                pass
            self.assertLessEqual(len(got), limit, "unacknowledged QoS 1 PUBLISHes exceed the "
                                 "inflight limit 2: %r" % [m["payload"] for m in got])
            if not got:
                break
        self.assertEqual(seen, [b"%d" % i for i in range(10)])
        for m in got:
            r.send(h.pk_puback(m["pid"]))
        r.no_packet(0.3)

    def test_max_inflight_messages_v311(self):
        self._inflight(V311)

    def test_receive_maximum_v5(self):
        # v5: the client's Receive Maximum bounds what the broker sends it
        # [MQTT-3.3.4-9]; here it equals the configured limit.
        self._inflight(V5, [(h.PROP_RECEIVE_MAXIMUM, 2)])


class TestOfflineQueue(h.BrokerTestCase):
    CONF = "max_queued_messages 5\n"

    def _offline(self, version):
        cid, topic = h.uniq("off"), h.uniq("off/")
        c = self.paho(client_id=cid, version=version, clean=False, clean_start=False,
                      session_expiry=300)
        c.connect()
        c.subscribe(topic, 1)
        c.disconnect()
        p = self.paho()
        p.connect()
        for i in range(10):
            p.publish(topic, b"%d" % i, 1)
        c = self.paho(client_id=cid, version=version, clean=False, clean_start=False,
                      session_expiry=300)
        sp, rc, _ = c.connect()
        self.assertEqual(sp, 1)
        got = [int(m.payload) for m in c.drain(1.5)]
        self.assertEqual(len(got), 5, "max_queued_messages 5: expected exactly 5, got %r" % got)
        self.assertEqual(got, sorted(got), "queued messages out of order")

    def test_offline_queue_v311(self):
        self._offline(V311)

    def test_offline_queue_v5(self):
        self._offline(V5)


if __name__ == "__main__":
    h.main()
