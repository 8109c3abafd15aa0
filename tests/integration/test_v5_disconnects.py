#!/usr/bin/python3
"""Server-sent MQTT 5 DISCONNECT reason codes, each provoked for real:
0x8E session taken over, 0x8D keep alive timeout, 0x95 packet too large,
0x97 quota exceeded, 0x93 receive maximum exceeded, 0x82 protocol error,
0x81 malformed packet; and a Reason String on each."""

import socket
import time

import harness as h
from harness import V5

P_RECV_MAX, P_REASON = 0x21, 0x1F


class V5Disconnects(h.BrokerTestCase):
    CONF = "max_packet_size 2000\nmax_inflight_messages 100\n"

    def connect5(self, cid=None, keepalive=60, properties=()):
        r = self.raw()
        r.send(h.pk_connect(cid or h.uniq("d"), keepalive=keepalive, version=V5,
                            properties=properties))
        _, rc, _ = h.parse_connack(r.recv_type(h.CONNACK), V5)
        self.assertEqual(rc, 0)
        return r

    def expect_disconnect(self, r, code, timeout=5.0):
        p = r.recv_type(h.DISCONNECT, timeout=timeout)
        self.assertEqual(h.disconnect_reason(p), code)
        if len(p.body) > 1:
            pr = dict(h.parse_props(p.body, 1)[0])
            self.assertIn(P_REASON, pr)
        r.wait_closed()

    def test_session_taken_over_8e(self):
        cid = h.uniq("to")
        a = self.connect5(cid)
        self.connect5(cid)
        self.expect_disconnect(a, 0x8E)

    def test_keep_alive_timeout_8d(self):
        r = self.connect5(keepalive=1)
        self.expect_disconnect(r, 0x8D, timeout=4.0)

    def test_packet_too_large_95(self):
        r = self.connect5()
        r.send(h.pk_publish("big", b"x" * 3000, version=V5))
        self.expect_disconnect(r, 0x95)

    def test_protocol_error_82(self):
        r = self.connect5()
        r.send(h.pk_connect(h.uniq("again"), version=V5))  # [MQTT-3.1.0-2]
        self.expect_disconnect(r, 0x82)

    def test_malformed_81(self):
        r = self.connect5()
        # PUBLISH whose property length runs past the packet.
        r.send(h.pk(0x30, h.mstr("t") + bytes([0x20, 0x01])))
        self.expect_disconnect(r, 0x81)

    def test_receive_maximum_exceeded_93(self):
        r = self.connect5()
        for pid in range(1, 102):
            r.send(h.pk_publish("rm", b"x", qos=2, pid=pid, version=V5))
        while True:
            p = r.recv(5.0)
            if p.type == h.DISCONNECT:
                self.assertEqual(h.disconnect_reason(p), 0x93)
                break
            self.assertEqual(p.type, h.PUBREC)



class V5Quota(h.BrokerTestCase):
    CONF = "max_inflight_messages 100\n"

    def test_quota_exceeded_97(self):
        # A subscriber with a window of 100 QoS 1 messages of 1 MiB that
        # never reads: past 64 MiB of unread output it is cut off with 0x97.
        t = h.uniq("q")
        s = self.raw()
        s.send(h.pk_connect(h.uniq("slow"), version=V5, properties=[(P_RECV_MAX, 100)]))
        s.recv_type(h.CONNACK)
        s.send(h.pk(0x82, h.u16(1) + h.props() + h.mstr(t) + bytes([1])))
        s.recv_type(h.SUBACK)
        p = self.raw(timeout=20.0)
        p.send(h.pk_connect(h.uniq("fast"), version=V5))
        p.recv_type(h.CONNACK)
        payload = b"y" * (1 << 20)
        for pid in range(1, 81):
            p.send(h.pk_publish(t, payload, qos=1, pid=pid, version=V5))
        for _ in range(80):
            p.recv_type(h.PUBACK, timeout=20.0)
        # Now read: the stream ends with DISCONNECT 0x97.
        while True:
            pk = s.recv(10.0)
            if pk.type == h.DISCONNECT:
                self.assertEqual(h.disconnect_reason(pk), 0x97)
                break
            self.assertEqual(pk.type, h.PUBLISH)
        s.wait_closed()


if __name__ == "__main__":
    h.main()
