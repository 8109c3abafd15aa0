#!/usr/bin/python3
"""Bad input over a raw socket. For each case the broker must close THAT
connection (v5: with the right DISCONNECT reason code when it sends one), stay
up, and keep serving a control subscriber that was connected beforehand."""

import os
import random

import harness as h
from harness import V311, V5, pk, u16, mstr

MALFORMED, PROTOCOL_ERROR, TOPIC_INVALID, TOO_LARGE = 0x81, 0x82, 0x90, 0x95

BIG = 1024  # max_packet_size in the broker config


class TestBadInput(h.BrokerTestCase):
    CONF = "max_packet_size %d\n" % BIG

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ctl_topic = h.uniq("ctl/")
        cls.ctl = h.PahoClient(cls.port, client_id=h.uniq("ctl"), version=V5)
        cls.ctl.connect()
        cls.ctl.subscribe(cls.ctl_topic, 1)
        cls.ctl_pub = h.PahoClient(cls.port, client_id=h.uniq("ctlp"))
        cls.ctl_pub.connect()
        cls.seq = 0

    @classmethod
    def tearDownClass(cls):
        cls.ctl.disconnect()
        cls.ctl_pub.disconnect()
        super().tearDownClass()

    def control_still_works(self):
        self.assertTrue(self.broker.alive(), "broker died\n" + self.broker.log()[-4000:])
        type(self).seq += 1
        payload = b"ctl-%d" % self.seq
        self.ctl_pub.publish(self.ctl_topic, payload, 1)
        # drain anything older, then require this one
        while True:
            m = self.ctl.get(5)
            if m.payload == payload:
                break
        self.assertFalse(self.ctl.disconnected.is_set(), "control subscriber was disconnected")

    def bad(self, data, version=V5, connect_first=True, reasons=(MALFORMED,),
            connack_rcs=None, close=False):
        """Send data (bytes, after a valid CONNECT when connect_first) and
        require the broker to close the connection. reasons: allowed v5
        DISCONNECT reason codes, if one is sent. connack_rcs: allowed CONNACK
        return/reason codes, if one is sent."""
        r = self.raw()
        if connect_first:
            sp, rc, _ = r.connect(h.uniq("bad"), version=version)
            self.assertEqual(rc, 0)
        r.send(data)
        if close:
            r.close()
        else:
            pkts = r.wait_closed(5)
            if os.environ.get("IT_DEBUG"):
                print("  %s v%d -> %r" % (self._testMethodName, version, pkts))
            for p in pkts:
                if p.type == h.DISCONNECT:
                    self.assertEqual(version, V5, "DISCONNECT sent to a 3.1.1 client")
                    self.assertIn(h.disconnect_reason(p), reasons,
                                  "DISCONNECT reason 0x%02x, expected one of %s"
                                  % (h.disconnect_reason(p), [hex(x) for x in reasons]))
                elif p.type == h.CONNACK and connack_rcs is not None:
                    self.assertIn(p.body[1], connack_rcs, "CONNACK code %d" % p.body[1])
                else:
                    self.fail("unexpected packet %r before close" % p)
        self.control_still_works()
        return r

    # -- connection state ----------------------------------------------------

    def test_first_packet_not_connect(self):
        # [MQTT-3.1.0-1]
        self.bad(h.pk_pingreq(), connect_first=False)
        self.bad(h.pk_subscribe(1, [("a", 0)]), connect_first=False)
        self.bad(h.pk_publish("a", b"x", 0), connect_first=False)

    def test_second_connect(self):
        # [MQTT-3.1.0-2]
        self.bad(h.pk_connect(h.uniq("again")), version=V311, reasons=())
        self.bad(h.pk_connect(h.uniq("again"), version=V5), version=V5,
                 reasons=(PROTOCOL_ERROR,))

    def test_bad_protocol_name(self):
        # [MQTT-3.1.2-1]: may answer CONNACK rc 1 (v3) / 0x84 (v5), then close
        self.bad(h.pk_connect("bn", proto_name=b"MQTX"), connect_first=False,
                 connack_rcs=(1, 0x84), reasons=(MALFORMED, PROTOCOL_ERROR, 0x84))
        self.bad(h.pk_connect("bn5", proto_name=b"MQTX", version=V5), connect_first=False,
                 connack_rcs=(1, 0x84), reasons=(MALFORMED, PROTOCOL_ERROR, 0x84))

    def test_bad_protocol_level(self):
        # [MQTT-3.1.2-2]: unsupported level -> CONNACK rc 1 (0x84 in v5 form), close
        for level in (2, 6, 7, 255):
            r = h.RawClient(self.port)
            self._cleanup.append(r)
            r.send(h.pk_connect("bl%d" % level, version=level))
            pkts = r.wait_closed(5)
            self.assertEqual([p.type for p in pkts], [h.CONNACK],
                             "level %d: expected one CONNACK then close, got %r" % (level, pkts))
            self.assertIn(pkts[0].body[1], (1, 0x84), "level %d: CONNACK code" % level)
        self.control_still_works()

    def test_bad_protocol_name_level_mismatch_v5(self):
        # 3.1 name with level 5
        self.bad(h.pk_connect("mm", proto_name=b"MQIsdp", version=V5), connect_first=False,
                 connack_rcs=(1, 0x84), reasons=(MALFORMED, PROTOCOL_ERROR, 0x84))

    # -- reserved bits ---------------------------------------------------------

    def test_reserved_connect_flag(self):
        # [MQTT-3.1.2-3]: reserved bit 0 of the connect flags must be 0
        self.bad(h.pk_connect("rf", flags_or=0x01), connect_first=False,
                 reasons=(MALFORMED,), connack_rcs=())
        self.bad(h.pk_connect("rf5", flags_or=0x01, version=V5), connect_first=False,
                 reasons=(MALFORMED,), connack_rcs=())

    def test_reserved_fixed_header_flags(self):
        # [MQTT-3.8.1-1] SUBSCRIBE flags must be 0010; [MQTT-2.2.2-2]
        for v in (V311, V5):
            self.bad(h.pk_subscribe(1, [("a", 0)], v, first_byte=0x80), version=v)
            self.bad(h.pk_subscribe(1, [("a", 0)], v, first_byte=0x83), version=v)
            if not h.is_mosquitto():  # mosquitto 2.0.11 ignores PINGREQ flags
                self.bad(pk(0xC1, b""), version=v)      # PINGREQ with flags 0001
            self.bad(pk(0x60, u16(1)), version=v)       # PUBREL with flags 0000

    def test_subscribe_reserved_option_bits(self):
        # [MQTT-3.8.3-4] 3.1.1 QoS byte upper bits; v5 bits 6-7 reserved
        self.bad(h.pk_subscribe(1, [("a", 0x40)], V311), version=V311)
        self.bad(h.pk_subscribe(1, [("a", 0xC0)], V5), version=V5)

    # -- framing ---------------------------------------------------------------

    def test_remaining_length_five_bytes(self):
        # [MQTT-1.5.5-1] at most 4 bytes
        for v in (V311, V5):
            self.bad(b"\x30\xff\xff\xff\xff\x7f", version=v, reasons=(MALFORMED, TOO_LARGE))
        self.bad(b"\x10\xff\xff\xff\xff\x7f", connect_first=False, reasons=(MALFORMED,),
                 connack_rcs=())

    def test_oversize_packet(self):
        # CONNACK tells v5 clients the limit [MQTT-3.2.2-?]: Maximum Packet Size
        r = self.raw()
        sp, rc, props = r.connect(h.uniq("big"), version=V5)
        if h.PROP_MAX_PACKET_SIZE in props:
            self.assertEqual(props[h.PROP_MAX_PACKET_SIZE], BIG)
        r.close()
        for v in (V311, V5):
            self.bad(h.pk_publish("big", b"x" * (BIG * 2), 0, version=v), version=v,
                     reasons=(TOO_LARGE,))
        # announced as huge, but only the header sent
        self.bad(b"\x30\xff\xff\xff\x7f", version=V5, reasons=(TOO_LARGE,))
        # oversize CONNECT
        self.bad(h.pk_connect("c" * (BIG * 2)), connect_first=False, reasons=(TOO_LARGE,),
                 connack_rcs=(0x95,))

    def test_truncated_then_close(self):
        c = h.pk_connect("trunc")
        self.bad(c[:7], connect_first=False, close=True)
        p = h.pk_publish("a/b", b"payload", 1, pid=9)
        self.bad(p[:-3], version=V311, close=True)
        self.bad(p[:1], version=V5, close=True)

    # -- content ---------------------------------------------------------------

    def test_invalid_utf8_topic(self):
        # [MQTT-1.5.3-1] ill-formed UTF-8 (surrogate), [MQTT-1.5.3-2] U+0000
        for topic in (b"a/\xed\xa0\x80", b"a/\x00b", b"\xff\xfe", b"a/\xc0\xaf"):
            for v in (V311, V5):
                self.bad(h.pk_publish(topic, b"x", 0, version=v), version=v,
                         reasons=(MALFORMED, TOPIC_INVALID))
            self.bad(h.pk_subscribe(1, [(topic, 0)], V5), version=V5,
                     reasons=(MALFORMED, TOPIC_INVALID, PROTOCOL_ERROR))

    def test_invalid_utf8_client_id(self):
        self.bad(h.pk_connect(b"id\xed\xa0\x80"), connect_first=False,
                 connack_rcs=(2, 0x85, 0x81), reasons=(MALFORMED,))

    def test_wildcard_in_publish_topic(self):
        # [MQTT-3.3.2-2]
        for topic in ("a/+", "a/#", "+", "#"):
            for v in (V311, V5):
                self.bad(h.pk_publish(topic, b"x", 1, pid=3, version=v), version=v,
                         reasons=(MALFORMED, PROTOCOL_ERROR, TOPIC_INVALID))

    def test_qos3(self):
        # [MQTT-3.3.1-4]
        for v in (V311, V5):
            data = h.pk_publish("a", b"x", 2, pid=1, version=v)
            data = bytes([data[0] | 0x06]) + data[1:]
            self.bad(data, version=v, reasons=(MALFORMED,))

    def test_qos_nonzero_packet_id_zero(self):
        # [MQTT-2.3.1-1]
        for v in (V311, V5):
            self.bad(h.pk_publish("a", b"x", 1, pid=0, version=v), version=v,
                     reasons=(MALFORMED, PROTOCOL_ERROR))

    def test_empty_subscribe(self):
        # [MQTT-3.8.3-3] at least one filter
        for v in (V311, V5):
            body = u16(1) + (b"\x00" if v == V5 else b"")
            self.bad(pk(0x82, body), version=v, reasons=(MALFORMED, PROTOCOL_ERROR))

    def test_random_garbage(self):
        rng = random.Random(1234)
        for i in range(6):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(8, 3000)))
            # as the first bytes on the wire, and after a valid CONNECT
            r = h.RawClient(self.port)
            self._cleanup.append(r)
            try:
                r.send(junk)
            except OSError:
                pass
            r.wait_closed(5)
            r = h.RawClient(self.port)
            self._cleanup.append(r)
            r.connect(h.uniq("g"), version=V5)
            try:
                r.send(b"\xf0" + junk)   # AUTH-type byte with bad flags first
            except OSError:
                pass
            for p in r.wait_closed(5):
                if p.type == h.DISCONNECT:
                    self.assertIn(h.disconnect_reason(p), (MALFORMED, PROTOCOL_ERROR, TOO_LARGE))
        self.control_still_works()


if __name__ == "__main__":
    h.main()
