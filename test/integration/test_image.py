"""The OCI image and the Kubernetes manifest, run by podman (issue #16).

Builds the image with scripts/image.sh (the local Debian base and every layer
are cached, so only the first run on a machine takes minutes), then twice:
start Cairn with a datastore volume (`podman run`, then `podman kube play`
of deploy/kubernetes/cairn.yaml), wait for its health check, back up and
restore with the host build's `cairn` client, stop it with SIGTERM (exit 0
after the drain), start a new container on the same volumes and find the
snapshot there and restorable. The same again for the S3 example,
deploy/kubernetes/cairn-s3.yaml, against a Ceph RGW (test/s3/rgw-up.sh):
its keys come from the Secret and its chunks land in the bucket.

podman needs runc and explicit ulimits on this kind of machine
(docs/deployment.md): a containers.conf in the test's temp dir says so,
through CONTAINERS_CONF, for every podman call. No podman is a failure, not
a skip: scripts/deps.sh test installs it.
"""

import base64
import filecmp
import json
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = os.path.join(REPO, "deploy", "kubernetes", "cairn.yaml")
IMAGE = "localhost/cairn:latest"  # what the manifest names
STORE = "store"                    # the image's CAIRN_DEFAULT_DATASTORE
BUILD_TIMEOUT = 1800
HEALTH_TIMEOUT = 60.0
STOP_TIMEOUT = 30

_TMP = None
_ENV = None


def setUpModule():
    global _TMP, _ENV
    ch.require_programs("cairn")
    if shutil.which("podman") is None:
        raise AssertionError("podman is missing: scripts/deps.sh test installs it")
    _TMP = tempfile.mkdtemp(prefix="cairn-image-")
    conf = os.path.join(_TMP, "containers.conf")
    nofile = min(_hard_limit("-Hn"), 4096)
    with open(conf, "w") as f:
        f.write('[containers]\ndefault_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]\n'
                '[engine]\nruntime = "runc"\n' % (nofile, nofile, nofile, nofile))
    _ENV = dict(os.environ, CONTAINERS_CONF=conf)
    p = subprocess.run(["sh", os.path.join(REPO, "scripts", "image.sh"), IMAGE],
                       env=_ENV, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise AssertionError("image build failed:\n%s\n%s" % (p.stdout[-4000:],
                                                              p.stderr[-4000:]))


def tearDownModule():
    if _TMP:
        shutil.rmtree(_TMP, ignore_errors=True)


def _hard_limit(flag):
    out = subprocess.run(["sh", "-c", "ulimit %s" % flag], capture_output=True,
                         text=True).stdout.strip()
    return 1 << 20 if out == "unlimited" else int(out)


def podman(*args, check=True, timeout=120, input=None):
    p = subprocess.run(["podman"] + [str(a) for a in args], env=_ENV, capture_output=True,
                       text=True, timeout=timeout, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError("podman %s exited %d:\n%s%s" % (" ".join(map(str, args)),
                                                            p.returncode, p.stdout, p.stderr))
    return p


def free_ports(n):
    """The first of n consecutive free loopback ports."""
    for _ in range(50):
        base = ch.free_port()
        if base + n > 65535:
            continue
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            pass
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no %d consecutive free ports" % n)


def make_tree(root, seed):
    rnd = random.Random(seed)
    for i in range(12):
        d = os.path.join(root, "d%d" % (i % 3))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%02d" % i), "wb") as f:
            f.write(rnd.randbytes(rnd.randrange(1, 400 << 10)))
    # Repeated content: deduplicated chunks as well.
    with open(os.path.join(root, "twice"), "wb") as f:
        block = rnd.randbytes(1 << 20)
        f.write(block + block)


def same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    for name in cmp.common_files:
        if not filecmp.cmp(os.path.join(a, name), os.path.join(b, name), shallow=False):
            return False
    return all(same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


class ImageCase(unittest.TestCase):
    """What both tests do against a server in a container."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cairn-image-case-", dir=_TMP)
        self.prefix = "cairn-it%d-%s" % (os.getpid(), self._testMethodName[5:9])
        self.secret = "it-" + base64.b32encode(os.urandom(20)).decode().lower()
        self.client_secret = self.secret  # what the client authenticates with
        self.src = os.path.join(self.tmp, "src")
        make_tree(self.src, 16)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def wait_healthy(self, container):
        """Runs the image's health check (cairnd --health-check, as podman's
        timer would) until it passes."""
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while True:
            p = podman("healthcheck", "run", container, check=False, timeout=60)
            if p.returncode == 0:
                return
            state = podman("inspect", "--format", "{{.State.Status}}", container,
                           check=False).stdout.strip()
            if state not in ("running", "created", "") or time.monotonic() > deadline:
                self.fail("%s did not become healthy (%s, %s):\n%s" % (
                    container, state, p.stdout + p.stderr, self.logs(container)))
            time.sleep(0.5)

    def logs(self, container):
        p = podman("logs", container, check=False)
        return p.stdout + p.stderr

    def fingerprint(self, container):
        m = None
        for line in self.logs(container).splitlines():
            if "fingerprint" in line:
                m = ch._FPR_RE.search(line) or m
        self.assertIsNotNone(m, "no fingerprint logged:\n" + self.logs(container))
        return m.group(1)

    def cairn(self, host, port, fpr, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        env.update({"CAIRN_REPOSITORY": "root@pam!root@%s:%d:%s" % (host, port, STORE),
                    "CAIRN_SECRET": self.client_secret, "CAIRN_FINGERPRINT": fpr})
        p = subprocess.run([ch.binary("cairn")] + list(args), env=env, capture_output=True,
                           text=True, timeout=300, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            self.fail("cairn %s exited %d:\n%s" % (" ".join(args), p.returncode, p.stderr))
        return p.stdout

    def backup_and_restore(self, host, port, fpr):
        out = self.cairn(host, port, fpr, "backup", "root.didx:" + self.src,
                         "--backup-id", "image", "--output-format", "json")
        snapshot = json.loads(out.strip().splitlines()[-1])["snapshot"]
        self.check_restore(host, port, fpr, snapshot, "first")
        return snapshot

    def check_restore(self, host, port, fpr, snapshot, tag):
        listed = self.cairn(host, port, fpr, "snapshots")
        self.assertIn(snapshot, listed)
        dst = os.path.join(self.tmp, "restore-" + tag)
        self.cairn(host, port, fpr, "restore", snapshot, "root", dst)
        self.assertTrue(same_tree(self.src, dst), "restored tree differs (%s)" % tag)

    def assert_stopped_cleanly(self, container):
        code = podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
        logs = self.logs(container)
        self.assertEqual("0", code, logs)
        self.assertIn("SIGTERM: no longer accepting connections", logs)
        self.assertIn("all connections closed; exiting", logs)

    def assert_secret_not_logged(self, container):
        self.assertNotIn(self.client_secret, self.logs(container))


class PodmanRun(ImageCase):
    def setUp(self):
        super().setUp()
        self.names = {"config": self.prefix + "-config", "data": self.prefix + "-data",
                      "secret": self.prefix + "-token"}
        self.containers = []
        self.addCleanup(self.cleanup)
        podman("secret", "create", self.names["secret"], "-", input=self.secret)
        for v in ("config", "data"):
            podman("volume", "create", self.names[v])

    def cleanup(self):
        for c in self.containers:
            podman("rm", "-f", "-t", "0", c, check=False)
        podman("secret", "rm", self.names["secret"], check=False)
        podman("volume", "rm", "-f", self.names["config"], self.names["data"], check=False)

    def run_container(self, tag):
        name = "%s-%s" % (self.prefix, tag)
        port = ch.free_port()
        podman("run", "-d", "--name", name, "--health-interval", "disable",
               "-p", "127.0.0.1:%d:8007" % port,
               "-v", self.names["config"] + ":/etc/cairn",
               "-v", self.names["data"] + ":/var/lib/cairn",
               "--secret", "%s,target=/run/secrets/root-token,uid=8007,mode=0400"
               % self.names["secret"],
               "-e", "CAIRN_ROOT_TOKEN_FILE=/run/secrets/root-token",
               IMAGE, "--shutdown-grace-ms", "20000")
        self.containers.append(name)
        self.wait_healthy(name)
        return name, port, self.fingerprint(name)

    def test_run_backup_sigterm_restart(self):
        name, port, fpr = self.run_container("a")
        self.assertEqual("8007:8007", podman("inspect", "--format", "{{.Config.User}}",
                                             name).stdout.strip())
        # The log is on stdout (CAIRN_LOG_STDOUT in the image).
        self.assertIn("listening on 0.0.0.0:8007 (https)", podman("logs", name).stdout)
        snapshot = self.backup_and_restore("127.0.0.1", port, fpr)
        self.assert_secret_not_logged(name)
        self.stop_during_request(name, port, fpr)
        self.assert_stopped_cleanly(name)
        # A new container on the same volumes: same certificate, same data.
        podman("rm", name)
        name2, port2, fpr2 = self.run_container("b")
        self.assertEqual(fpr, fpr2)
        self.assertNotIn("created at", self.logs(name2))  # the datastore was kept
        self.check_restore("127.0.0.1", port2, fpr2, snapshot, "after-restart")
        # What the request in flight during the stop did was kept.
        self.assertIn("drained", self.cairn_admin(name2, "datastore", "list"))
        podman("stop", "-t", STOP_TIMEOUT, name2, timeout=STOP_TIMEOUT + 30)
        self.assert_stopped_cleanly(name2)

    def cairn_admin(self, container, *args):
        return podman("exec", container, "/usr/bin/cairn-admin", *args).stdout

    def stop_during_request(self, container, port, fpr):
        """`podman stop` (SIGTERM to cairnd, PID 1 in the container) while a
        request is in flight: the request still gets its answer, then the
        server exits."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # pinned below instead
        sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))
        try:
            self.assertEqual(ch.normalize_fingerprint(fpr),
                             ch.cert_fingerprint(sock.getpeercert(binary_form=True)))
            body = json.dumps({"name": "drained", "path": "/var/lib/cairn/drained"}).encode()
            sock.sendall(("POST /api2/json/config/datastore HTTP/1.1\r\nHost: cairn\r\n"
                          "Authorization: PBSAPIToken=root@pam!root:%s\r\n"
                          "Content-Type: application/json\r\nContent-Length: %d\r\n"
                          "Expect: 100-continue\r\n\r\n"
                          % (self.client_secret, len(body))).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                piece = sock.recv(4096)
                self.assertTrue(piece, "closed before 100 Continue")
                head += piece
            self.assertTrue(head.startswith(b"HTTP/1.1 100"), head)
            stopper = subprocess.Popen(["podman", "stop", "-t", str(STOP_TIMEOUT), container],
                                       env=_ENV, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + STOP_TIMEOUT
                while "SIGTERM: no longer accepting" not in self.logs(container):
                    self.assertLess(time.monotonic(), deadline, "no SIGTERM logged")
                    time.sleep(0.2)
                status, _, answer, _, _ = ch.exchange_one(sock, body, 30)
                self.assertEqual(200, status, answer)
            finally:
                self.assertEqual(0, stopper.wait(STOP_TIMEOUT + 30))
        finally:
            sock.close()

    def test_image_size_and_config(self):
        size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
        print("\nimage %s: %.1f MB" % (IMAGE, size / 1e6), file=sys.stderr)
        self.assertLessEqual(size, 120 * 1000 * 1000)
        config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}",
                                   IMAGE).stdout)
        # The docker format keeps HEALTHCHECK (the OCI format drops it).
        health = json.loads(podman("image", "inspect", "--format",
                                   "{{json .Config.Healthcheck}}", IMAGE).stdout)
        self.assertEqual(["CMD", "/usr/bin/cairnd", "--health-check"], health["Test"])
        self.assertEqual(["/usr/bin/cairnd"], config["Entrypoint"])
        self.assertEqual(["--shutdown-grace-ms", "8000"], config["Cmd"])
        self.assertEqual({"/etc/cairn", "/var/lib/cairn"}, set(config["Volumes"]))


class KubeCase(ImageCase):
    """A manifest of deploy/kubernetes/ under `podman kube play`."""
    manifest = MANIFEST

    def edit(self, text):
        """The manifest as this test plays it."""
        return text

    def setUp(self):
        super().setUp()
        self.deployment = self.prefix
        with open(self.manifest) as f:
            text = f.read()
        # Names of this test only; the secret is this test's.
        text = re.sub(r"\bcairn-(data|config|secrets|run|tmp)\b",
                      lambda m: "%s-%s" % (self.prefix, m.group(1)), text)
        text = re.sub(r"(?m)^(\s*(?:name|app): )cairn$", r"\g<1>" + self.deployment, text)
        text = re.sub(r"(?m)^(  root-token: ).*$",
                      lambda m: m.group(1) + base64.b64encode(self.secret.encode()).decode(),
                      text)
        text = self.edit(text)
        self.assertIn(self.prefix + "-data", text)
        self.yaml = os.path.join(self.tmp, "cairn.yaml")
        with open(self.yaml, "w") as f:
            f.write(text)
        # A second start plays the workload only: the claims and the Secret
        # exist by then, and podman 4.3 refuses to create them twice.
        docs = text.split("\n---\n")
        self.workload = os.path.join(self.tmp, "workload.yaml")
        with open(self.workload, "w") as f:
            f.write("\n---\n".join(d for d in docs
                                   if re.search(r"(?m)^kind: (Deployment|Service)$", d)))
        self.pod = self.deployment + "-pod-0"
        self.container = self.pod + "-cairnd"
        self.addCleanup(self.cleanup)

    def cleanup(self):
        podman("kube", "down", self.workload, check=False, timeout=60)
        podman("pod", "rm", "-f", self.pod, check=False)
        podman("secret", "rm", self.prefix + "-secrets", check=False)
        podman("volume", "rm", "-f", *["%s-%s" % (self.prefix, v) for v in
                                       ("data", "config", "secrets", "run", "tmp")],
               check=False)

    def pod_address(self):
        infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}",
                       self.pod).stdout.strip()
        ip = podman("inspect", "--format",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                    infra).stdout.strip()
        self.assertRegex(ip, r"^\d+\.\d+\.\d+\.\d+$", "pod has no address")
        return ip

    def play(self, path):
        podman("kube", "play", path, timeout=120)
        self.wait_healthy(self.container)
        return self.pod_address(), self.fingerprint(self.container)

    def stop_with_sigterm(self):
        podman("pod", "stop", "-t", STOP_TIMEOUT, self.pod, timeout=STOP_TIMEOUT + 30)
        self.assert_stopped_cleanly(self.container)
        podman("kube", "down", self.workload, timeout=60)

    def mounted_secret(self, key):
        """A Secret key's file as the container sees it. Kubernetes decodes
        `data`; podman 4.3's kube play mounts it still base64-encoded
        (docs/deployment.md), so either form may be there."""
        p = podman("exec", self.container, "sh", "-c",
                   'read -r s < /run/secrets/cairn/%s; echo "$s"' % key, check=False)
        return p.stdout.strip()



class KubePlay(KubeCase):
    def test_kube_play_backup_sigterm_restart(self):
        ip, fpr = self.play(self.yaml)
        # readOnlyRootFilesystem holds: the server writes only to its volumes.
        self.assertEqual("true", podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}",
                                        self.container).stdout.strip())
        logs = self.logs(self.container)
        self.assertIn("secret taken from /run/secrets/cairn/root-token", logs)
        mounted = self.mounted_secret("root-token")
        encoded = base64.b64encode(self.secret.encode()).decode()
        self.assertIn(mounted, (self.secret, encoded))
        self.client_secret = mounted
        self.assertIn("datastore 'store' created", logs)
        snapshot = self.backup_and_restore(ip, 8007, fpr)
        self.assert_secret_not_logged(self.container)
        self.stop_with_sigterm()
        ip, fpr2 = self.play(self.workload)
        self.assertEqual(fpr, fpr2)  # the config claim kept the TLS key
        self.check_restore(ip, 8007, fpr2, snapshot, "after-restart")
        self.stop_with_sigterm()


class KubePlayS3(KubeCase):
    """deploy/kubernetes/cairn-s3.yaml against a Ceph RGW on this machine
    (test/s3/rgw-up.sh): the S3 keys come from the Secret, the default
    datastore lives in the bucket, and a backup survives the pod.

    Test-only changes to the manifest: the pod shares the host's network
    (RGW listens on the host's loopback) and so listens on a free port;
    the endpoint and bucket are RGW's. And the Secret's S3 keys are written
    as they are, not base64-encoded: podman 4.3 mounts `data` verbatim
    (docs/deployment.md), so the keys are chosen to be valid base64 text."""
    manifest = os.path.join(REPO, "deploy", "kubernetes", "cairn-s3.yaml")
    access_key = "CAIRNKUBEACCESSKEY01"                       # 20 characters
    secret_key = "0123456789abcdef0123456789abcdef01234567"   # 40 hex characters
    bucket = "cairn-kube"
    rgw = None

    @classmethod
    def setUpClass(cls):
        cls.rgw_dir = tempfile.mkdtemp(prefix="cairn-image-rgw-", dir=_TMP)
        # RGW takes PORT, PORT+1 and PORT+2; other tests pick ports too, so
        # a start that lost one of them to another process tries again.
        for attempt in range(3):
            cls.rgw_work = os.path.join(cls.rgw_dir, "rgw%d" % attempt)
            up = subprocess.run([os.path.join(REPO, "test", "s3", "rgw-up.sh"), cls.rgw_work,
                                 str(free_ports(3))],
                                env=dict(os.environ, S3_ACCESS_KEY=cls.access_key,
                                         S3_SECRET_KEY=cls.secret_key),
                                capture_output=True, text=True, timeout=300)
            if up.returncode == 0 or "Address already in use" not in up.stderr:
                break
        if up.returncode != 0:
            raise AssertionError("Ceph RGW did not start:\n" + up.stderr[-4000:])
        cls.rgw = dict(line.split("=", 1) for line in up.stdout.splitlines() if "=" in line)
        cls.s3().create_bucket(Bucket=cls.bucket)

    @classmethod
    def tearDownClass(cls):
        for name in os.listdir(cls.rgw_dir):
            subprocess.run([os.path.join(REPO, "test", "s3", "rgw-down.sh"),
                            os.path.join(cls.rgw_dir, name)], capture_output=True, timeout=120)

    @classmethod
    def s3(cls):
        import boto3  # python3-boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % cls.rgw["S3_PORT"],
                            aws_access_key_id=cls.access_key,
                            aws_secret_access_key=cls.secret_key,
                            region_name=cls.rgw["S3_REGION"],
                            config=Config(s3={"addressing_style": "path"}))

    def edit(self, text):
        self.port = ch.free_port()
        text = re.sub(r"(?m)^(  s3-access-key: ).*$", r"\g<1>" + self.access_key, text)
        text = re.sub(r"(?m)^(  s3-secret-key: ).*$", r"\g<1>" + self.secret_key, text)
        endpoint = ("objects:endpoint=127.0.0.1,port=%s,region=%s,use-tls=false,"
                    "path-style=true" % (self.rgw["S3_PORT"], self.rgw["S3_REGION"]))
        text, n1 = re.subn(r'(?m)^(\s*value: )"objects:endpoint=[^"]*"$',
                           lambda m: '%s"%s"' % (m.group(1), endpoint), text)
        text, n2 = re.subn(r"bucket=cairn-backups", "bucket=" + self.bucket, text)
        text, n3 = re.subn(r"(?m)^(      )(terminationGracePeriodSeconds: .*)$",
                           r"\g<1>hostNetwork: true\n\g<1>\g<2>", text)
        text, n4 = re.subn(r"(?m)^(          env:)$",
                           r'\g<1>\n            - name: CAIRN_LISTEN\n'
                           r'              value: "127.0.0.1:%d"' % self.port, text)
        # podman refuses port mappings on the host's network.
        text, n5 = re.subn(r"(?m)^          ports:\n            - name: https\n"
                           r"              containerPort: 8007\n", "", text)
        self.assertEqual((1, 1, 1, 1, 1), (n1, n2, n3, n4, n5))
        return text

    def test_s3_datastore_backup_sigterm_restart(self):
        podman("kube", "play", self.yaml, timeout=120)
        self.wait_healthy(self.container)
        logs = self.logs(self.container)
        self.assertIn("S3 endpoint 'objects' created (CAIRN_S3_ENDPOINT)", logs)
        self.assertIn("datastore 'store' created", logs)
        self.client_secret = self.mounted_secret("root-token")
        config = podman("volume", "inspect", "--format", "{{.Mountpoint}}",
                        self.prefix + "-config").stdout.strip()
        with open(os.path.join(config, "s3.cfg")) as f:
            s3cfg = f.read()
        with open(os.path.join(config, "s3-secrets.cfg")) as f:
            secrets = f.read()
        self.assertIn("access-key %s\n" % self.access_key, s3cfg)
        self.assertNotIn(self.secret_key, s3cfg)
        self.assertIn("secret-key %s\n" % self.secret_key, secrets)
        fpr = self.fingerprint(self.container)
        snapshot = self.backup_and_restore("127.0.0.1", self.port, fpr)
        # The chunks went to the bucket, under the datastore's prefix.
        listed = self.s3().list_objects_v2(Bucket=self.bucket, Prefix="store/.chunks/")
        self.assertGreater(listed.get("KeyCount", 0), 0)
        for secret in (self.secret_key, self.client_secret):
            self.assertNotIn(secret, self.logs(self.container))
        self.stop_with_sigterm()
        podman("kube", "play", self.workload, timeout=120)
        self.wait_healthy(self.container)
        self.check_restore("127.0.0.1", self.port, fpr, snapshot, "after-restart")
        self.assertIn("S3 endpoint 'objects' updated", self.logs(self.container))
        self.stop_with_sigterm()

if __name__ == "__main__":
    unittest.main()
