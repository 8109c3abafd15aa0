#!/usr/bin/python3
"""Process and configuration: SIGTERM exit status, config errors reported with
file and line, unknown keys, and the effect of a few mosquitto.conf keys."""

import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

import harness as h
from harness import V311, V5


def run_config(text, timeout=5.0):
    """Start the broker on config text; return (exit status or None if it
    kept running, output, config path)."""
    d = tempfile.mkdtemp(prefix="shimmy-it-cfg-")
    os.chmod(d, 0o777)
    path = os.path.join(d, "bad.conf")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    p = subprocess.Popen([h.BROKER, "-c", path, "-v"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out.decode("utf-8", "replace"), path
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=10)
        return None, out.decode("utf-8", "replace"), path


class TestProcess(unittest.TestCase):

    def test_sigterm_exit_0_with_clients(self):
        b = h.Broker(name="sigterm").start()
        try:
            c = h.PahoClient(b.port, client_id=h.uniq("st"), clean=False)
            c.connect()
            c.subscribe("st/#", 1)
            r = h.RawClient(b.port)
            r.connect(h.uniq("st2"), version=V5)
            c.publish("st/x", b"x", 1)
            c.get()
            t0 = time.monotonic()
            rc = b.stop(check=False)
            self.assertEqual(rc, 0, "SIGTERM must exit 0\n" + b.log())
            self.assertLess(time.monotonic() - t0, 5.0, "slow shutdown")
            r.wait_closed(2)
            r.close()
            c.c.loop_stop()
        finally:
            if b.alive():
                b.stop(check=False)

    def test_sigterm_idle(self):
        b = h.Broker(name="sigterm-idle").start()
        self.assertEqual(b.stop(check=False), 0, b.log())

    def _bad_value(self, line):
        text = "listener %d 127.0.0.1\nallow_anonymous true\n%s\n" % (h.free_port(), line)
        rc, out, path = run_config(text)
        self.assertIsNotNone(rc, "%r: broker kept running with an invalid value\n%s" % (line, out))
        self.assertNotEqual(rc, 0, "%r: must exit non-zero\n%s" % (line, out))
        # the message names the file and line 3
        name = re.escape(os.path.basename(path))
        self.assertRegex(out, name + r"(:| line |, line |:line )3\b",
                         "%r: error must name %s and line 3\n%s" % (line, path, out))

    def test_invalid_values(self):
        for line in ("allow_anonymous maybe", "retain_available xyz",
                     "max_keepalive 70000", "max_packet_size 10",
                     "listener 0"):
            with self.subTest(line=line):
                self._bad_value(line)

    @unittest.skipIf(h.is_mosquitto(), "mosquitto 2.0.11 parses numbers with atoi "
                     "and accepts 'abc' as 0")
    def test_invalid_numbers(self):
        for line in ("max_inflight_messages abc", "max_queued_messages -3",
                     "sys_interval 1x", "max_keepalive"):
            with self.subTest(line=line):
                self._bad_value(line)

    @unittest.skipIf(h.is_mosquitto(), "shimmy_* keys are Shimmy's")
    def test_invalid_shimmy_values(self):
        for line in ("shimmy_threads -1", "shimmy_threads 65", "shimmy_threads two",
                     "shimmy_busy_poll_us -5", "shimmy_adaptive_poll_us -1",
                     "shimmy_adaptive_poll_us 20000"):
            with self.subTest(line=line):
                self._bad_value(line)

    @unittest.skipIf(h.is_mosquitto(), "mosquitto has TLS")
    def test_tls_keys_refused(self):
        # Ignoring them would serve in plain text a listener meant to be
        # encrypted: Shimmy refuses to start until TLS is built.
        for line in ("certfile /etc/ssl/certs/x.pem", "keyfile /k.pem",
                     "cafile /ca.pem", "require_certificate true", "psk_hint x"):
            with self.subTest(line=line):
                self._bad_value(line)

    def test_unknown_key(self):
        text = "listener %d 127.0.0.1\nallow_anonymous true\nno_such_key_xyz 42\n" % h.free_port()
        if h.is_mosquitto():
            # mosquitto 2.0.11 refuses unknown keys ("Unknown configuration
            # variable", exit 3); Shimmy deliberately warns and starts.
            rc, out, path = run_config(text)
            self.assertNotEqual(rc, 0)
            self.assertIn("no_such_key_xyz", out)
            return
        b = h.Broker("no_such_key_xyz 42\nshimmy_future_option on\n", name="unknown-key")
        b.start()
        c = h.RawClient(b.port)
        self.assertEqual(c.connect(h.uniq("uk"))[1], 0)
        c.close()
        b.stop(check=True)

    def test_missing_config_file(self):
        p = subprocess.run([h.BROKER, "-c", "/nonexistent/shimmy-it.conf"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        self.assertNotEqual(p.returncode, 0)


class TestConfigEffects(h.BrokerTestCase):
    CONF = """
max_keepalive 10
retain_available false
sys_interval 1
log_type all
persistent_client_expiration 1h
max_inflight_messages 20
max_queued_messages 100
"""

    def test_max_keepalive_v5_server_keep_alive(self):
        r = self.raw()
        sp, rc, props = r.connect(h.uniq("mk"), keepalive=60, version=V5)
        self.assertEqual(rc, 0)
        self.assertEqual(props.get(0x13), 10, "CONNACK Server Keep Alive must be max_keepalive")

    def test_retain_unavailable(self):
        r = self.raw()
        sp, rc, props = r.connect(h.uniq("ra"), version=V5)
        self.assertEqual(props.get(0x25), 0, "CONNACK Retain Available must be 0")
        r.send(h.pk_publish("ra/x", b"x", 0, retain=True, version=V5))
        pk = r.wait_closed(5)
        # [MQTT-3.3.1-11]: DISCONNECT 0x9A Retain not supported
        self.assertEqual([(p.type, h.disconnect_reason(p)) for p in pk], [(h.DISCONNECT, 0x9A)])

    def test_sys_topics(self):
        s = self.paho()
        s.connect()
        s.subscribe("$SYS/#", 0)
        m = s.get(4)
        self.assertTrue(m.topic.startswith("$SYS/"))


if __name__ == "__main__":
    h.main()
