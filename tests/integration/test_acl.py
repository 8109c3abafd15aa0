#!/usr/bin/python3
"""acl_file: Mosquitto-format topic ACLs enforced on subscribe, publish and
delivery, per anonymous client, per user and by %c/%u pattern; SIGHUP reloads."""

import os
import signal
import tempfile
import time

import harness as h
from harness import V311, V5

ACL_DIR = tempfile.mkdtemp(prefix="shimmy-acl-")
ACL_PATH = os.path.join(ACL_DIR, "acl")
ACL_TEXT = """\
# anonymous clients
topic readwrite open/#
topic read ro/#
topic deny open/secret
# a named user
user alice
topic readwrite alice/#
topic read ro/#
# every client: its own subtree
pattern readwrite dev/%c/#
"""
with open(ACL_PATH, "w") as f:
    f.write(ACL_TEXT)
os.chmod(ACL_DIR, 0o755)
os.chmod(ACL_PATH, 0o644)


def deny_suback_or_skip(test):
    """Shimmy refuses a SUBSCRIBE that no read rule covers (0x80 in every version),
    as the Paho suite's test_subscribe_failure expects. Mosquitto 2.0.11
    grants every filter and filters at delivery instead."""
    if h.is_mosquitto():
        test.skipTest("mosquitto 2.0 grants denied filters and filters on delivery")


class TestAcl(h.BrokerTestCase):
    CONF = "acl_file %s\n" % ACL_PATH

    def test_subscribe_denied_v311_gets_0x80(self):
        deny_suback_or_skip(self)
        c = self.paho(version=V311)
        c.connect()
        self.assertEqual(c.subscribe("open/secret", 1), [0x80])
        self.assertEqual(c.subscribe("closed/x", 1), [0x80])
        self.assertEqual(c.subscribe("open/+", 1), [1])

    def test_subscribe_denied_v5_gets_0x80(self):
        deny_suback_or_skip(self)
        c = self.paho(version=V5)
        c.connect()
        self.assertEqual(c.subscribe("closed/#", 1), [0x80])
        self.assertEqual(c.subscribe("ro/#", 1), [1])

    def test_publish_without_write_access_is_dropped(self):
        sub = self.paho()
        sub.connect()
        sub.subscribe("ro/#", 1)
        pub = self.paho()
        pub.connect()
        pub.publish("ro/x", b"denied", 1)  # read-only for anonymous clients
        sub.expect_none(0.5)
        # alice may read ro/#; an anonymous publisher cannot write there
        # either, so check write works where granted.
        pub.publish("open/x", b"ok", 1)
        sub2 = self.paho()
        sub2.connect()
        sub2.subscribe("open/x", 1)
        pub.publish("open/x", b"ok2", 1)
        self.assertEqual(sub2.get().payload, b"ok2")

    def test_read_denied_on_delivery(self):
        # open/+ is allowed, but messages on the denied open/secret are not
        # delivered through it.
        sub = self.paho()
        sub.connect()
        sub.subscribe("open/+", 1)
        pub = self.paho()
        pub.connect()
        pub.publish("open/secret", b"hidden", 1)
        pub.publish("open/public", b"shown", 1)
        got = [m.payload for m in sub.drain(0.5)]
        self.assertEqual(got, [b"shown"])

    def test_user_rules(self):
        deny_suback_or_skip(self)
        alice = self.paho(username="alice", password="pw")
        alice.connect()
        self.assertEqual(alice.subscribe("alice/#", 1), [1])
        # anonymous rules do not apply to a named user
        self.assertEqual(alice.subscribe("open/#", 1), [0x80])
        anon = self.paho()
        anon.connect()
        self.assertEqual(anon.subscribe("alice/#", 1), [0x80])
        alice.publish("alice/note", b"hi", 1)
        self.assertEqual(alice.get().payload, b"hi")

    def test_pattern_client_id(self):
        deny_suback_or_skip(self)
        cid = h.uniq("dev")
        own = self.paho(client_id=cid)
        own.connect()
        self.assertEqual(own.subscribe("dev/%s/#" % cid, 1), [1])
        self.assertEqual(own.subscribe("dev/other/#", 1), [0x80])
        own.publish("dev/%s/t" % cid, b"mine", 1)
        self.assertEqual(own.get().payload, b"mine")


class TestAclReload(h.BrokerTestCase):
    DIR = tempfile.mkdtemp(prefix="shimmy-acl2-")
    PATH = os.path.join(DIR, "acl")
    with open(PATH, "w") as f:
        f.write("topic readwrite a/#\n")
    os.chmod(DIR, 0o755)
    os.chmod(PATH, 0o644)
    CONF = "acl_file %s\n" % PATH

    def test_sighup_reloads_acl(self):
        deny_suback_or_skip(self)
        c = self.paho()
        c.connect()
        self.assertEqual(c.subscribe("b/x", 0), [0x80])
        with open(self.PATH, "w") as f:
            f.write("topic readwrite b/#\n")
        self.broker.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "Reloading config" not in self.broker.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        self.assertEqual(c.subscribe("b/x", 0), [0])
        self.assertEqual(c.subscribe("a/x", 0), [0x80])


class TestAclBadFile(h.NoBrokerTestCase):

    def test_bad_acl_line_is_fatal_with_file_and_line(self):
        d = tempfile.mkdtemp(prefix="shimmy-acl3-")
        bad = os.path.join(d, "acl")
        with open(bad, "w") as f:
            f.write("topic read ok\nbogus line here\n")
        rc, out = h.start_refused("acl_file %s\n" % bad, name="badacl")
        self.assertNotEqual(rc, 0, out)
        if not h.is_mosquitto():
            self.assertIn("%s:2:" % bad, out)


if __name__ == "__main__":
    h.main()
