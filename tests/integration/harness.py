"""Integration-test harness: runs a broker process and talks MQTT to it.

Works against any broker with a mosquitto-compatible command line
(`BROKER -c FILE -v`) and mosquitto.conf-dialect configuration: shimmyd, and
mosquitto 2.0.x as the reference. Run with /usr/bin/python3 (the Debian
python that has python3-paho-mqtt).

The broker is chosen by `--broker PATH` on the command line, else the BROKER
environment variable, else /usr/sbin/mosquitto.

Contents:
  Broker       start with a temp config on free ports, wait for the port,
               stop with SIGTERM and require exit status 0; log kept in a file
               that is printed when a test fails.
  pk_*         raw MQTT packet builder (hand-built bytes, independent of the
               project's codec) and a small parser for what the broker sends.
  RawClient    blocking socket client for byte-level and bad-input tests.
  PahoClient   thin synchronous wrapper over python3-paho-mqtt (v3.1.1 / v5;
               transport="websockets" for MQTT over WebSockets).
  main()       unittest entry point, verbose, prints broker logs on failure.

Also a command-line mode used by ctest for non-Python tests:
  harness.py run --broker B [--conf-line LINE]... -- CMD ARGS...
starts the broker, runs CMD with {port}, {uri} and {host} substituted and with
MQTT_HOST/MQTT_PORT/MQTT_URI/BROKER in the environment, then stops the broker.
"""

import os
import queue
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HOST = "127.0.0.1"

# ---------------------------------------------------------------- broker path

def _take_broker_arg(argv):
    """Remove `--broker PATH` / `--broker=PATH` from argv; return PATH or None."""
    for i, a in enumerate(argv):
        if a == "--broker" and i + 1 < len(argv):
            path = argv[i + 1]
            del argv[i:i + 2]
            return path
        if a.startswith("--broker="):
            del argv[i]
            return a.split("=", 1)[1]
    return None


BROKER = _take_broker_arg(sys.argv) or os.environ.get("BROKER") or "/usr/sbin/mosquitto"


def is_mosquitto():
    """True when the broker under test is the mosquitto reference."""
    return "mosquitto" in os.path.basename(BROKER)


# ------------------------------------------------------------------- ports

def free_port():
    """A TCP port that was free a moment ago (bind to port 0, read it, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# ------------------------------------------------------------------ broker

_ALL_BROKERS = []


class BrokerError(AssertionError):
    pass


class Broker:
    """One broker process on its own free port and temp directory.

    conf: extra config lines (str). unix: also add `listener 0 <tmp>/mqtt.sock`.
    The directory is mode 0777 because mosquitto, started as root, drops to the
    `mosquitto` user before it creates a unix socket.
    """

    def __init__(self, conf="", unix=False, name="broker"):
        self.extra = conf
        self.want_unix = unix
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="shimmy-it-")
        os.chmod(self.dir, 0o777)
        self.conf_path = os.path.join(self.dir, "broker.conf")
        self.log_path = os.path.join(self.dir, "broker.log")
        self.unix_path = os.path.join(self.dir, "mqtt.sock") if unix else None
        self.port = None
        self.proc = None
        self._logf = None
        _ALL_BROKERS.append(self)

    def config_text(self):
        lines = ["listener %d %s" % (self.port, HOST), "allow_anonymous true"]
        if self.unix_path:
            lines.append("listener 0 %s" % self.unix_path)
            lines.append("allow_anonymous true")
        if self.extra:
            lines.append(self.extra.strip())
        # SHIMMY_IT_CONF: lines added to every shimmyd config (e.g. the
        # suite run with `shimmy_threads 4`); mosquitto would reject them.
        extra = os.environ.get("SHIMMY_IT_CONF", "")
        if extra and "shimmyd" in os.path.basename(BROKER):
            lines.append(extra.replace("\\n", "\n").strip())
        return "\n".join(lines) + "\n"

    def start(self):
        for attempt in range(3):
            self.port = free_port()
            with open(self.conf_path, "w") as f:
                f.write(self.config_text())
            os.chmod(self.conf_path, 0o644)
            self._logf = open(self.log_path, "ab")
            self.proc = subprocess.Popen([BROKER, "-c", self.conf_path, "-v"],
                                         stdout=self._logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            if wait_port(self.port, 10.0, self.proc):
                if self.unix_path:
                    t0 = time.monotonic()
                    while not os.path.exists(self.unix_path) and time.monotonic() - t0 < 5:
                        time.sleep(0.05)
                return self
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._logf.close()
            # A port race (someone took our free port) is retried; anything
            # else is reported.
            if "in use" not in self.log():
                break
        raise BrokerError("broker %s did not start listening on %d (exit %r)\n%s"
                          % (BROKER, self.port, self.proc.poll(), self.log()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check=True, timeout=10.0):
        """SIGTERM; with check, require exit status 0 within timeout."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        already_dead = rc is not None
        if not already_dead:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._logf.close()
                self.proc = None
                if check:
                    raise BrokerError("broker did not exit within %.0fs of SIGTERM\n%s"
                                      % (timeout, self.log()))
                return None
        self._logf.close()
        self.proc = None
        if check and (already_dead or rc != 0):
            raise BrokerError("broker %s with status %r on SIGTERM\n%s"
                              % ("had already died" if already_dead else "exited",
                                 rc, self.log()))
        return rc

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop(check=exc[0] is None)


def start_refused(conf, name="refused"):
    """Runs the broker in the foreground with `conf` as extra config lines,
    expecting it to refuse to start. Returns (exit status, its output)."""
    b = Broker(conf, name=name)
    b.port = free_port()
    with open(b.conf_path, "w") as f:
        f.write(b.config_text())
    p = subprocess.run([BROKER, "-c", b.conf_path], capture_output=True, timeout=10)
    return p.returncode, (p.stdout + p.stderr).decode()


# ------------------------------------------------------- raw packet builder
# Packet types (high nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP = 8, 9, 10, 11, 12, 13
DISCONNECT, AUTH = 14, 15
V311, V5 = 4, 5

# MQTT 5 property identifiers and their wire types.
_P_BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_P_U16 = {0x13, 0x21, 0x22, 0x23}
_P_U32 = {0x02, 0x11, 0x18, 0x27}
_P_VAR = {0x0B}
_P_STR = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
_P_BIN = {0x09, 0x16}
_P_PAIR = {0x26}
PROP_SESSION_EXPIRY = 0x11
PROP_ASSIGNED_CLIENT_ID = 0x12
PROP_RECEIVE_MAXIMUM = 0x21
PROP_MAX_PACKET_SIZE = 0x27
PROP_REASON_STRING = 0x1F


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def u16(n):
    return struct.pack(">H", n)


def mstr(s):
    """MQTT length-prefixed string. Bytes are sent verbatim (for bad UTF-8)."""
    if isinstance(s, str):
        s = s.encode("utf-8")
    return u16(len(s)) + s


def props(items=()):
    """Encode MQTT 5 properties from [(id, value), ...]."""
    body = bytearray()
    for pid, val in items:
        body += varint(pid)
        if pid in _P_BYTE:
            body += bytes([val])
        elif pid in _P_U16:
            body += u16(val)
        elif pid in _P_U32:
            body += struct.pack(">I", val)
        elif pid in _P_VAR:
            body += varint(val)
        elif pid in _P_STR or pid in _P_BIN:
            body += mstr(val)
        elif pid in _P_PAIR:
            body += mstr(val[0]) + mstr(val[1])
        else:
            raise ValueError("unknown property 0x%02x" % pid)
    return varint(len(body)) + bytes(body)


def pk(first_byte, body):
    """A whole packet: fixed header byte, remaining length, body."""
    return bytes([first_byte]) + varint(len(body)) + bytes(body)


def pk_connect(client_id="", clean=True, keepalive=60, version=V311, will=None,
               properties=(), proto_name=b"MQTT", flags_or=0, username=None):
    """CONNECT. will = (topic, payload, qos, retain). flags_or ORs raw bits in."""
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    if username is not None:
        flags |= 0x80
    flags |= flags_or
    body = mstr(proto_name) + bytes([version, flags]) + u16(keepalive)
    if version == V5:
        body += props(properties)
    body += mstr(client_id)
    if will:
        if version == V5:
            body += props()
        body += mstr(will[0]) + mstr(will[1])
    if username is not None:
        body += mstr(username)
    return pk(0x10, body)


def pk_publish(topic, payload=b"", qos=0, retain=False, dup=False, pid=1,
               version=V311, properties=(), first_byte=None):
    if isinstance(payload, str):
        payload = payload.encode()
    fb = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = mstr(topic)
    if qos:
        body += u16(pid)
    if version == V5:
        body += props(properties)
    body += payload
    return pk(fb if first_byte is None else first_byte, body)


def pk_subscribe(pid, filters, version=V311, first_byte=0x82):
    """filters: [(filter, options_byte)] where options_byte is QoS for 3.1.1."""
    body = u16(pid)
    if version == V5:
        body += props()
    for f, opt in filters:
        body += mstr(f) + bytes([opt])
    return pk(first_byte, body)


def pk_unsubscribe(pid, filters, version=V311):
    body = u16(pid)
    if version == V5:
        body += props()
    for f in filters:
        body += mstr(f)
    return pk(0xA2, body)


def pk_puback(pid):
    return pk(0x40, u16(pid))


def pk_pubrec(pid):
    return pk(0x50, u16(pid))


def pk_pubrel(pid):
    return pk(0x62, u16(pid))


def pk_pubcomp(pid):
    return pk(0x70, u16(pid))


def pk_pingreq():
    return b"\xc0\x00"


def pk_disconnect(version=V311, reason=0):
    if version == V5 and reason:
        return pk(0xE0, bytes([reason]) + props())
    return b"\xe0\x00"


# ------------------------------------------------------- raw packet parser

class Packet:
    def __init__(self, first, body):
        self.first = first
        self.type = first >> 4
        self.flags = first & 0x0F
        self.body = body

    def __repr__(self):
        return "Packet(type=%d flags=0x%x body=%s)" % (self.type, self.flags, self.body[:40].hex())


def parse_props(buf, off):
    """Decode a property block at off; return (list of (id, value), new_off)."""
    n, off = _read_varint(buf, off)
    end = off + n
    out = []
    while off < end:
        pid, off = _read_varint(buf, off)
        if pid in _P_BYTE:
            val = buf[off]; off += 1
        elif pid in _P_U16:
            val = struct.unpack_from(">H", buf, off)[0]; off += 2
        elif pid in _P_U32:
            val = struct.unpack_from(">I", buf, off)[0]; off += 4
        elif pid in _P_VAR:
            val, off = _read_varint(buf, off)
        elif pid in _P_STR or pid in _P_BIN:
            ln = struct.unpack_from(">H", buf, off)[0]
            val = bytes(buf[off + 2:off + 2 + ln]); off += 2 + ln
        elif pid in _P_PAIR:
            l1 = struct.unpack_from(">H", buf, off)[0]
            k = bytes(buf[off + 2:off + 2 + l1]); off += 2 + l1
            l2 = struct.unpack_from(">H", buf, off)[0]
            v = bytes(buf[off + 2:off + 2 + l2]); off += 2 + l2
            val = (k, v)
        else:
            raise ValueError("unknown property id 0x%x" % pid)
        out.append((pid, val))
    return out, end


def _read_varint(buf, off):
    mult, val = 1, 0
    for _ in range(4):
        b = buf[off]; off += 1
        val += (b & 0x7F) * mult
        if not b & 0x80:
            return val, off
        mult *= 128
    raise ValueError("bad varint")


def parse_connack(p, version=V311):
    """Return (session_present, return_or_reason_code, properties dict)."""
    assert p.type == CONNACK, "expected CONNACK, got %r" % p
    sp, rc = p.body[0] & 1, p.body[1]
    pr = {}
    if version == V5 and len(p.body) > 2:
        pr = dict(parse_props(p.body, 2)[0])
    return sp, rc, pr


def parse_publish(p, version=V311):
    """Return dict(topic, pid, payload, qos, dup, retain, props)."""
    assert p.type == PUBLISH, "expected PUBLISH, got %r" % p
    qos = (p.flags >> 1) & 3
    tl = struct.unpack_from(">H", p.body, 0)[0]
    topic = bytes(p.body[2:2 + tl]).decode("utf-8", "replace")
    off = 2 + tl
    pid = None
    if qos:
        pid = struct.unpack_from(">H", p.body, off)[0]
        off += 2
    pr = []
    if version == V5:
        pr, off = parse_props(p.body, off)
    return dict(topic=topic, pid=pid, payload=bytes(p.body[off:]), qos=qos,
                dup=bool(p.flags & 8), retain=bool(p.flags & 1), props=pr)


def disconnect_reason(p):
    """Reason code of a v5 DISCONNECT (0 when the short form is used)."""
    assert p.type == DISCONNECT
    return p.body[0] if p.body else 0


# ------------------------------------------------------------ raw client

class Closed(Exception):
    pass


class RawClient:
    """Blocking byte-level MQTT client. recv() returns one Packet."""

    def __init__(self, port=None, unix_path=None, timeout=5.0):
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix_path)
        else:
            self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) if not unix_path else None
        self.buf = bytearray()
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)

    def _read(self, deadline):
        """Bytes from the socket; socket.timeout past deadline, Closed on EOF."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
            raise Closed()
        return chunk

    def _fill(self, deadline):
        self.buf += self._read(deadline)

    def recv(self, timeout=5.0):
        """Next packet; socket.timeout if none in time; Closed on EOF."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                mult, n, i = 1, 0, 1
                complete = False
                while i < len(self.buf) and i <= 4:
                    b = self.buf[i]
                    n += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        complete = True
                        break
                if complete and len(self.buf) >= i + n:
                    p = Packet(self.buf[0], bytes(self.buf[i:i + n]))
                    del self.buf[:i + n]
                    return p
            self._fill(deadline)

    def recv_type(self, ptype, timeout=5.0):
        """Next packet, which must be of ptype."""
        p = self.recv(timeout)
        if p.type != ptype:
            raise AssertionError("expected packet type %d, got %r" % (ptype, p))
        return p

    def connect(self, client_id="", clean=True, keepalive=60, version=V311, **kw):
        """Send CONNECT, return (session_present, rc, props)."""
        self.version = version
        self.send(pk_connect(client_id, clean, keepalive, version, **kw))
        return parse_connack(self.recv_type(CONNACK), version)

    def subscribe(self, filters, pid=1, version=None):
        version = version or getattr(self, "version", V311)
        self.send(pk_subscribe(pid, filters, version))
        p = self.recv_type(SUBACK)
        return p

    def wait_closed(self, timeout=5.0):
        """Read until the broker closes; return the packets read before EOF.
        Raises AssertionError if the connection stays open for timeout."""
        got = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                got.append(self.recv(max(0.0, deadline - time.monotonic())))
        except Closed:
            return got
        except socket.timeout:
            raise AssertionError("broker did not close the connection within %.1fs "
                                 "(received %r)" % (timeout, got))
        except OSError:
            return got

    def no_packet(self, timeout=0.5):
        """Assert that nothing arrives within timeout."""
        try:
            p = self.recv(timeout)
        except socket.timeout:
            return
        raise AssertionError("unexpected packet %r" % p)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ------------------------------------------------------------ paho wrapper

def _paho():
    import paho.mqtt.client as mqtt  # only under /usr/bin/python3
    return mqtt


class PahoClient:
    """Synchronous facade over paho-mqtt 1.6: connect/subscribe/publish block
    until acknowledged; received messages go to self.msgs (queue.Queue)."""

    def __init__(self, port, client_id="", version=V311, clean=True, clean_start=True,
                 session_expiry=None, keepalive=60, will=None, max_inflight=20,
                 username=None, password=None, transport="tcp"):
        mqtt = _paho()
        self.mqtt = mqtt
        self.version = version
        proto = mqtt.MQTTv5 if version == V5 else mqtt.MQTTv311
        if version == V5:
            self.c = mqtt.Client(client_id=client_id, protocol=proto,
                                 transport=transport)
        else:
            self.c = mqtt.Client(client_id=client_id, clean_session=clean, protocol=proto,
                                 transport=transport)
        self.c.max_inflight_messages_set(max_inflight)
        self.c.max_queued_messages_set(0)
        self.msgs = queue.Queue()
        self.connack = None
        self._connected = threading.Event()
        self._subacks = {}
        self._unsubacks = {}
        self._cond = threading.Condition()
        self.disconnected = threading.Event()
        self.disconnect_rc = None
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_disconnect = self._on_disconnect
        if will:
            self.c.will_set(will[0], will[1], will[2], will[3])
        if username is not None:
            self.c.username_pw_set(username, password)
        self.port = port
        self.keepalive = keepalive
        self.clean_start = clean_start
        self.session_expiry = session_expiry

    def _on_connect(self, c, u, flags, rc, properties=None):
        self.connack = (flags.get("session present", 0), rc, properties)
        self._connected.set()

    def _on_subscribe(self, c, u, mid, granted, properties=None):
        with self._cond:
            self._subacks[mid] = granted
            self._cond.notify_all()

    def _on_unsubscribe(self, c, u, mid, *rest):
        with self._cond:
            self._unsubacks[mid] = True
            self._cond.notify_all()

    def _on_disconnect(self, c, u, rc, properties=None):
        self.disconnect_rc = rc
        self.disconnected.set()

    def connect(self, timeout=5.0):
        """Connect and wait for CONNACK; return (session_present, rc, props)."""
        kw = {}
        if self.version == V5:
            from paho.mqtt.properties import Properties
            from paho.mqtt.packettypes import PacketTypes
            pr = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                pr.SessionExpiryInterval = self.session_expiry
                kw["properties"] = pr
            kw["clean_start"] = self.clean_start
        self.c.connect(HOST, self.port, self.keepalive, **kw)
        self.c.loop_start()
        if not self._connected.wait(timeout):
            raise AssertionError("no CONNACK within %.1fs" % timeout)
        return self.connack

    def subscribe(self, topic, qos=0, timeout=5.0):
        """Subscribe and wait for SUBACK; return granted list."""
        if self.version == V5:
            from paho.mqtt.subscribeoptions import SubscribeOptions
            rc, mid = self.c.subscribe(topic, options=SubscribeOptions(qos=qos))
        else:
            rc, mid = self.c.subscribe(topic, qos)
        assert rc == 0, "subscribe rc %d" % rc
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, timeout):
                raise AssertionError("no SUBACK for %s" % topic)
            g = self._subacks[mid]
        return [getattr(r, "value", r) for r in g]

    def unsubscribe(self, topic, timeout=5.0):
        rc, mid = self.c.unsubscribe(topic)
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._unsubacks, timeout):
                raise AssertionError("no UNSUBACK for %s" % topic)

    def publish(self, topic, payload, qos=0, retain=False, wait=True, timeout=10.0):
        info = self.c.publish(topic, payload, qos, retain)
        if wait:
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise AssertionError("publish to %s (qos %d) not acknowledged" % (topic, qos))
        return info

    def get(self, timeout=5.0):
        """Next received message; AssertionError if none in timeout."""
        try:
            return self.msgs.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no message received within %.1fs" % timeout)

    def expect_none(self, timeout=0.5):
        try:
            m = self.msgs.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError("unexpected message on %s: %r" % (m.topic, m.payload))

    def drain(self, timeout=0.3):
        out = []
        while True:
            try:
                out.append(self.msgs.get(timeout=timeout))
            except queue.Empty:
                return out

    def disconnect(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def uniq(prefix="t"):
    """A topic/client-id fragment unique within this process run."""
    return "%s%d_%d" % (prefix, os.getpid(), random.randrange(1 << 30))


# ------------------------------------------------------------- test base

class BrokerTestCase(unittest.TestCase):
    """One broker per test class (setUpClass); its SIGTERM exit is checked."""
    CONF = ""
    UNIX = False

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(cls.CONF, unix=cls.UNIX, name=cls.__name__).start()
        cls.port = cls.broker.port

    @classmethod
    def tearDownClass(cls):
        cls.broker.stop(check=True)

    def setUp(self):
        self._cleanup = []

    def tearDown(self):
        for c in reversed(self._cleanup):
            try:
                c.disconnect() if isinstance(c, PahoClient) else c.close()
            except Exception:
                pass
        self.assertTrue(self.broker.alive(), "broker died during the test\n" + self.broker.log())

    def paho(self, **kw):
        c = PahoClient(self.port, **kw)
        self._cleanup.append(c)
        return c

    def raw(self, **kw):
        c = RawClient(self.port, **kw)
        self._cleanup.append(c)
        return c


class NoBrokerTestCase(BrokerTestCase):
    """A BrokerTestCase whose tests start (or fail to start) brokers themselves."""

    @classmethod
    def setUpClass(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        pass

    def tearDown(self):
        pass


def main():
    print("broker under test: %s" % BROKER, flush=True)
    try:
        _paho()
    except ImportError:
        print("SKIP: python3-paho-mqtt not importable; run with /usr/bin/python3")
        sys.exit(77)
    if not os.access(BROKER, os.X_OK):
        print("FAIL: broker %s is not an executable" % BROKER)
        sys.exit(1)
    prog = unittest.main(verbosity=2, exit=False)
    ok = prog.result.wasSuccessful()
    if not ok:
        for b in _ALL_BROKERS:
            print("\n======== log of %s (%s) ========\n%s" % (b.name, b.log_path, b.log()[-20000:]))
    else:
        for b in _ALL_BROKERS:
            shutil.rmtree(b.dir, ignore_errors=True)
    sys.exit(0 if ok else 1)


# ------------------------------------------------------------------- CLI

def _cli(argv):
    if len(argv) < 2 or argv[1] != "run" or "--" not in argv:
        print(__doc__)
        return 2
    sep = argv.index("--")
    opts, cmd = argv[2:sep], argv[sep + 1:]
    conf = []
    unix = False
    i = 0
    while i < len(opts):
        if opts[i] == "--conf-line":
            conf.append(opts[i + 1]); i += 2
        elif opts[i] == "--unix":
            unix = True; i += 1
        else:
            print("unknown option %s" % opts[i]); return 2
    b = Broker("\n".join(conf), unix=unix, name="run").start()
    uri = "tcp://%s:%d" % (HOST, b.port)
    subst = {"{port}": str(b.port), "{uri}": uri, "{host}": HOST,
             "{unix}": b.unix_path or ""}
    for k, v in subst.items():
        cmd = [c.replace(k, v) for c in cmd]
    env = dict(os.environ, MQTT_HOST=HOST, MQTT_PORT=str(b.port), MQTT_URI=uri,
               BROKER=BROKER, MQTT_UNIX=b.unix_path or "")
    print("broker under test: %s (port %d)" % (BROKER, b.port), flush=True)
    try:
        rc = subprocess.call(cmd, env=env)
    except BaseException:
        b.stop(check=False)
        raise
    try:
        b.stop(check=True)
    except BrokerError as e:
        print("FAIL: %s" % e)
        rc = rc or 1
    if rc != 0:
        print("\n======== broker log (%s) ========\n%s" % (b.log_path, b.log()[-20000:]))
    else:
        shutil.rmtree(b.dir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(_cli(sys.argv))
