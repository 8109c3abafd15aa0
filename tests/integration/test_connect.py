#!/usr/bin/python3
"""Connecting: clean session / clean start + session expiry, assigned client
identifiers, session takeover, unix-domain listener."""

import socket
import time

import harness as h
from harness import V311, V5


class TestConnect(h.BrokerTestCase):
    UNIX = True

    # -- 3.1.1 clean session -------------------------------------------------

    def test_v311_clean_session(self):
        cid, topic = h.uniq("cs"), h.uniq("cs/")
        # clean=1: no session afterwards [MQTT-3.1.2-6]
        c = self.paho(client_id=cid, version=V311, clean=True)
        sp, rc, _ = c.connect()
        self.assertEqual((sp, rc), (0, 0))
        c.disconnect()
        # clean=0 after a clean session: session present must be 0 [MQTT-3.2.2-2]
        c = self.paho(client_id=cid, version=V311, clean=False)
        sp, rc, _ = c.connect()
        self.assertEqual((sp, rc), (0, 0))
        self.assertEqual(c.subscribe(topic, 1), [1])
        c.disconnect()
        # reconnect clean=0: session present 1, subscription kept
        c = self.paho(client_id=cid, version=V311, clean=False)
        sp, rc, _ = c.connect()
        self.assertEqual((sp, rc), (1, 0), "session present must be 1 [MQTT-3.2.2-2]")
        p = self.paho(version=V311)
        p.connect()
        p.publish(topic, b"kept", 1)
        self.assertEqual(c.get().payload, b"kept")
        c.disconnect()
        # clean=1 discards the stored session
        c = self.paho(client_id=cid, version=V311, clean=True)
        sp, rc, _ = c.connect()
        self.assertEqual((sp, rc), (0, 0), "clean session must report session present 0")
        c.disconnect()
        c = self.paho(client_id=cid, version=V311, clean=False)
        sp, _, _ = c.connect()
        self.assertEqual(sp, 0, "session must have been discarded by clean=1")
        p.publish(topic, b"gone", 1)
        c.expect_none(0.5)

    def test_takeover_of_clean_session_not_resumed(self):
        # A clean session (3.1.1 clean=1, v5 expiry 0) lasts as long as its
        # connection: a clean=0 connection taking it over while it is still
        # connected starts a new session [MQTT-3.1.2-6]. (A reconnect right
        # after a DISCONNECT can overtake the old connection's close.)
        for version, kw in ((V311, dict(clean=True)),
                            (V5, dict(clean_start=False, session_expiry=0))):
            with self.subTest(version=version):
                cid, topic = h.uniq("tk"), h.uniq("tk/")
                a = self.paho(client_id=cid, version=version, **kw)
                a.connect()
                self.assertEqual(a.subscribe(topic, 1), [1])
                more = dict(clean=False) if version == V311 else \
                    dict(clean_start=False, session_expiry=60)
                b = self.paho(client_id=cid, version=version, **more)
                sp, rc, _ = b.connect()
                self.assertEqual((sp, getattr(rc, "value", rc)), (0, 0),
                                 "a clean session must not be resumed")
                p = self.paho(version=V311)
                p.connect()
                p.publish(topic, b"old-sub", 1)
                b.expect_none(0.5)
                b.disconnect()
                p.disconnect()

    # -- 5.0 clean start + session expiry -----------------------------------

    def test_v5_clean_start_session_expiry(self):
        cid, topic = h.uniq("se"), h.uniq("se/")
        c = self.paho(client_id=cid, version=V5, clean_start=True, session_expiry=60)
        sp, rc, _ = c.connect()
        self.assertEqual((sp, rc.value if hasattr(rc, "value") else rc), (0, 0))
        self.assertEqual(c.subscribe(topic, 1), [1])
        c.disconnect()
        p = self.paho(version=V5)
        p.connect()
        p.publish(topic, b"offline", 1)
        c = self.paho(client_id=cid, version=V5, clean_start=False, session_expiry=60)
        sp, rc, _ = c.connect()
        self.assertEqual(sp, 1, "session with expiry 60 must survive disconnect")
        self.assertEqual(c.get().payload, b"offline")
        c.disconnect()
        # clean start discards it
        c = self.paho(client_id=cid, version=V5, clean_start=True, session_expiry=0)
        sp, rc, _ = c.connect()
        self.assertEqual(sp, 0, "clean start must report session present 0")
        c.disconnect()
        # expiry 0 (the default): the session ended at the disconnect
        c = self.paho(client_id=cid, version=V5, clean_start=False)
        sp, rc, _ = c.connect()
        self.assertEqual(sp, 0, "session expiry 0 must end the session at disconnect")
        c.disconnect()

    def test_v5_session_expires(self):
        cid = h.uniq("sx")
        r = self.raw()
        sp, rc, _ = r.connect(cid, clean=True, version=V5,
                              properties=[(h.PROP_SESSION_EXPIRY, 1)])
        self.assertEqual((sp, rc), (0, 0))
        r.subscribe([("x/" + cid, 1)])
        r.send(h.pk_disconnect(V5))
        r.close()
        time.sleep(3.0)
        r = self.raw()
        sp, rc, _ = r.connect(cid, clean=False, version=V5,
                              properties=[(h.PROP_SESSION_EXPIRY, 60)])
        self.assertEqual((sp, rc), (0, 0), "session with expiry 1 s must be gone after 3 s")

    # -- empty client identifiers -------------------------------------------

    def test_v5_empty_id_assigned(self):
        r = self.raw()
        sp, rc, pr = r.connect("", clean=True, version=V5)
        self.assertEqual(rc, 0)
        self.assertIn(h.PROP_ASSIGNED_CLIENT_ID, pr, "v5 CONNACK must carry Assigned Client Identifier [MQTT-3.2.2-16]")
        assigned = pr[h.PROP_ASSIGNED_CLIENT_ID]
        self.assertGreater(len(assigned), 0)
        # the id is really in use: a second client with it takes over
        r2 = self.raw()
        sp, rc, _ = r2.connect(assigned.decode(), clean=True, version=V5)
        self.assertEqual(rc, 0)
        pk = r.wait_closed(5)
        for p in pk:
            if p.type == h.DISCONNECT:
                self.assertEqual(h.disconnect_reason(p), 0x8E)
        # paho v5 with an empty id also works
        c = self.paho(client_id="", version=V5)
        sp, rc, props = c.connect()
        self.assertEqual(rc, 0)
        self.assertTrue(getattr(props, "AssignedClientIdentifier", ""), "paho saw no assigned id")

    def test_v311_empty_id_clean(self):
        r = self.raw()
        sp, rc, _ = r.connect("", clean=True, version=V311)
        self.assertEqual((sp, rc), (0, 0), "[MQTT-3.1.3-6] empty id with clean=1 must be accepted")
        r.send(h.pk_pingreq())
        r.recv_type(h.PINGRESP)
        c = self.paho(client_id="", version=V311, clean=True)
        self.assertEqual(c.connect()[1], 0)

    def test_v311_empty_id_persistent_rejected(self):
        r = self.raw()
        sp, rc, _ = r.connect("", clean=False, version=V311)
        self.assertEqual((sp, rc), (0, 2), "[MQTT-3.1.3-8] CONNACK rc 2 expected")
        r.wait_closed(5)

    # -- takeover ------------------------------------------------------------

    def test_takeover_v311(self):
        cid = h.uniq("to")
        a = self.raw()
        self.assertEqual(a.connect(cid, version=V311)[1], 0)
        b = self.raw()
        self.assertEqual(b.connect(cid, version=V311)[1], 0)
        a.wait_closed(5)   # [MQTT-3.1.4-2] the existing client is disconnected
        b.send(h.pk_pingreq())
        b.recv_type(h.PINGRESP)

    def test_takeover_v5_reason_0x8e(self):
        cid = h.uniq("to5")
        a = self.raw()
        self.assertEqual(a.connect(cid, version=V5)[1], 0)
        b = self.raw()
        self.assertEqual(b.connect(cid, version=V5)[1], 0)
        pk = a.wait_closed(5)
        disc = [p for p in pk if p.type == h.DISCONNECT]
        # mosquitto < 2.0.15 just closes the old connection (mosquitto#2607);
        # [MQTT-3.1.4-3] wants DISCONNECT 0x8E first, required of other brokers.
        if not (h.is_mosquitto() and not disc):
            self.assertEqual(len(disc), 1, "v5 session takeover should send DISCONNECT, got %r" % pk)
            self.assertEqual(h.disconnect_reason(disc[0]), 0x8E, "reason must be Session taken over")
        b.send(h.pk_pingreq())
        b.recv_type(h.PINGRESP)

    def test_takeover_paho(self):
        cid = h.uniq("top")
        a = self.paho(client_id=cid, version=V5)
        a.connect()
        a.c.reconnect_delay_set(60, 120)  # don't fight back
        b = self.paho(client_id=cid, version=V5)
        b.connect()
        self.assertTrue(a.disconnected.wait(5), "first paho client not disconnected")

    # -- unix listener (`listener 0 /path.sock`, supported by mosquitto 2.0 too)

    def test_unix_listener(self):
        topic = h.uniq("ux/")
        r = h.RawClient(unix_path=self.broker.unix_path)
        self._cleanup.append(r)
        self.assertEqual(r.connect(h.uniq("ux"), version=V5)[1], 0)
        r.subscribe([(topic, 1)])
        p = self.paho()
        p.connect()
        p.publish(topic, b"via-unix", 1)
        m = h.parse_publish(r.recv_type(h.PUBLISH), V5)
        self.assertEqual((m["topic"], m["payload"]), (topic, b"via-unix"))


if __name__ == "__main__":
    h.main()
