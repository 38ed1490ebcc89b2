"""Deployment without a container (issue #16): the systemd unit files, the
first-start environment cairnd reads (CAIRN_DEFAULT_DATASTORE,
CAIRN_ROOT_TOKEN_FILE, CAIRN_PRINT_ROOT_TOKEN), `cairnd --health-check`, and
the SIGTERM drain bounded by --shutdown-grace-ms. The image and the
Kubernetes manifest are test_image.py's.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNITS = os.path.join(REPO, "deploy")
API = "/api2/json"
SECRET = "0123456789abcdef-first-start"


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


class SystemdUnits(unittest.TestCase):
    def setUp(self):
        if shutil.which("systemd-analyze") is None:
            raise AssertionError("systemd-analyze is missing: scripts/deps.sh test installs "
                                 "it (package systemd)")
        self.tmp = tempfile.mkdtemp(prefix="cairn-units-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        # verify checks that ExecStart= exists: point it at the build.
        for name in ("cairnd.service", "cairnd.socket"):
            with open(os.path.join(UNITS, name)) as f:
                text = f.read()
            write(os.path.join(self.tmp, name),
                  text.replace("/usr/local/bin/cairnd", ch.binary("cairnd")), 0o644)

    def analyze(self, *args):
        return subprocess.run(["systemd-analyze"] + list(args), cwd=self.tmp,
                              capture_output=True, text=True, timeout=60)

    def test_verify(self):
        p = self.analyze("verify", "./cairnd.service", "./cairnd.socket")
        self.assertEqual(0, p.returncode, p.stderr)
        # An unknown or misspelt key is only a warning: none is allowed.
        self.assertEqual("", p.stderr.strip())

    def test_service_is_notify_hardened(self):
        with open(os.path.join(self.tmp, "cairnd.service")) as f:
            keys = {}
            for line in f:
                if "=" in line and not line.startswith("#"):
                    k, v = line.rstrip("\n").split("=", 1)
                    keys.setdefault(k, v)
        self.assertEqual("notify", keys["Type"])
        self.assertIn("WatchdogSec", keys)
        self.assertEqual("strict", keys["ProtectSystem"])
        self.assertEqual("", keys["CapabilityBoundingSet"])
        for k in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
            self.assertEqual("yes", keys[k], k)
        self.assertIn("/var/lib/cairn", keys["ReadWritePaths"])
        # systemd's own score (0 best, 10 worst): keep it at "OK" or better.
        p = self.analyze("security", "--offline=yes", "--threshold=20", "./cairnd.service")
        self.assertEqual(0, p.returncode, p.stdout[-2000:] + p.stderr)


class FirstStart(unittest.TestCase):
    def server(self, env, **kw):
        srv = ch.Cairn(env=env, **kw)
        self.addCleanup(srv.close)
        return srv

    def secret_file(self, secret, prefix=""):
        d = tempfile.mkdtemp(prefix="cairn-secret-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "root-token")
        write(path, prefix + secret + "\n", 0o400)
        return path

    def test_default_datastore_created_once(self):
        srv = ch.Cairn(start=False)
        self.addCleanup(srv.close)
        path = os.path.join(srv.data_dir, "volume", "store")  # parent missing too
        srv.extra_env["CAIRN_DEFAULT_DATASTORE"] = "store:" + path
        srv.start()
        self.assertTrue(os.path.isdir(os.path.join(path, ".chunks")))
        status, _, data = srv.get(API + "/admin/datastore")
        self.assertEqual(200, status, data)
        self.assertEqual(["store"], [d["store"] for d in data["data"]])
        self.assertIn("datastore 'store' created", srv.log_text())
        # An administrator's change to it survives the next start.
        srv.admin("datastore", "update", "store", "--comment", "kept", check=True)
        mark = srv.log_mark()
        srv.restart()
        self.assertNotIn("CAIRN_DEFAULT_DATASTORE", srv.log_text(mark))
        with open(os.path.join(srv.config_dir, "datastore.cfg")) as f:
            self.assertIn("comment kept", f.read())

    def test_default_datastore_adopts_existing_chunk_store(self):
        # The datastore volume kept, the config volume lost: adopt, not fail.
        srv = ch.Cairn(start=False)
        self.addCleanup(srv.close)
        path = srv.datastore_path("kept")
        srv.admin("datastore", "create", "kept", path, check=True)
        os.unlink(os.path.join(srv.config_dir, "datastore.cfg"))
        srv.extra_env["CAIRN_DEFAULT_DATASTORE"] = "kept:" + path
        srv.start()
        self.assertIn("datastore 'kept' adopted", srv.log_text())
        status, _, data = srv.get(API + "/admin/datastore/kept/status")
        self.assertEqual(200, status, data)

    def test_bad_default_datastore_fails_the_start(self):
        for spec in ("nopath", "name:relative/path", ":/abs"):
            srv = ch.Cairn(start=False, env={"CAIRN_DEFAULT_DATASTORE": spec})
            self.addCleanup(srv.close)
            p = subprocess.run(srv.command(), env=srv.environment(), capture_output=True,
                               text=True, timeout=30, stdin=subprocess.DEVNULL)
            self.assertNotEqual(0, p.returncode, spec)
            self.assertIn("CAIRN_DEFAULT_DATASTORE", p.stderr, spec)

    def test_root_token_from_file(self):
        path = self.secret_file(SECRET)
        srv = self.server({"CAIRN_ROOT_TOKEN_FILE": path})
        self.assertEqual("root@pam!root:" + SECRET, srv.token)  # root.token
        st = os.stat(os.path.join(srv.config_dir, "root.token"))
        self.assertEqual(0o600, st.st_mode & 0o777)
        status, _, data = srv.get(API + "/access/permissions", token="root@pam!root:" + SECRET)
        self.assertEqual(200, status, data)
        self.assertNotIn(SECRET, srv.log_text())  # never logged
        self.assertIn("secret taken from " + path, srv.log_text())
        # Same secret, next start: nothing to do.
        mark = srv.log_mark()
        srv.restart()
        self.assertNotIn("secret taken from", srv.log_text(mark))
        # A new secret in the file rotates the token; the old one stops working.
        new = "rotated-" + SECRET
        write(path, "root@pam!root:" + new + "\n", 0o400)
        srv.restart()
        self.assertEqual(401, srv.get(API + "/access/permissions",
                                      token="root@pam!root:" + SECRET).status)
        self.assertEqual(200, srv.get(API + "/access/permissions",
                                      token="root@pam!root:" + new).status)

    def test_root_token_file_as_kubernetes_mounts_it(self):
        # A Secret volume: the key is a link to ..data/KEY, ..data a link to
        # the current timestamped directory (which a rotation swaps).
        d = tempfile.mkdtemp(prefix="cairn-secretvol-")
        self.addCleanup(shutil.rmtree, d, True)
        os.mkdir(os.path.join(d, "..2026_12_07_11_00_00.1"))
        write(os.path.join(d, "..2026_12_07_11_00_00.1", "root-token"), SECRET, 0o440)
        os.symlink("..2026_12_07_11_00_00.1", os.path.join(d, "..data"))
        os.symlink("..data/root-token", os.path.join(d, "root-token"))
        srv = self.server({"CAIRN_ROOT_TOKEN_FILE": os.path.join(d, "root-token")})
        self.assertEqual("root@pam!root:" + SECRET, srv.token)

    def test_root_token_file_problems_fail_the_start(self):
        cases = {"missing": None, "short": "tooshort", "colon": "has:colon-in-the-secret"}
        for what, secret in cases.items():
            path = (self.secret_file(secret) if secret is not None
                    else "/nonexistent/cairn/root-token")
            srv = ch.Cairn(start=False, env={"CAIRN_ROOT_TOKEN_FILE": path})
            self.addCleanup(srv.close)
            p = subprocess.run(srv.command(), env=srv.environment(), capture_output=True,
                               text=True, timeout=30, stdin=subprocess.DEVNULL)
            self.assertNotEqual(0, p.returncode, what)
            self.assertIn("CAIRN_ROOT_TOKEN_FILE", p.stderr, what)
            if secret:
                self.assertNotIn(secret, p.stdout + p.stderr, what)

    def test_root_token_printed_only_when_asked(self):
        srv = self.server({})
        secret = srv.token.split(":", 1)[1]
        self.assertNotIn(secret, srv.log_text())
        srv.extra_env["CAIRN_PRINT_ROOT_TOKEN"] = "1"
        mark = srv.log_mark()
        srv.restart()
        self.assertIn("root API token: " + srv.token, srv.log_text(mark))


class S3FromEnvironment(unittest.TestCase):
    """CAIRN_S3_ENDPOINT and its key files (deploy/kubernetes/cairn-s3.yaml).
    No S3 server: the endpoint is unreachable on purpose, which the default
    datastore's creation then reports."""

    def setUp(self):
        self.keys = tempfile.mkdtemp(prefix="cairn-s3keys-")
        self.addCleanup(shutil.rmtree, self.keys, True)
        self.ak = os.path.join(self.keys, "access")
        self.sk = os.path.join(self.keys, "secret")
        write(self.ak, "AKIDFROMSECRET01\n")
        write(self.sk, "s3-secret-from-the-secret\n")
        self.env = {"CAIRN_S3_ENDPOINT": "objects:endpoint=127.0.0.1,port=9,use-tls=false,"
                    "path-style=true,provider-quirks=skip-if-none-match-header,"
                    "delete-objects-via-delete-object",
                    "CAIRN_S3_ACCESS_KEY_FILE": self.ak, "CAIRN_S3_SECRET_KEY_FILE": self.sk}

    def read(self, srv, name):
        with open(os.path.join(srv.config_dir, name)) as f:
            return f.read()

    def test_endpoint_created_then_updated(self):
        srv = ch.Cairn(env=self.env)
        self.addCleanup(srv.close)
        self.assertIn("S3 endpoint 'objects' created", srv.log_text())
        cfg = self.read(srv, "s3.cfg")
        self.assertIn("access-key AKIDFROMSECRET01", cfg)
        self.assertIn("provider-quirks skip-if-none-match-header,delete-objects-via-delete-object",
                      cfg)
        self.assertNotIn("s3-secret-from-the-secret", cfg)
        self.assertIn("secret-key s3-secret-from-the-secret", self.read(srv, "s3-secrets.cfg"))
        status, _, data = srv.get(API + "/config/s3/objects")
        self.assertEqual(200, status, data)
        self.assertEqual("127.0.0.1", data["data"]["endpoint"])
        # Rotated keys apply at the next start.
        write(self.sk, "rotated-s3-secret\n")
        mark = srv.log_mark()
        srv.restart()
        self.assertIn("S3 endpoint 'objects' updated", srv.log_text(mark))
        self.assertIn("secret-key rotated-s3-secret", self.read(srv, "s3-secrets.cfg"))
        for secret in ("s3-secret-from-the-secret", "rotated-s3-secret"):
            self.assertNotIn(secret, srv.log_text())

    def test_default_datastore_on_the_endpoint(self):
        srv = ch.Cairn(start=False, env=dict(self.env, **{
            "CAIRN_DEFAULT_DATASTORE_BACKEND": "type=s3,client=objects,bucket=backups"}))
        self.addCleanup(srv.close)
        srv.extra_env["CAIRN_DEFAULT_DATASTORE"] = "s3store:" + srv.datastore_path("s3store")
        p = subprocess.run(srv.command(), env=srv.environment(), capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.assertNotEqual(0, p.returncode)
        self.assertIn("bucket 'backups' on S3 endpoint 'objects'", p.stderr)
        self.assertNotIn("s3-secret-from-the-secret", p.stdout + p.stderr)

    def test_bad_settings_fail_the_start(self):
        cases = [
            {"CAIRN_S3_ENDPOINT": "objects:endpoint=127.0.0.1", "CAIRN_S3_ACCESS_KEY_FILE": self.ak},
            dict(self.env, CAIRN_S3_ENDPOINT="objects:endpoint=127.0.0.1,secret-key=inline"),
            dict(self.env, CAIRN_S3_ENDPOINT="objects:endpoint=127.0.0.1,no-such-key=1"),
            dict(self.env, CAIRN_S3_SECRET_KEY_FILE="/nonexistent/secret"),
        ]
        for env in cases:
            srv = ch.Cairn(start=False, env=env)
            self.addCleanup(srv.close)
            p = subprocess.run(srv.command(), env=srv.environment(), capture_output=True,
                               text=True, timeout=30, stdin=subprocess.DEVNULL)
            self.assertNotEqual(0, p.returncode, env)
            self.assertIn("CAIRN_S3_ENDPOINT", p.stderr, env)
            self.assertNotIn("inline", p.stderr)


class LogStream(unittest.TestCase):
    def run_failing_start(self, env):
        # A start that fails at once (a bad first-start setting) still logs.
        srv = ch.Cairn(start=False, env=dict(env, CAIRN_DEFAULT_DATASTORE="bad"))
        self.addCleanup(srv.close)
        return subprocess.run(srv.command(), env=srv.environment(), capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)

    def test_stderr_by_default_stdout_when_asked(self):
        p = self.run_failing_start({})
        self.assertIn("error CAIRN_DEFAULT_DATASTORE", p.stderr)
        self.assertEqual("", p.stdout)
        p = self.run_failing_start({"CAIRN_LOG_STDOUT": "1"})
        self.assertIn("error CAIRN_DEFAULT_DATASTORE", p.stdout)
        self.assertNotIn("CAIRN_DEFAULT_DATASTORE", p.stderr)


class HealthAndShutdown(unittest.TestCase):
    def health(self, srv, tls=True):
        cmd = [ch.binary("cairnd"), "--health-check", "--config-dir", srv.config_dir,
               "--listen", "0.0.0.0:%d" % srv.port]  # a wildcard means loopback
        if not tls:
            cmd.append("--no-tls")
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)

    def test_health_check(self):
        for tls in (True, False):
            with ch.Cairn(tls=tls) as srv:
                p = self.health(srv, tls)
                self.assertEqual(0, p.returncode, p.stderr)
                srv.stop()
                p = self.health(srv, tls)
                self.assertEqual(1, p.returncode)
                self.assertIn("refused", p.stderr)

    def test_health_check_pins_the_certificate(self):
        with ch.Cairn() as srv:
            other = ch.Cairn(start=True)  # another server, another certificate
            try:
                p = subprocess.run([ch.binary("cairnd"), "--health-check", "--config-dir",
                                    other.config_dir, "--listen", "127.0.0.1:%d" % srv.port],
                                   capture_output=True, text=True, timeout=30)
            finally:
                other.close()
            self.assertEqual(1, p.returncode, p.stderr)

    def test_sigterm_grace_is_configurable(self):
        # A request that never completes holds the drain; the grace ends it.
        srv = ch.Cairn(tls=False, args=["--shutdown-grace-ms", "300"])
        self.addCleanup(srv.close)
        s = srv.raw_socket(timeout=10)
        self.addCleanup(s.close)
        s.sendall(("POST %s/config/datastore HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                   "Content-Type: application/json\r\nContent-Length: 100\r\n"
                   "Expect: 100-continue\r\n\r\n" % (API, srv.auth_header())).encode())
        # The interim answer says the server has the request's head: in flight.
        got = b""
        while b"\r\n\r\n" not in got:
            piece = s.recv(4096)
            self.assertTrue(piece, "connection closed before 100 Continue")
            got += piece
        self.assertTrue(got.startswith(b"HTTP/1.1 100"), got)
        s.sendall(b"{")
        mark = srv.log_mark()
        srv.proc.send_signal(signal.SIGTERM)
        # Well before the default 10 s grace, and cleanly.
        code = srv.proc.wait(8)
        self.assertEqual(0, code, srv.log_text(mark))
        self.assertIn("shutdown grace period over, closing 1 connection", srv.log_text(mark))


if __name__ == "__main__":
    unittest.main()
