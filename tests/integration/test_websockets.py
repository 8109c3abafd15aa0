#!/usr/bin/python3
"""MQTT over WebSockets (`listener PORT` + `protocol websockets`): paho
clients with transport="websockets" against TCP clients in both directions
(3.1.1 and 5, QoS 0/1/2, 1 MB messages), a hand-rolled WebSocket client for
framing ([MQTT-6.0.0-1], [MQTT-6.0.0-2]: packets spanning frames, several
packets in one frame, text frames, bad upgrades), a WebSocket publisher
reaching a shared-memory subscriber (shimmy-sub from SHIMMY_BIN; skipped
without it), and config errors.
"""

import base64
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import unittest

import harness as h
from harness import V311, V5
from test_config import run_config

BIN = os.environ.get("SHIMMY_BIN", "")
SHM_SUB = os.path.join(BIN, "shimmy-sub")


class WsBroker(h.Broker):
    """A broker with a TCP listener (self.port) and a WebSocket one
    (self.ws_port)."""

    def config_text(self):
        self.ws_port = h.free_port()
        return (h.Broker.config_text(self) +
                "listener %d %s\nprotocol websockets\n" % (self.ws_port, h.HOST))

    def start(self):
        h.Broker.start(self)
        if not h.wait_port(self.ws_port, 10.0, self.proc):
            raise h.BrokerError("no websockets listener on %d\n%s" % (self.ws_port, self.log()))
        return self


# ------------------------------------------------------- raw WebSocket client

def ws_frame(opcode, payload, fin=True):
    """One client frame (masked, as clients must)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        hdr = bytes([b0, 0x80 | n])
    elif n < 65536:
        hdr = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    if n:
        m = (mask * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
    return hdr + mask + payload


def ws_upgrade(sock, subprotocol="mqtt"):
    """Sends the HTTP upgrade; returns (status line, bytes after the headers)."""
    key = base64.b64encode(os.urandom(16)).decode()
    req = ("GET /mqtt HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
           "Sec-WebSocket-Version: 13\r\n" % (h.HOST, key))
    if subprotocol:
        req += "Sec-WebSocket-Protocol: %s\r\n" % subprotocol
    sock.sendall((req + "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return buf.decode("latin-1").split("\r\n")[0], b""
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1").split("\r\n")[0], rest


class WsRaw(h.RawClient):
    """RawClient over WebSockets: send() puts MQTT bytes in one binary
    frame; received binary frames feed the MQTT packet parser."""

    def __init__(self, port, subprotocol="mqtt", timeout=5.0):
        h.RawClient.__init__(self, port, timeout=timeout)
        status, self.raw = ws_upgrade(self.sock, subprotocol)
        if " 101 " not in status + " ":
            raise AssertionError("upgrade refused: %r" % status)
        self.raw = bytearray(self.raw)
        self.close_code = None

    def send(self, data):
        self.sock.sendall(ws_frame(0x2, data))

    def send_frame(self, opcode, payload, fin=True):
        self.sock.sendall(ws_frame(opcode, payload, fin))

    def _frame(self):
        """Parses one server frame off self.raw: (opcode, payload) or None."""
        r = self.raw
        if len(r) < 2:
            return None
        n, off = r[1] & 0x7F, 2
        if n == 126:
            if len(r) < 4:
                return None
            n, off = struct.unpack_from(">H", r, 2)[0], 4
        elif n == 127:
            if len(r) < 10:
                return None
            n, off = struct.unpack_from(">Q", r, 2)[0], 10
        if len(r) < off + n:
            return None
        op, payload = r[0] & 0x0F, bytes(r[off:off + n])
        del r[:off + n]
        return op, payload

    def _fill(self, deadline):
        while True:
            f = self._frame()
            if f:
                op, payload = f
                if op in (0x0, 0x2):
                    self.buf += payload
                    return
                if op == 0x8:
                    if len(payload) >= 2:
                        self.close_code = struct.unpack(">H", payload[:2])[0]
                    self.closed = True
                    raise h.Closed()
                continue
            self.raw += self._read(deadline)


# ---------------------------------------------------------------- tests

def ws_paho(b, version, cid, **kw):
    c = h.PahoClient(b.ws_port, client_id=cid, version=version, transport="websockets", **kw)
    c.connect()
    return c


class TestWsInterop(h.BrokerTestCase):
    """paho over WebSockets <-> TCP clients, both directions."""

    @classmethod
    def setUpClass(cls):
        cls.broker = WsBroker(name=cls.__name__).start()

    def test_ws_publisher_tcp_subscriber(self):
        for version in (V311, V5):
            for qos in (0, 1, 2):
                with self.subTest(version=version, qos=qos):
                    topic = h.uniq("ws2tcp/")
                    sub = subprocess.Popen(
                        ["mosquitto_sub", "-p", str(self.broker.port), "-t", topic,
                         "-q", str(qos), "-C", "3", "-W", "10"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    time.sleep(0.3)
                    pub = ws_paho(self.broker, version, h.uniq("wsp"))
                    for i in range(3):
                        pub.publish(topic, b"m%d" % i, qos)
                    out, err = sub.communicate(timeout=15)
                    pub.disconnect()
                    self.assertEqual(sub.returncode, 0, err)
                    self.assertEqual(out.decode().split(), ["m0", "m1", "m2"])

    def test_tcp_publisher_ws_subscriber(self):
        for version in (V311, V5):
            for qos in (0, 1, 2):
                with self.subTest(version=version, qos=qos):
                    topic = h.uniq("tcp2ws/")
                    sub = ws_paho(self.broker, version, h.uniq("wss"))
                    self.assertEqual(sub.subscribe(topic, qos), [qos])
                    for i in range(3):
                        subprocess.run(["mosquitto_pub", "-p", str(self.broker.port),
                                        "-t", topic, "-q", str(qos), "-m", "n%d" % i],
                                       check=True, timeout=10)
                    got = [sub.get() for _ in range(3)]
                    self.assertEqual([m.payload for m in got], [b"n0", b"n1", b"n2"])
                    self.assertEqual([m.qos for m in got], [qos] * 3)
                    sub.disconnect()

    def test_large_message_both_ways(self):
        big = os.urandom(1 << 20)
        topic = h.uniq("big/")
        tcp = h.PahoClient(self.broker.port, client_id=h.uniq("bt"))
        tcp.connect()
        tcp.subscribe(topic + "/fromws", 1)
        ws = ws_paho(self.broker, V5, h.uniq("bw"))
        ws.subscribe(topic + "/fromtcp", 1)
        ws.publish(topic + "/fromws", big, 1)
        self.assertEqual(tcp.get(10).payload, big)
        tcp.publish(topic + "/fromtcp", big, 1)
        self.assertEqual(ws.get(10).payload, big)
        tcp.disconnect()
        ws.disconnect()

    def test_ws_to_ws_and_will(self):
        topic = h.uniq("will/")
        watcher = ws_paho(self.broker, V311, h.uniq("ww"))
        watcher.subscribe(topic, 1)
        r = WsRaw(self.broker.ws_port)
        r.connect(h.uniq("wr"), will=(topic, b"gone", 1, False))
        r.sock.close()  # no DISCONNECT: the will goes out
        m = watcher.get()
        self.assertEqual(m.payload, b"gone")
        watcher.disconnect()


class TestWsFraming(h.BrokerTestCase):
    """A hand-rolled WebSocket client."""

    @classmethod
    def setUpClass(cls):
        cls.broker = WsBroker(name=cls.__name__).start()

    def alive(self):
        self.assertTrue(self.broker.alive(), self.broker.log())
        r = WsRaw(self.broker.ws_port)
        self.assertEqual(r.connect(h.uniq("alive"))[1], 0)
        r.close()

    def test_MQTT_6_0_0_2_packets_in_one_frame_and_across_frames(self):
        topic = h.uniq("fr/")
        r = WsRaw(self.broker.ws_port)
        # CONNECT and SUBSCRIBE in one frame.
        r.send(h.pk_connect(h.uniq("fr")) + h.pk_subscribe(1, [(topic, 1)]))
        self.assertEqual(h.parse_connack(r.recv_type(h.CONNACK))[1], 0)
        r.recv_type(h.SUBACK)
        # One PUBLISH split over a fragmented message (binary + continuation).
        p = h.pk_publish(topic, b"split-fragments", qos=1, pid=7)
        r.send_frame(0x2, p[:5], fin=False)
        r.send_frame(0x0, p[5:], fin=True)
        got = {}
        for _ in range(2):
            pk = r.recv()
            got[pk.type] = pk
        self.assertIn(h.PUBACK, got)
        self.assertEqual(h.parse_publish(got[h.PUBLISH])["payload"], b"split-fragments")
        r.send(h.pk_puback(h.parse_publish(got[h.PUBLISH])["pid"]))
        # One PUBLISH split over two whole messages.
        p = h.pk_publish(topic, b"split-messages")
        r.send(p[:3])
        r.send(p[3:])
        self.assertEqual(h.parse_publish(r.recv_type(h.PUBLISH))["payload"], b"split-messages")
        # A 1 MB PUBLISH in 100 messages; comes back in many frames.
        big = os.urandom(1 << 20)
        p = h.pk_publish(topic, big)
        step = len(p) // 100 + 1
        for i in range(0, len(p), step):
            r.send(p[i:i + step])
        self.assertEqual(h.parse_publish(r.recv_type(h.PUBLISH, 10))["payload"], big)
        r.send(h.pk_disconnect())
        r.wait_closed()
        self.assertEqual(r.close_code, 1000)
        r.close()

    def test_MQTT_6_0_0_1_text_frame_closes(self):
        r = WsRaw(self.broker.ws_port)
        r.connect(h.uniq("tx"))
        r.send_frame(0x1, h.pk_pingreq())
        r.wait_closed()
        r.close()
        self.alive()
        self.assertIn("text WebSocket frame", self.broker.log())

    def test_protocol_error_closes(self):
        r = WsRaw(self.broker.ws_port)
        r.connect(h.uniq("pe"))
        r.send(b"\x00\x00")  # reserved packet type
        r.wait_closed()
        r.close()
        self.alive()

    def test_mqttv31_subprotocol(self):
        r = WsRaw(self.broker.ws_port, subprotocol="mqttv3.1")
        self.assertEqual(r.connect(h.uniq("v31"))[1], 0)
        r.close()

    def _refused(self, data):
        s = socket.create_connection((h.HOST, self.broker.ws_port), timeout=5)
        s.sendall(data)
        got = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            got += chunk
        else:
            self.fail("connection left open after %r" % data[:40])
        s.close()
        self.assertNotIn(b" 101 ", got)
        self.alive()
        return got

    def test_garbage_http_closed(self):
        self._refused(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")  # raw MQTT
        self._refused(b"HELLO WORLD \x01\x02\x03\r\n\r\n")
        self._refused(os.urandom(3000))

    def test_plain_http_refused(self):
        got = self._refused(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertRegex(got.split(b"\r\n")[0], rb"^HTTP/1.1 4\d\d")

    def test_upgrade_without_mqtt_subprotocol_closed(self):
        for proto in (None, "chat"):
            with self.subTest(proto=proto):
                s = socket.create_connection((h.HOST, self.broker.ws_port), timeout=5)
                status, rest = ws_upgrade(s, proto)
                if " 101 " in status + " ":
                    # Upgraded without a subprotocol: closed at once.
                    s.settimeout(5)
                    try:
                        while s.recv(4096):
                            pass
                    except (ConnectionResetError, BrokenPipeError):
                        pass
                s.close()
                self.alive()


@unittest.skipIf(h.is_mosquitto(), "the shm fast path is Shimmy's")
class TestWsToShm(unittest.TestCase):
    """A WebSocket publisher reaches a shared-memory subscriber."""

    def test_ws_publisher_shm_subscriber(self):
        if not os.access(SHM_SUB, os.X_OK):
            self.skipTest("shimmy-sub not found (SHIMMY_BIN)")
        b = WsBroker(unix=True, name="ws-shm").start()
        try:
            topic = h.uniq("wshm/")
            n = 20
            sub = subprocess.Popen([SHM_SUB, "--unix", b.unix_path, "-V", "5",
                                    "--require-shm", "-t", topic, "-C", str(n), "-W", "20"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(0.5)
            pub = ws_paho(b, V5, h.uniq("wsp"))
            for i in range(n):
                pub.publish(topic, b"s%d" % i, 1)
            out, err = sub.communicate(timeout=30)
            pub.disconnect()
            self.assertEqual(sub.returncode, 0, err.decode())
            self.assertEqual(out.decode().split(), ["s%d" % i for i in range(n)])
        finally:
            b.stop(check=True)


class TestWsConfig(unittest.TestCase):
    def _bad(self, text, line, what):
        rc, out, path = run_config(text)
        self.assertIsNotNone(rc, "broker kept running\n" + out)
        self.assertNotEqual(rc, 0, out)
        name = re.escape(os.path.basename(path))
        self.assertRegex(out, name + r"(:| line |, line |:line )%d\b" % line, out)
        self.assertIn(what, out)

    @unittest.skipIf(h.is_mosquitto(), "error wording is Shimmy's")
    def test_protocol_errors(self):
        port = h.free_port()
        self._bad("allow_anonymous true\nprotocol websockets\nlistener %d\n" % port,
                  2, "protocol must follow a listener")
        self._bad("listener %d 127.0.0.1\nprotocol carrier-pigeon\n" % port,
                  2, "protocol must be mqtt or websockets")
        self._bad("listener %d 127.0.0.1\nprotocol\n" % port, 2, "protocol")


if __name__ == "__main__":
    if not shutil.which("mosquitto_sub") or not shutil.which("mosquitto_pub"):
        print("SKIP: mosquitto clients missing")
        raise SystemExit(77)
    h.main()
