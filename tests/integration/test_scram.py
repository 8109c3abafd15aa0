#!/usr/bin/python3
"""MQTT 5 enhanced authentication with SCRAM-SHA-256 (RFC 5802/7677) end to
end: credentials made by `shimmyd --scram-line`, loaded from auth_scram_file,
and an AUTH exchange driven from a raw socket with an independent client
implementation (hashlib/hmac)."""

import base64
import hashlib
import hmac
import os
import subprocess
import tempfile

import harness as h
from harness import V5, AUTH, CONNACK

PROP_AUTH_METHOD = 0x15
PROP_AUTH_DATA = 0x16
METHOD = b"SCRAM-SHA-256"

DIR = tempfile.mkdtemp(prefix="shimmy-scram-")
CRED = os.path.join(DIR, "scram")
ACL = os.path.join(DIR, "acl")


def make_creds():
    if h.is_mosquitto():
        return
    line = subprocess.run([h.BROKER, "--scram-line", "alice", "s3cret"],
                          capture_output=True, check=True).stdout.decode().strip()
    with open(CRED, "w") as f:
        f.write(line + "\n")
    with open(ACL, "w") as f:
        f.write("user alice\ntopic readwrite alice/#\n")
    os.chmod(DIR, 0o755)


make_creds()


def pk_auth(reason, data):
    return h.pk(0xF0, bytes([reason]) + h.props([(PROP_AUTH_METHOD, METHOD),
                                                  (PROP_AUTH_DATA, data)]))


def parse_auth(p):
    assert p.type == AUTH, "expected AUTH, got %r" % p
    return p.body[0], dict(h.parse_props(p.body, 1)[0])


class Scram:
    """The client side of SCRAM-SHA-256, written from RFC 5802."""

    def __init__(self, user, password):
        self.user, self.password = user, password
        self.cnonce = base64.b64encode(os.urandom(18)).decode()
        self.bare = "n=%s,r=%s" % (user, self.cnonce)

    def first(self):
        return ("n,," + self.bare).encode()

    def final(self, server_first):
        sf = server_first.decode()
        attrs = dict(a.split("=", 1) for a in sf.split(","))
        assert attrs["r"].startswith(self.cnonce)
        salt = base64.b64decode(attrs["s"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, int(attrs["i"]))
        ckey = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored = hashlib.sha256(ckey).digest()
        without_proof = "c=biws,r=%s" % attrs["r"]
        auth_msg = ",".join([self.bare, sf, without_proof]).encode()
        sig = hmac.new(stored, auth_msg, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(ckey, sig))
        skey = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.expect_server_sig = hmac.new(skey, auth_msg, hashlib.sha256).digest()
        return ("%s,p=%s" % (without_proof, base64.b64encode(proof).decode())).encode()

    def check_server_final(self, data):
        assert data.decode() == "v=" + base64.b64encode(self.expect_server_sig).decode(), data


class TestScram(h.BrokerTestCase):
    CONF = "auth_scram_file %s\nacl_file %s\n" % (CRED, ACL)

    def setUp(self):
        super().setUp()
        if h.is_mosquitto():
            self.skipTest("mosquitto 2.0 has no built-in SCRAM method")

    def _start(self, password):
        r = self.raw()
        r.version = V5
        s = Scram("alice", password)
        r.send(h.pk_connect(h.uniq("sc"), version=V5,
                            properties=[(PROP_AUTH_METHOD, METHOD),
                                        (PROP_AUTH_DATA, s.first())]))
        return r, s

    def test_scram_success_and_identity_used_for_acl(self):
        r, s = self._start("s3cret")
        reason, pr = parse_auth(r.recv_type(AUTH))
        self.assertEqual(reason, 0x18)  # Continue authentication
        self.assertEqual(pr[PROP_AUTH_METHOD], METHOD)
        r.send(pk_auth(0x18, s.final(pr[PROP_AUTH_DATA])))
        sp, rc, cpr = h.parse_connack(r.recv_type(CONNACK), V5)
        self.assertEqual(rc, 0)
        s.check_server_final(cpr[PROP_AUTH_DATA])
        # The proven identity is alice, so alice's ACL applies.
        p = r.subscribe([("alice/x", 1)], pid=5)
        self.assertEqual(p.body[-1], 1)
        p = r.subscribe([("bob/x", 1)], pid=6)
        self.assertEqual(p.body[-1], 0x80)

    def test_wrong_password_refused(self):
        r, s = self._start("wrong")
        reason, pr = parse_auth(r.recv_type(AUTH))
        r.send(pk_auth(0x18, s.final(pr[PROP_AUTH_DATA])))
        sp, rc, _ = h.parse_connack(r.recv_type(CONNACK), V5)
        self.assertEqual(rc, 0x87)  # Not authorized
        r.wait_closed()

    def test_unknown_method_gets_0x8c(self):
        r = self.raw()
        r.send(h.pk_connect(h.uniq("sc"), version=V5,
                            properties=[(PROP_AUTH_METHOD, b"KERBEROS-9")]))
        sp, rc, _ = h.parse_connack(r.recv_type(CONNACK), V5)
        self.assertEqual(rc, 0x8C)
        r.wait_closed()


class TestScramBadFile(h.NoBrokerTestCase):

    def test_malformed_credentials_file_is_fatal(self):
        if h.is_mosquitto():
            self.skipTest("mosquitto has no auth_scram_file")
        bad = os.path.join(DIR, "bad")
        with open(bad, "w") as f:
            f.write("alice:not-a-valid-line\n")
        rc, out = h.start_refused("auth_scram_file %s\n" % bad, name="badscram")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("%s:1:" % bad, out)


if __name__ == "__main__":
    h.main()
