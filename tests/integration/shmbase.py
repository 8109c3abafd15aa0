"""What the shared-memory integration tests (test_shm*.py) share: the tool
paths, a skip check, /dev/shm bookkeeping, and ShmCase, a TestCase with
one broker per class listening on a Unix socket.

SHIMMY_BIN names the directory of shimmy-pub, shimmy-sub and shm_probe;
without them (or mosquitto_pub/mosquitto_sub) main() exits 77 (skipped).
"""
import os
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BIN = os.environ.get("SHIMMY_BIN", "")
PUB = os.path.join(BIN, "shimmy-pub")
SUB = os.path.join(BIN, "shimmy-sub")
PROBE = os.path.join(BIN, "shm_probe")


def tools_missing():
    return (not all(os.access(p, os.X_OK) for p in (PUB, SUB, PROBE))
            or not shutil.which("mosquitto_sub") or not shutil.which("mosquitto_pub"))


def devshm():
    try:
        return sorted(os.listdir("/dev/shm"))
    except OSError:
        return []


def main():
    if tools_missing():
        print("SKIP: shimmy tools (SHIMMY_BIN) or mosquitto clients missing")
        sys.exit(77)
    harness.main()


class ShmCase(unittest.TestCase):
    """One broker per class (conf() lines, a Unix socket); processes the
    test started (self.procs) are killed afterwards, stopped ones too; the
    broker must be alive after each test and leave /dev/shm as it was."""
    CONF = "sys_interval 1\n"

    @classmethod
    def conf(cls):
        return cls.CONF

    @classmethod
    def setUpClass(cls):
        cls.devshm_before = devshm()
        cls.broker = harness.Broker(cls.conf(), unix=True, name=cls.__name__).start()

    @classmethod
    def tearDownClass(cls):
        if cls.broker.alive():
            cls.broker.stop(check=True)
        # memfds vanish with their last user: nothing may be left behind.
        assert devshm() == cls.devshm_before, (cls.devshm_before, devshm())

    def setUp(self):
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGCONT)
                except OSError:
                    pass
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                if f:
                    try:
                        f.close()
                    except OSError:
                        pass
        self.assertTrue(self.broker.alive(), "broker died\n" + self.broker.log()[-5000:])

    def sock(self):
        return self.broker.unix_path

    def sys(self, topic):
        """A $SYS value, as published at the next interval. The retained
        copy is skipped (-R): it may be up to one interval old, and count
        what an earlier test did."""
        out = subprocess.run(["mosquitto_sub", "-p", str(self.broker.port), "-t", topic,
                              "-R", "-C", "1", "-W", "5"], capture_output=True, timeout=10)
        return int(out.stdout.decode().split()[0])
