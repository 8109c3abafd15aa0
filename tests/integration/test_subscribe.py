#!/usr/bin/python3
"""Subscriptions: + and # wildcards, overlapping filters, $-topics, unsubscribe."""

import harness as h
from harness import V311, V5


class TestSubscribe(h.BrokerTestCase):

    def _wild(self, version):
        base = h.uniq("w")
        sub_plus = self.paho(version=version)
        sub_plus.connect()
        sub_plus.subscribe(base + "/+/temp", 1)
        sub_hash = self.paho(version=version)
        sub_hash.connect()
        sub_hash.subscribe(base + "/a/#", 1)
        pub = self.paho(version=version)
        pub.connect()
        for t in ["/a/temp", "/b/temp", "/a/b/temp", "/a", "/a/x", "/temp", "/b/temp/x"]:
            pub.publish(base + t, t.encode(), 1)
        got_plus = sorted(m.topic[len(base):] for m in sub_plus.drain(0.5))
        got_hash = sorted(m.topic[len(base):] for m in sub_hash.drain(0.5))
        self.assertEqual(got_plus, ["/a/temp", "/b/temp"])
        # "a/#" also matches the parent "a" [MQTT-4.7.1-2]
        self.assertEqual(got_hash, ["/a", "/a/b/temp", "/a/temp", "/a/x"])

    def test_wildcards_v311(self):
        self._wild(V311)

    def test_wildcards_v5(self):
        self._wild(V5)

    def test_plus_matches_empty_level(self):
        base = h.uniq("e")
        s = self.paho()
        s.connect()
        s.subscribe(base + "/+/x", 0)
        p = self.paho()
        p.connect()
        p.publish(base + "//x", b"empty", 1)
        self.assertEqual(s.get().topic, base + "//x")

    def test_overlapping_one_copy(self):
        # 3.1.1 [MQTT-3.3.5-1]: the server must deliver at the maximum QoS of
        # the matching subscriptions; mosquitto sends ONE copy to a 3.1.1
        # client, and we require that.
        base = h.uniq("ov")
        r = self.raw()
        r.connect(h.uniq("ov"))
        r.subscribe([(base + "/#", 0)], pid=1)
        r.subscribe([(base + "/+", 1)], pid=2)
        r.subscribe([(base + "/x", 2)], pid=3)
        p = self.paho()
        p.connect()
        p.publish(base + "/x", b"one", 2)
        m = h.parse_publish(r.recv_type(h.PUBLISH))
        self.assertEqual(m["payload"], b"one")
        self.assertEqual(m["qos"], 2, "copy must be at the max QoS of the matching subscriptions")
        r.send(h.pk_pubrec(m["pid"]))
        r.recv_type(h.PUBREL)
        r.send(h.pk_pubcomp(m["pid"]))
        r.no_packet(0.7)

    def test_overlapping_paho_v311_one_copy(self):
        base = h.uniq("ov3")
        s = self.paho(version=V311)
        s.connect()
        s.subscribe(base + "/#", 1)
        s.subscribe(base + "/a/+", 1)
        p = self.paho()
        p.connect()
        p.publish(base + "/a/b", b"x", 1)
        self.assertEqual(len(s.drain(0.7)), 1, "3.1.1: one copy for overlapping subscriptions")

    def test_overlapping_paho_v5(self):
        # MQTT 5 [MQTT-3.3.4-2..3] allows one copy per matching subscription;
        # mosquitto 2.0 sends one per subscription to v5 clients (2 here). We
        # accept 1 or 2 but never more, and never 0.
        base = h.uniq("ov5")
        s = self.paho(version=V5)
        s.connect()
        s.subscribe(base + "/#", 1)
        s.subscribe(base + "/a/+", 1)
        p = self.paho(version=V5)
        p.connect()
        p.publish(base + "/a/b", b"x", 1)
        got = s.drain(0.7)
        self.assertIn(len(got), (1, 2), "v5 overlapping subscriptions: %d copies" % len(got))
        self.assertTrue(all(m.payload == b"x" for m in got))

    def test_dollar_topics_not_matched_by_wildcards(self):
        # [MQTT-4.7.2-1]: '#' and '+/...' don't match topics starting with '$'
        tail = h.uniq("d")
        all_ = self.paho()
        all_.connect()
        all_.subscribe("#", 0)
        plus = self.paho(version=V5)
        plus.connect()
        plus.subscribe("+/x", 0)
        plus.subscribe("+/%s/x" % tail, 0)
        dollar = self.paho()
        dollar.connect()
        dollar.subscribe("$test/#", 0)
        p = self.paho()
        p.connect()
        p.publish("$test/%s/x" % tail, b"dollar", 1)
        p.publish("$test/x", b"dollar2", 1)
        got = sorted(m.payload for m in dollar.drain(0.5))
        self.assertEqual(got, [b"dollar", b"dollar2"])
        leaked = [m.topic for m in all_.drain(0.2) if m.topic.startswith("$test")]
        self.assertEqual(leaked, [], "'#' must not match $-topics")
        self.assertEqual([m.topic for m in plus.drain(0.2)], [], "'+/..' must not match $-topics")

    def test_unsubscribe_stops_delivery(self):
        for version in (V311, V5):
            topic = h.uniq("us/")
            s = self.paho(version=version)
            s.connect()
            s.subscribe(topic, 1)
            p = self.paho(version=version)
            p.connect()
            p.publish(topic, b"before", 1)
            self.assertEqual(s.get().payload, b"before")
            s.unsubscribe(topic)
            p.publish(topic, b"after", 1)
            s.expect_none(0.7)

    def test_unsubscribe_raw_unsuback(self):
        topic = h.uniq("ur/")
        r = self.raw()
        r.connect(h.uniq("ur"), version=V5)
        r.subscribe([(topic, 1)], pid=5)
        r.send(h.pk_unsubscribe(6, [topic, topic + "/never"], V5))
        ua = r.recv_type(h.UNSUBACK)
        self.assertEqual(ua.body[:2], h.u16(6))
        # reason codes: 0x00 success, 0x11 no subscription existed
        self.assertEqual(list(ua.body[-2:]), [0x00, 0x11])
        p = self.paho()
        p.connect()
        p.publish(topic, b"x", 1)
        r.no_packet(0.5)


if __name__ == "__main__":
    h.main()
