"""Integration tests of the shared-memory fast path (docs/shm-protocol.md):
negotiation, shm<->shm without a broker hop, TCP<->shm in both directions,
retained messages and wills, wildcard subscriptions matching publishers
that appear later, crashes (kill -9 of publisher, subscriber, broker),
read-only mappings, a publisher writing garbage into its own log, and
nothing left in /dev/shm.

Needs SHIMMY_BIN (directory of shimmy-pub, shimmy-sub, shm_probe) and
mosquitto_pub/mosquitto_sub; skips (77) without them.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import shmbase  # noqa: E402
from shmbase import BIN, PROBE, PUB, SUB, ShmCase  # noqa: E402


class ShmBase(ShmCase):
    def spawn(self, argv, stdin=None):
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
        self.procs.append(p)
        if stdin is not None:
            p.stdin.write(stdin.encode())
            p.stdin.close()
        return p

    def shm_sub(self, *args, count=1, extra=()):
        argv = [SUB, "--unix", self.sock(), "-V", "5", "--require-shm", "-v",
                "-C", str(count), "-W", "20"] + list(extra)
        for t in args:
            argv += ["-t", t]
        p = self.spawn(argv)
        time.sleep(0.3)  # subscribed (SUBACK) before anyone publishes
        return p

    def shm_pub(self, topic, lines, extra=()):
        r = subprocess.run([PUB, "--unix", self.sock(), "-V", "5", "--require-shm",
                            "-t", topic, "-l"] + list(extra),
                           input="".join(l + "\n" for l in lines).encode(),
                           capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr.decode())

    def finish(self, p, timeout=20):
        out, err = p.communicate(timeout=timeout)
        self.assertEqual(p.returncode, 0, "rc %d: %s" % (p.returncode, err.decode()))
        return out.decode().splitlines()


class TestNegotiation(ShmBase):
    def test_require_shm_over_unix(self):
        p = self.spawn([SUB, "--unix", self.sock(), "-V", "5", "--require-shm", "-t", "n/x", "-E"])
        self.finish(p)
        self.assertEqual(subprocess.run([PROBE, self.sock(), "noshm"]).returncode, 3)

    def test_property_ignored_over_tcp(self):
        # MQTT 5 CONNECT with User Property shimmy=shm/2, over TCP.
        def s(b):
            return struct.pack(">H", len(b)) + b
        up = b"\x26" + s(b"shimmy") + s(b"shm/2")
        var = s(b"MQTT") + b"\x05\x02\x00\x3c" + bytes([len(up)]) + up
        payload = s(b"tcp-shm-probe")
        body = var + payload
        pkt = b"\x10" + bytes([len(body)]) + body
        c = socket.create_connection(("127.0.0.1", self.broker.port), timeout=5)
        c.sendall(pkt)
        ack = c.recv(4096)
        c.close()
        self.assertEqual(ack[0], 0x20)
        self.assertNotIn(b"shm/2", ack)
        # libshimmy over TCP stays on MQTT; --require-shm fails there.
        p = self.spawn([SUB, "-p", str(self.broker.port), "-V", "5", "--require-shm",
                        "-t", "n/x", "-E"])
        p.communicate(timeout=10)
        self.assertNotEqual(p.returncode, 0)


class TestNegotiationOff(ShmBase):
    CONF = "shimmy_shm false\n"

    def test_off(self):
        self.assertEqual(subprocess.run([PROBE, self.sock(), "noshm"]).returncode, 0)
        p = self.spawn([SUB, "--unix", self.sock(), "-V", "5", "--require-shm", "-t", "n/x", "-E"])
        p.communicate(timeout=10)
        self.assertNotEqual(p.returncode, 0)
        # Plain MQTT over the Unix socket still works.
        sub = self.spawn([SUB, "--unix", self.sock(), "-V", "5", "-t", "off/x", "-v", "-C", "1",
                          "-W", "10"])
        time.sleep(0.3)
        subprocess.run([PUB, "--unix", self.sock(), "-V", "5", "-t", "off/x", "-m", "plain"],
                       check=True, timeout=10)
        self.assertEqual(self.finish(sub), ["off/x plain"])


class TestPaths(ShmBase):
    def test_shm_to_shm_without_broker_hop(self):
        n = 2000
        sub = self.shm_sub("hop/#", count=n, extra=["--quiet", "--stats"])
        # One message first so that the log exists, then read the counter.
        self.shm_pub("hop/a", ["warm"])
        time.sleep(1.2)
        before = self.sys("$SYS/broker/publish/messages/received")
        self.shm_pub("hop/a", [str(i) for i in range(n - 1)])
        self.finish(sub)
        time.sleep(1.2)
        after = self.sys("$SYS/broker/publish/messages/received")
        # Only the second publisher's LOG_CREATE control message went
        # through the broker, none of the n - 1 messages.
        self.assertLessEqual(after - before, 2, (before, after))
        self.assertGreaterEqual(self.sys("$SYS/broker/shm/messages/routed"), 0)

    def test_tcp_to_shm_v311_and_v5(self):
        sub = self.shm_sub("t2s/#", count=2)
        for v in ("311", "5"):
            subprocess.run(["mosquitto_pub", "-p", str(self.broker.port), "-V", "mqttv" + v,
                            "-t", "t2s/" + v, "-m", "from" + v], check=True, timeout=10)
        self.assertEqual(sorted(self.finish(sub)), ["t2s/311 from311", "t2s/5 from5"])

    def test_shm_to_tcp(self):
        msub = self.spawn(["mosquitto_sub", "-p", str(self.broker.port), "-t", "s2t/#", "-v",
                           "-C", "3", "-W", "15"])
        time.sleep(0.3)
        self.shm_pub("s2t/x", ["a", "b", "c"])
        self.assertEqual(self.finish(msub), ["s2t/x a", "s2t/x b", "s2t/x c"])

    def test_log_growth_keeps_order(self):
        """A publisher on a 64 KiB log (SHIMMY_SHM_LOG_CLASS=0, 16 KiB
        records) mixes small and 100 KB messages on one topic: its log
        grows (LOG_REPLACE) and every subscriber - over shm and over TCP -
        gets them all in publish order, none of them over MQTT
        ([MQTT-4.6.0-6], docs/shm-protocol.md §2). At QoS 0 shimmy-pub -l
        publishes through a topic-bound shimmy_pub (the pinned log is
        unpinned to grow); at QoS 1 through shimmy_publish() into a
        reliable log."""
        for qos in (0, 1):
            with self.subTest(qos=qos):
                self.growth_case(qos, "grow%d" % qos)

    def growth_case(self, qos, topic):
        lines = []
        for i in range(40):
            if i % 9 == 4:
                lines.append("L%03d" % i + chr(ord("a") + i % 26) * 100000)
            else:
                lines.append("s%03d" % i)
        want = [topic + "/t " + l for l in lines]
        sub = self.shm_sub(topic + "/#", count=len(lines))
        msub = self.spawn(["mosquitto_sub", "-p", str(self.broker.port), "-t", topic + "/#",
                           "-v", "-C", str(len(lines)), "-W", "20"])
        time.sleep(0.5)
        before = self.sys("$SYS/broker/publish/messages/received")
        env = dict(os.environ, SHIMMY_SHM_LOG_CLASS="0")
        r = subprocess.run([PUB, "--unix", self.sock(), "-V", "5", "--require-shm",
                            "-t", topic + "/t", "-q", str(qos), "-l"],
                           input="".join(l + "\n" for l in lines).encode(),
                           capture_output=True, timeout=20, env=env)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        got = self.finish(sub)
        self.assertEqual(len(got), len(want))
        for g, w in zip(got, want):
            self.assertEqual(g[:20], w[:20])
            self.assertEqual(g, w)
        mgot = self.finish(msub)
        self.assertEqual([l[:20] for l in mgot], [w[:20] for w in want])
        self.assertEqual(mgot, want)
        after = self.sys("$SYS/broker/publish/messages/received")
        # Control messages only (LOG_CREATE, the growth request, the old
        # log's LOG_RELEASE): the 100 KB messages took the log too.
        self.assertLessEqual(after - before, 3, (before, after))

    def test_retained_and_will(self):
        subprocess.run(["mosquitto_pub", "-p", str(self.broker.port), "-t", "ret/1",
                        "-m", "kept", "-r"], check=True, timeout=10)
        sub = self.shm_sub("ret/#", count=1)
        self.assertEqual(self.finish(sub), ["ret/1 kept"])
        # A retained publish from a shm client (it goes over MQTT).
        subprocess.run([PUB, "--unix", self.sock(), "-V", "5", "--require-shm", "-t", "ret/2",
                        "-m", "shmkept", "-r"], check=True, timeout=10)
        sub = self.shm_sub("ret/2", count=1)
        self.assertEqual(self.finish(sub), ["ret/2 shmkept"])
        # Will of a shm client killed with -9, to a shm subscriber.
        wsub = self.shm_sub("will/#", count=1)
        dying = self.spawn([SUB, "--unix", self.sock(), "-V", "5", "--require-shm", "-t", "zz",
                            "--will-topic", "will/x", "--will-payload", "gone"])
        time.sleep(0.4)
        dying.kill()
        self.assertEqual(self.finish(wsub), ["will/x gone"])

    def test_wildcard_matches_later_publisher(self):
        sub = self.shm_sub("wc/+/x", "wc2/#", count=2)
        self.shm_pub("wc/new/x", ["first"])
        self.shm_pub("wc2/a/b/c", ["second"])
        self.assertEqual(sorted(self.finish(sub)), ["wc/new/x first", "wc2/a/b/c second"])

    def test_bench_pub_handle_and_batch_receive(self):
        # shimmy-bench's shm mode publishes through a topic-bound
        # shimmy_pub (no client lock) and receives with shimmy_recv_batch;
        # with its window no message may be lost, in load and latency mode,
        # nor with batch loans (shimmy_pub_loan_many) of short records.
        bench = os.path.join(BIN, "shimmy-bench")
        if not os.access(bench, os.X_OK):
            self.skipTest("shimmy-bench not built")
        for mode in (["--mode", "load", "--count", "200000"],
                     ["--mode", "load", "--count", "200000", "--size", "16",
                      "--pub-batch", "16"],
                     ["--mode", "latency", "--count", "2000", "--rate", "20000"]):
            p = self.spawn([bench, "--transport", "shm", "--unix", self.sock(), "--size", "64",
                            "--warmup", "100", "--csv", "-", "--quiet"] + mode)
            rows = self.finish(p, timeout=60)
            f = rows[-1].split(",")
            self.assertEqual(f[12], "0", rows)  # lost
            self.assertGreater(float(f[7]), 0, rows)  # msgs/s

    def test_subscriber_mapping_is_read_only(self):
        sub = self.spawn([PROBE, self.sock(), "rocheck", "ro/#"])
        time.sleep(0.3)
        pub = self.spawn([PUB, "--unix", self.sock(), "-V", "5", "--require-shm", "-t", "ro/1",
                          "-m", "x"])
        pub.communicate(timeout=10)
        self.assertIn("RO-OK", "\n".join(self.finish(sub)))

    def test_bad_control_message_closes(self):
        p = self.spawn([PROBE, self.sock(), "badctl"])
        self.assertIn("CLOSED", "\n".join(self.finish(p)))

    def test_garbage_publisher(self):
        sub = self.spawn([SUB, "--unix", self.sock(), "-V", "5", "--require-shm", "-t", "g/#",
                          "-v", "-W", "20", "-C", "6"])
        msub = self.spawn(["mosquitto_sub", "-p", str(self.broker.port), "-t", "g/#", "-v",
                           "-C", "6", "-W", "20"])
        time.sleep(0.4)
        evil = self.spawn([PROBE, self.sock(), "evil", "g/evil", "1500"])
        out = self.finish(evil, timeout=30)
        self.assertIn("EVIL-DONE", out)
        # Both subscribers and the broker survived, and still get messages.
        self.shm_pub("g/good", ["after"])
        got = self.finish(sub)
        self.assertEqual(got[:5], ["g/evil ok%d" % i for i in range(1, 6)])
        self.assertEqual(got[5], "g/good after")
        mgot = self.finish(msub)
        self.assertEqual(mgot, ["g/evil ok%d" % i for i in range(1, 6)] + ["g/good after"])


class TestAcl(ShmBase):
    """The shm path is covered by acl_file: the write check before a log is
    granted, the read check before a subscriber gets its fd."""

    @classmethod
    def setUpClass(cls):
        import tempfile
        d = tempfile.mkdtemp(prefix="shimmy-acl-")
        cls.acl = os.path.join(d, "acl")
        with open(cls.acl, "w") as f:
            f.write("topic readwrite acl/ok/#\ntopic write acl/wo/#\ntopic read $SYS/#\n")
        os.chmod(d, 0o755)
        os.chmod(cls.acl, 0o644)
        cls.CONF = "sys_interval 1\nacl_file %s\n" % cls.acl
        super().setUpClass()

    def test_acl(self):
        sub = self.spawn([SUB, "--unix", self.sock(), "-V", "5", "--require-shm", "-v",
                          "-C", "1", "-W", "15", "-t", "acl/ok/#", "-t", "acl/wo/#",
                          "-t", "acl/none/#"])
        time.sleep(0.4)
        self.shm_pub("acl/wo/x", ["hidden"])    # log granted, but not readable
        self.shm_pub("acl/none/x", ["denied"])  # no log (0x87), MQTT drops it
        self.shm_pub("acl/ok/x", ["shown"])
        self.assertEqual(self.finish(sub), ["acl/ok/x shown"])


class TestCrashes(ShmBase):
    def test_kill_publisher(self):
        sub = self.shm_sub("kp/#", count=3, extra=["--quiet", "--stats"])
        pub = subprocess.Popen([PUB, "--unix", self.sock(), "-V", "5", "--require-shm",
                                "-t", "kp/1", "-l"], stdin=subprocess.PIPE)
        self.procs.append(pub)
        pub.stdin.write(b"1\n")
        pub.stdin.flush()
        time.sleep(0.3)
        pub.kill()  # -9: its log is closed by the broker; readers drain it
        pub.wait()
        time.sleep(0.3)
        self.shm_pub("kp/2", ["2", "3"])
        self.finish(sub)
        time.sleep(1.2)
        self.assertEqual(self.sys("$SYS/broker/shm/logs"), 0)

    def test_kill_subscriber_does_not_hold_publisher(self):
        dead = self.shm_sub("ks/#", count=1000000, extra=["--quiet"])
        live = self.shm_sub("ks/#", count=5000, extra=["--quiet", "--stats"])
        dead.send_signal(signal.SIGSTOP)  # stuck reader...
        time.sleep(0.1)
        dead.kill()  # ...then dead
        self.shm_pub("ks/1", [str(i) for i in range(5000)])
        self.finish(live)
        time.sleep(1.2)
        self.assertEqual(self.sys("$SYS/broker/shm/attachments"), 0)


class TestBrokerDeath(ShmBase):
    def test_kill_broker_clients_reconnect(self):
        sub = self.spawn([SUB, "--unix", self.sock(), "-V", "5", "--require-shm", "--reconnect",
                          "-t", "kb/#", "-v", "-C", "2", "-W", "30"])
        time.sleep(0.3)
        self.shm_pub("kb/1", ["before"])
        self.broker.proc.kill()
        self.broker.proc.wait()
        time.sleep(0.3)
        # Same socket path, new broker process.
        self.broker.proc = subprocess.Popen([harness.BROKER, "-c", self.broker.conf_path, "-v"],
                                            stdout=self.broker._logf, stderr=subprocess.STDOUT)
        harness.wait_port(self.broker.port, 10.0, self.broker.proc)
        time.sleep(1.5)  # reconnect backoff
        self.shm_pub("kb/1", ["after"])
        self.assertEqual(self.finish(sub, timeout=30), ["kb/1 before", "kb/1 after"])


if __name__ == "__main__":
    shmbase.main()
