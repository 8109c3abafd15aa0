#!/usr/bin/python3
"""MQTT 5 features end to end with real v5 clients (python3-paho-mqtt with
protocol=MQTTv5, and raw packets where the wire form itself is checked):
expiry, topic aliases both ways, flow control, maximum packet size,
subscription options and identifiers, shared subscriptions, request/response,
payload format, user properties, reason strings, server keep alive, assigned
client id, will delay, $SYS."""

import socket
import threading
import time

import harness as h
from harness import V5

P_PFI, P_EXPIRY, P_CTYPE, P_RTOPIC, P_CORR = 0x01, 0x02, 0x03, 0x08, 0x09
P_SUBID, P_SESS, P_ASSIGNED, P_SKA = 0x0B, 0x11, 0x12, 0x13
P_AUTH_METHOD, P_REQ_PROBLEM, P_WILL_DELAY, P_REQ_RESP, P_RESP_INFO = 0x15, 0x17, 0x18, 0x19, 0x1A
P_REASON, P_RECV_MAX, P_ALIAS_MAX, P_ALIAS, P_USER, P_MAX_PKT = 0x1F, 0x21, 0x22, 0x23, 0x26, 0x27


def paho5(port, client_id="", props=None, clean_start=True, on_message=None):
    """A started paho v5 client; returns (client, connack properties, message list)."""
    mqtt = h._paho()
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
    got, ev, msgs = {}, threading.Event(), []
    lock = threading.Lock()

    def on_connect(cl, u, flags, rc, properties=None):
        got["rc"], got["props"] = rc, properties
        ev.set()

    def on_msg(cl, u, m):
        with lock:
            msgs.append(m)
    c.on_connect = on_connect
    c.on_message = on_message or on_msg
    pr = Properties(PacketTypes.CONNECT)
    for k, v in (props or {}).items():
        setattr(pr, k, v)
    c.connect(h.HOST, port, 60, clean_start=clean_start, properties=pr if props else None)
    c.loop_start()
    assert ev.wait(5), "no CONNACK"
    return c, got, msgs


def wait_for(pred, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def pub_props(**kw):
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    pr = Properties(PacketTypes.PUBLISH)
    for k, v in kw.items():
        setattr(pr, k, v)
    return pr


class V5Case(h.BrokerTestCase):
    CONF = "max_keepalive 30\nsys_interval 1\n"

    def raw5(self, client_id=None, properties=(), clean=True, keepalive=60):
        r = self.raw()
        r.send(h.pk_connect(client_id if client_id is not None else h.uniq("r"),
                            clean=clean, keepalive=keepalive, version=V5,
                            properties=properties))
        sp, rc, pr = h.parse_connack(r.recv_type(h.CONNACK), V5)
        self.assertEqual(rc, 0)
        return r, sp, pr

    def sub5(self, r, filt, opts=1, pid=1, properties=()):
        body = h.u16(pid) + h.props(properties) + h.mstr(filt) + bytes([opts])
        r.send(h.pk(0x82, body))
        p = r.recv_type(h.SUBACK)
        return p.body[3 + p.body[2]:]

    def pub5(self, r, topic, payload, qos=0, pid=1, properties=(), retain=False):
        r.send(h.pk_publish(topic, payload, qos=qos, pid=pid, version=V5,
                            properties=properties, retain=retain))
        if qos == 1:
            return r.recv_type(h.PUBACK)
        if qos == 2:
            p = r.recv_type(h.PUBREC)
            r.send(h.pk_pubrel(pid))
            r.recv_type(h.PUBCOMP)
            return p
        return None

    # ---- expiry

    def test_message_expiry_forwarded_and_dropped(self):
        cid, t = h.uniq("mx"), h.uniq("mx/t")
        r, _, _ = self.raw5(cid, [(P_SESS, 60)])
        self.sub5(r, t, 1)
        r.send(h.pk_disconnect(V5))
        r.close()
        p, _, _ = paho5(self.port)
        try:
            p.publish(t, b"short", 1, properties=pub_props(MessageExpiryInterval=1)).wait_for_publish(5)
            p.publish(t, b"long", 1, properties=pub_props(MessageExpiryInterval=100)).wait_for_publish(5)
        finally:
            p.disconnect(); p.loop_stop()
        time.sleep(2.2)
        r, sp, _ = self.raw5(cid, [(P_SESS, 60)], clean=False)
        self.assertEqual(sp, 1)
        m = h.parse_publish(r.recv_type(h.PUBLISH), V5)
        self.assertEqual(m["payload"], b"long", "the expired message must be dropped")
        left = dict(m["props"])[P_EXPIRY]
        self.assertTrue(95 <= left < 100, "remaining interval forwarded, got %d" % left)
        r.send(h.pk_puback(m["pid"]))
        r.no_packet(0.3)

    def test_session_expiry_changed_at_disconnect(self):
        cid = h.uniq("se")
        r, _, _ = self.raw5(cid, [(P_SESS, 60)])
        self.sub5(r, h.uniq("se/t"), 1)
        # DISCONNECT with Session Expiry 0: the session ends now.
        r.send(h.pk(0xE0, bytes([0]) + h.props([(P_SESS, 0)])))
        r.wait_closed()
        r2, sp, _ = self.raw5(cid, [(P_SESS, 60)], clean=False)
        self.assertEqual(sp, 0)
        # And the other way: 0 at CONNECT, then non-zero at DISCONNECT is
        # a protocol error [MQTT-3.14.2-2].
        r3, _, _ = self.raw5(h.uniq("se0"))
        r3.send(h.pk(0xE0, bytes([0]) + h.props([(P_SESS, 30)])))
        d = r3.recv_type(h.DISCONNECT)
        self.assertEqual(h.disconnect_reason(d), 0x82)

    # ---- topic aliases

    def test_topic_alias_inbound_and_outbound(self):
        t = h.uniq("ta/t")
        r, _, ca = self.raw5(properties=[(P_ALIAS_MAX, 2)])
        self.assertGreater(ca.get(P_ALIAS_MAX, 0), 0, "broker accepts inbound aliases")
        self.sub5(r, t, 0)
        p, _, _ = paho5(self.port)
        try:
            # Inbound: paho sets the alias, then publishes with an empty topic.
            p.publish(t, b"1", 1, properties=pub_props(TopicAlias=1)).wait_for_publish(5)
            p.publish("", b"2", 1, properties=pub_props(TopicAlias=1)).wait_for_publish(5)
        finally:
            p.disconnect(); p.loop_stop()
        m1 = h.parse_publish(r.recv_type(h.PUBLISH), V5)
        m2 = h.parse_publish(r.recv_type(h.PUBLISH), V5)
        # Outbound: the broker assigned an alias; the second one has no topic.
        a1 = dict(m1["props"]).get(P_ALIAS)
        self.assertEqual(m1["topic"], t)
        self.assertTrue(a1 and 1 <= a1 <= 2)
        self.assertEqual(m2["topic"], "")
        self.assertEqual(dict(m2["props"]).get(P_ALIAS), a1)
        self.assertEqual((m1["payload"], m2["payload"]), (b"1", b"2"))

    def test_topic_alias_paho_receiver(self):
        # paho-mqtt 1.6 reports the alias without resolving it: the first
        # message names the topic, later ones only carry the same alias.
        t = h.uniq("tap/t")
        s, _, msgs = paho5(self.port, props={"TopicAliasMaximum": 5})
        p, _, _ = paho5(self.port)
        try:
            s.subscribe(t, 1)
            time.sleep(0.2)
            for i in range(3):
                p.publish(t, b"m%d" % i, 1).wait_for_publish(5)
            self.assertTrue(wait_for(lambda: len(msgs) == 3))
            self.assertEqual([m.topic for m in msgs], [t, "", ""])
            aliases = {m.properties.TopicAlias for m in msgs}
            self.assertEqual(len(aliases), 1)
        finally:
            for c in (s, p):
                c.disconnect(); c.loop_stop()

    # ---- flow control and sizes

    def test_receive_maximum_outbound(self):
        t = h.uniq("rm/t")
        r, _, _ = self.raw5(properties=[(P_RECV_MAX, 2)])
        self.sub5(r, t, 1)
        p, _, _ = paho5(self.port)
        try:
            for i in range(5):
                p.publish(t, b"%d" % i, 1).wait_for_publish(5)
        finally:
            p.disconnect(); p.loop_stop()
        a = h.parse_publish(r.recv_type(h.PUBLISH), V5)
        b = h.parse_publish(r.recv_type(h.PUBLISH), V5)
        r.no_packet(0.4)  # window of 2 is full
        r.send(h.pk_puback(a["pid"]))
        c = h.parse_publish(r.recv_type(h.PUBLISH), V5)
        self.assertEqual([x["payload"] for x in (a, b, c)], [b"0", b"1", b"2"])

    def test_maximum_packet_size_outbound(self):
        t = h.uniq("mp/t")
        r, _, _ = self.raw5(properties=[(P_MAX_PKT, 200)])
        self.sub5(r, t, 1)
        p, _, _ = paho5(self.port)
        try:
            p.publish(t, b"x" * 500, 1).wait_for_publish(5)
            p.publish(t, b"small", 1).wait_for_publish(5)
        finally:
            p.disconnect(); p.loop_stop()
        m = h.parse_publish(r.recv_type(h.PUBLISH), V5)
        self.assertEqual(m["payload"], b"small", "too large for the client: dropped for it")

    # ---- subscriptions

    def test_no_local_rap_retain_handling(self):
        t = h.uniq("so/t")
        r, _, _ = self.raw5()
        self.sub5(r, t, 0x04 | 1)  # No Local
        self.pub5(r, t, b"own", 1)
        r.no_packet(0.3)
        self.pub5(r, t, b"ret", 1, pid=2, retain=True)
        # RH 0 sends retained (RETAIN=1); RAP keeps the flag on live ones.
        r2, _, _ = self.raw5()
        self.sub5(r2, t, 0x08 | 0x00)
        m = h.parse_publish(r2.recv_type(h.PUBLISH), V5)
        self.assertTrue(m["retain"])
        self.pub5(r, t, b"live", 1, pid=3, retain=True)
        m = h.parse_publish(r2.recv_type(h.PUBLISH), V5)
        self.assertEqual((m["payload"], m["retain"]), (b"live", True))
        # RH 1: only when the subscription is new; RH 2: never.
        r3, _, _ = self.raw5()
        self.sub5(r3, t, 0x10)
        r3.recv_type(h.PUBLISH)
        self.sub5(r3, t, 0x10, pid=2)
        r3.no_packet(0.3)
        r4, _, _ = self.raw5()
        self.sub5(r4, t, 0x20)
        r4.no_packet(0.3)
        # Without RAP a live message arrives with RETAIN 0.
        self.pub5(r, t, b"live2", 0, retain=True)
        m = h.parse_publish(r4.recv_type(h.PUBLISH), V5)
        self.assertEqual((m["payload"], m["retain"]), (b"live2", False))
        self.pub5(r, t, b"", 1, pid=4, retain=True)  # clear

    def test_subscription_identifiers(self):
        base = h.uniq("sid")
        r, _, _ = self.raw5()
        self.sub5(r, base + "/+", 0, properties=[(P_SUBID, 7)])
        self.sub5(r, base + "/#", 0, pid=2, properties=[(P_SUBID, 300)])
        p, _, _ = paho5(self.port)
        try:
            p.publish(base + "/a", b"x", 1).wait_for_publish(5)
        finally:
            p.disconnect(); p.loop_stop()
        got = set()
        for _ in range(2):
            try:
                m = h.parse_publish(r.recv(1.0), V5)
            except Exception:
                break
            got |= {v for k, v in m["props"] if k == P_SUBID}
        self.assertEqual(got, {7, 300})

    def test_shared_subscription_once_and_handoff(self):
        t = h.uniq("sh/t")
        share = "$share/g%s/%s" % (h.uniq(""), t)
        a, _, _ = self.raw5(h.uniq("sa"))
        b, _, _ = self.raw5(h.uniq("sb"))
        self.sub5(a, share, 1)
        self.sub5(b, share, 1)
        p, _, _ = paho5(self.port)
        try:
            for i in range(6):
                p.publish(t, b"%d" % i, 1).wait_for_publish(5)
        finally:
            p.disconnect(); p.loop_stop()
        got_a = [h.parse_publish(a.recv_type(h.PUBLISH), V5) for _ in range(3)]
        got_b = [h.parse_publish(b.recv_type(h.PUBLISH), V5) for _ in range(3)]
        a.no_packet(0.2); b.no_packet(0.2)
        self.assertEqual(sorted(m["payload"] for m in got_a + got_b),
                         [b"%d" % i for i in range(6)], "each message to exactly one member")
        # a leaves without acknowledging (session ends): its 3 go to b.
        a.close()
        for m in got_b:
            b.send(h.pk_puback(m["pid"]))
        again = sorted(h.parse_publish(b.recv_type(h.PUBLISH), V5)["payload"] for _ in range(3))
        self.assertEqual(again, sorted(m["payload"] for m in got_a))

    # ---- request/response, payload format, user properties

    def test_request_response_and_pass_through(self):
        t = h.uniq("rr/t")
        s, _, msgs = paho5(self.port)
        p, ca, _ = paho5(self.port, client_id=h.uniq("req"), props={"RequestResponseInformation": 1})
        try:
            ri = getattr(ca["props"], "ResponseInformation", None)
            self.assertTrue(ri and ri.startswith("response/"), ri)
            s.subscribe(t, 1)
            time.sleep(0.2)
            pr = pub_props(ResponseTopic=ri + "/x", CorrelationData=b"\x00\x01id",
                           PayloadFormatIndicator=1, ContentType="text/plain",
                           UserProperty=[("b", "1"), ("a", "2"), ("b", "3")])
            p.publish(t, "héllo".encode(), 1, properties=pr).wait_for_publish(5)
            self.assertTrue(wait_for(lambda: msgs))
            mp = msgs[0].properties
            self.assertEqual(mp.ResponseTopic, ri + "/x")
            self.assertEqual(mp.CorrelationData, b"\x00\x01id")
            self.assertEqual(mp.PayloadFormatIndicator, 1)
            self.assertEqual(mp.ContentType, "text/plain")
            self.assertEqual(mp.UserProperty, [("b", "1"), ("a", "2"), ("b", "3")])
        finally:
            for c in (s, p):
                c.disconnect(); c.loop_stop()

    def test_payload_format_invalid(self):
        r, _, _ = self.raw5()
        ack = self.pub5(r, h.uniq("pf"), b"\xc3\x28", 1, properties=[(P_PFI, 1)])
        self.assertEqual(ack.body[2], 0x99)
        pr = dict(h.parse_props(ack.body, 3)[0])
        self.assertIn(P_REASON, pr, "Reason String on an error ack")
        # Request Problem Information 0: none.
        r2, _, _ = self.raw5(properties=[(P_REQ_PROBLEM, 0)])
        ack = self.pub5(r2, h.uniq("pf"), b"\xff", 1, properties=[(P_PFI, 1)])
        self.assertEqual(ack.body[2], 0x99)
        self.assertTrue(len(ack.body) < 4 or P_REASON not in dict(h.parse_props(ack.body, 3)[0]))
        # QoS 0 has no ack: DISCONNECT 0x99.
        r2.send(h.pk_publish("x", b"\xff", version=V5, properties=[(P_PFI, 1)]))
        self.assertEqual(h.disconnect_reason(r2.recv_type(h.DISCONNECT)), 0x99)

    # ---- CONNACK properties, will delay

    def test_server_keep_alive_and_assigned_id(self):
        r = self.raw()
        r.send(h.pk_connect("", keepalive=100, version=V5))
        _, rc, pr = h.parse_connack(r.recv_type(h.CONNACK), V5)
        self.assertEqual(rc, 0)
        self.assertEqual(pr.get(P_SKA), 30)
        self.assertTrue(pr.get(P_ASSIGNED))

    def test_will_delay(self):
        t = h.uniq("wd/t")
        s, _, msgs = paho5(self.port)
        s.subscribe(t, 1)
        time.sleep(0.2)
        try:
            r = self.raw()
            body = (h.mstr("MQTT") + bytes([5, 0x02 | 0x04 | 0x08, 0, 60]) +
                    h.props([(P_SESS, 10)]) + h.mstr(h.uniq("wc")) +
                    h.props([(P_WILL_DELAY, 1)]) + h.mstr(t) + h.mstr("gone"))
            r.send(h.pk(0x10, body))
            r.recv_type(h.CONNACK)
            r.close()  # abnormal: the will is due after 1 s
            time.sleep(0.5)
            self.assertEqual(msgs, [], "will delayed")
            self.assertTrue(wait_for(lambda: msgs, 3.0))
            self.assertEqual(msgs[0].payload, b"gone")
        finally:
            s.disconnect(); s.loop_stop()

    # ---- enhanced authentication

    def test_unknown_auth_method(self):
        r = self.raw()
        r.send(h.pk_connect(h.uniq("am"), version=V5, properties=[(P_AUTH_METHOD, "NOPE-1")]))
        _, rc, _ = h.parse_connack(r.recv_type(h.CONNACK), V5)
        self.assertEqual(rc, 0x8C)

    # ---- $SYS

    def test_sys_tree(self):
        s, _, msgs = paho5(self.port)
        try:
            s.subscribe("$SYS/broker/#", 0)
            want = ["version", "uptime", "clients/connected", "clients/disconnected",
                    "clients/total", "clients/maximum", "clients/expired",
                    "messages/received", "messages/sent", "bytes/received", "bytes/sent",
                    "publish/messages/received", "publish/messages/sent",
                    "load/messages/received/1min", "load/bytes/sent/15min",
                    "subscriptions/count", "retained messages/count",
                    "store/messages/count"]
            topics = lambda: {m.topic[len("$SYS/broker/"):] for m in list(msgs)}
            self.assertTrue(wait_for(lambda: set(want) <= topics(), 4.0),
                            set(want) - topics())
            vals = {m.topic: m.payload for m in list(msgs)}
            self.assertGreater(int(vals["$SYS/broker/bytes/received"]), 0)
            self.assertGreaterEqual(int(vals["$SYS/broker/clients/connected"]), 1)
        finally:
            s.disconnect(); s.loop_stop()


if __name__ == "__main__":
    h.main()
