#!/usr/bin/python3
"""Integration tests for issue #16 (observability): /metrics on the main
listener (Sys.Audit on /system) and on --metrics-listen (no authentication),
the series after a backup (last-backup gauge, chunk counters), `promtool
check metrics`, a real Prometheus scraping cairnd, readiness 200/503, PBS's
status endpoints, sd_notify READY=1/STOPPING=1/WATCHDOG=1 on our own
NOTIFY_SOCKET, and socket activation through LISTEN_FDS.

Runs standalone and from ctest; exits non-zero on failure.
"""

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = "/api2/json"


def setUpModule():
    ch.require_programs("cairnd")


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} of an exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, "malformed sample line: %r" % line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def find(samples, name, **labels):
    want = set(labels.items())
    return [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]


def http_get(port, path, timeout=10):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.status, r.headers, r.read().decode()


def metrics_cairn(mport, tls=False):
    """A cairnd with --metrics-listen on `mport`, returned once that listener
    is open too (it opens just after the main one the harness waits for)."""
    srv = ch.Cairn(tls=tls, args=("--metrics-listen", "127.0.0.1:%d" % mport))
    if srv.wait_log("metrics on http", timeout=15) is None:
        srv.close()
        raise RuntimeError("the metrics listener did not open:\n" + srv.log_text())
    return srv


class ObserveCase(unittest.TestCase):
    def ok(self, r, what=""):
        self.assertTrue(200 <= r.status < 300, "%s: %r" % (what, r))
        return r.data.get("data") if isinstance(r.data, dict) else r.data

    def make_store(self, srv, name):
        self.ok(srv.post(API + "/config/datastore",
                         params={"name": name, "path": srv.datastore_path(name)}),
                "create store " + name)

    def backup(self, srv, store, bid, t, ns=None):
        api = pp.Endpoint(srv.host, srv.port, srv.token)
        s = pp.BackupSession(api, store, "host", bid, t, ns).open()
        chunks = pp.random_chunks(bid.encode(), 3, 4096)
        s.upload_dynamic("data.didx", chunks)
        s.upload_blob("data.blob", b"payload")
        s.upload_manifest()
        s.finish()
        return chunks


class Metrics(ObserveCase):
    @classmethod
    def setUpClass(cls):
        cls.mport = ch.free_port()
        cls.srv = metrics_cairn(cls.mport)
        cls.addClassCleanup(ch.finish_server, cls.srv)

    def scrape(self):
        status, hdrs, text = http_get(self.mport, "/metrics")
        self.assertEqual(200, status)
        self.assertIn("version=0.0.4", hdrs.get("Content-Type"))
        return text

    def test_main_listener_needs_sys_audit(self):
        srv = self.srv
        r = srv.request("GET", "/metrics", token=False)
        self.assertEqual(401, r.status)
        # A token without privileges: 403 naming Sys.Audit on /system.
        self.ok(srv.post(API + "/access/users", params={"userid": "mon@pbs"}))
        tok = self.ok(srv.post(API + "/access/users/mon@pbs/token/t"))
        token = "mon@pbs!t:" + tok["value"]
        r = srv.request("GET", "/metrics", token=token)
        self.assertEqual(403, r.status, r)
        self.assertIn("Sys.Audit", r.data.get("message", ""))
        # With Sys.Audit on /system (the Audit role): the text format.
        for who in ("mon@pbs", "mon@pbs!t"):  # a token never exceeds its user
            self.ok(srv.put(API + "/access/acl", params={"path": "/system", "auth-id": who,
                                                           "role": "Audit"}))
        r = srv.request("GET", "/metrics", token=token)
        self.assertEqual(200, r.status, r)
        self.assertTrue(r.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        self.assertIn(b"# TYPE cairn_http_requests_total counter", r.raw)
        # The separate listener serves only /metrics, without authentication.
        with self.assertRaises(urllib.error.HTTPError) as e:
            http_get(self.mport, API + "/version")
        self.assertEqual(404, e.exception.code)

    def test_series_after_backup(self):
        srv = self.srv
        self.make_store(srv, "mstore")
        self.ok(srv.post(API + "/admin/datastore/mstore/namespace", params={"name": "lab"}))
        t = int(time.time()) - 600
        self.backup(srv, "mstore", "web1", t)
        self.backup(srv, "mstore", "web1", t + 60)  # the same chunks again: present
        self.backup(srv, "mstore", "db.2", t, ns="lab")
        text = self.scrape()
        m = parse_metrics(text)
        self.assertEqual([t + 60], find(m, "cairn_last_backup_timestamp_seconds",
                                        store="mstore", ns="", type="host", id="web1"))
        self.assertEqual([t], find(m, "cairn_last_backup_timestamp_seconds", store="mstore",
                                   ns="lab", type="host", id="db.2"))
        new = find(m, "cairn_chunk_uploads_total", store="mstore", result="new")
        present = find(m, "cairn_chunk_uploads_total", store="mstore", result="present")
        self.assertEqual([6.0], new)      # 3 chunks per distinct backup
        self.assertEqual([3.0], present)  # the second web1 backup
        self.assertEqual([3.0], find(m, "cairn_backups_finished_total", store="mstore"))
        self.assertTrue(find(m, "cairn_chunk_received_bytes_total", store="mstore")[0] > 0)
        route = "/api2/json/backup/{session}/finish"
        finishes = find(m, "cairn_http_requests_total", route=route, method="POST", code="200")
        self.assertTrue(finishes and finishes[0] >= 3, finishes)
        # Each finish was also timed on its route: count and +Inf bucket agree.
        done = find(m, "cairn_http_request_duration_seconds_count", route=route, method="POST")
        self.assertEqual(finishes[0], done[0] if done else None)
        self.assertEqual(done, find(m, "cairn_http_request_duration_seconds_bucket",
                                    route=route, method="POST", le="+Inf"))
        self.assertEqual(1, len(find(m, "cairn_http_connections_open")))
        # The lag is sampled by a 100 ms timer: a fast run may scrape before
        # its first tick, so wait for one (bounded).
        deadline = time.monotonic() + 10
        while (not find(m, "cairn_event_loop_lag_seconds_count")[0] > 0
               and time.monotonic() < deadline):
            time.sleep(0.05)
            m = parse_metrics(self.scrape())
        self.assertTrue(find(m, "cairn_event_loop_lag_seconds_count")[0] > 0)
        # every loop iteration before a poll is one busy-time observation
        self.assertTrue(find(m, "cairn_event_loop_busy_seconds_count")[0] > 0)
        self.assertTrue(find(m, "cairn_pool_job_run_seconds_count", pool="pool")[0] > 0)
        self.assertEqual([0.0], find(m, "cairn_sessions_open", kind="backup"))
        # No raw paths as labels: every route label is a registered pattern.
        for (n, ls) in m:
            if n in ("cairn_http_requests_total", "cairn_http_request_duration_seconds_bucket"):
                self.assertNotIn("mstore", dict(ls)["route"])

        # A deleted group's series goes (the cache rescans after a delete).
        self.ok(srv.delete(API + "/admin/datastore/mstore/groups",
                           params={"backup-type": "host", "backup-id": "web1"}))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = parse_metrics(self.scrape())
            if not find(m, "cairn_last_backup_timestamp_seconds", id="web1"):
                break
            time.sleep(0.05)
        self.assertEqual([], find(m, "cairn_last_backup_timestamp_seconds", id="web1"))

        # GC: a task run with its last success time.
        upid = self.ok(srv.post(API + "/admin/datastore/mstore/gc"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = self.ok(srv.get(API + "/nodes/localhost/tasks/%s/status"
                                 % urllib.parse.quote(upid, safe="")))
            if st.get("status") == "stopped":
                break
            time.sleep(0.1)
        m = parse_metrics(self.scrape())
        self.assertEqual([1.0], find(m, "cairn_task_runs_total", type="garbage_collection",
                                     store="mstore", result="ok"))
        self.assertTrue(find(m, "cairn_task_last_success_timestamp_seconds",
                             type="garbage_collection", store="mstore")[0] >= t)
        self.assertEqual(1, len(find(m, "cairn_gc_removed_chunks_total", store="mstore")))

    def test_promtool_accepts_the_output(self):
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool (Debian's prometheus) is not installed: "
                             "scripts/deps.sh test installs it")
        self.make_store(self.srv, "pstore")
        self.backup(self.srv, "pstore", "p1", int(time.time()) - 100)
        text = self.scrape()
        p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)
        self.assertEqual(0, p.returncode, p.stdout.decode() + p.stderr.decode())

    def test_status_endpoints(self):
        srv = self.srv
        self.make_store(srv, "ustore")
        node = self.ok(srv.get(API + "/nodes/localhost/status"))
        for key in ("memory", "root", "uptime", "loadavg", "cpuinfo", "kversion", "info",
                    "current-kernel", "swap", "cpu", "wait", "boot-info"):
            self.assertIn(key, node)
        self.assertEqual({"total", "used", "free"}, set(node["memory"]))
        self.assertEqual({"total", "used", "avail"}, set(node["root"]))
        self.assertEqual(3, len(node["loadavg"]))
        self.assertTrue(node["cpuinfo"]["cpus"] >= 1)
        self.assertIn("fingerprint", node["info"])
        usage = self.ok(srv.get(API + "/status/datastore-usage"))
        row = [u for u in usage if u["store"] == "ustore"]
        self.assertEqual(1, len(row), usage)
        row = row[0]
        for key in ("total", "used", "avail", "history", "history-start", "history-delta",
                    "backend-type"):
            self.assertIn(key, row)
        self.assertEqual("filesystem", row["backend-type"])
        self.assertTrue(row["total"] >= row["avail"] > 0)
        self.assertTrue(all(h is None or 0 <= h <= 1 for h in row["history"]))
        pull = self.ok(srv.get(API + "/status/metrics"))["data"]
        ids = {p["id"] for p in pull}
        self.assertIn("host", ids)
        self.assertIn("datastore/ustore", ids)
        for p in pull:
            self.assertEqual({"timestamp", "id", "metric", "type", "value"}, set(p))
        # PBS privileges: Sys.Audit for node status and metrics.
        self.assertEqual(401, srv.request("GET", API + "/status/metrics", token=False).status)


class TaskHistory(ObserveCase):
    def test_last_gc_success_survives_restart(self):
        mport = ch.free_port()
        srv = metrics_cairn(mport)
        self.addCleanup(srv.close)
        self.make_store(srv, "tstore")
        upid = self.ok(srv.post(API + "/admin/datastore/tstore/gc"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = self.ok(srv.get(API + "/nodes/localhost/tasks/%s/status"
                                 % urllib.parse.quote(upid, safe="")))
            if st.get("status") == "stopped":
                break
            time.sleep(0.1)
        m = parse_metrics(http_get(mport, "/metrics")[2])
        before = find(m, "cairn_task_last_success_timestamp_seconds",
                      type="garbage_collection", store="tstore")
        self.assertEqual(1, len(before), m)
        mark = srv.log_mark()
        srv.restart()
        # The metrics listener opens just after the main one the harness waits for.
        self.assertIsNotNone(srv.wait_log("metrics on http", timeout=15, since=mark))
        m = parse_metrics(http_get(mport, "/metrics")[2])
        self.assertEqual(before, find(m, "cairn_task_last_success_timestamp_seconds",
                                      type="garbage_collection", store="tstore"))
        # Run counters start again from zero.
        self.assertEqual([0.0, 0.0, 0.0],
                         find(m, "cairn_task_runs_total", type="garbage_collection"))


class TLSCounters(ObserveCase):
    def test_handshakes_and_failures_counted(self):
        mport = ch.free_port()
        srv = metrics_cairn(mport, tls=True)
        self.addCleanup(srv.close)
        self.assertEqual(200, srv.request("GET", API + "/version").status)
        # Not TLS at all: the handshake fails.
        with socket.create_connection((srv.host, srv.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                s.recv(100)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while True:
            m = parse_metrics(http_get(mport, "/metrics")[2])
            done = find(m, "cairn_tls_handshakes_total")[0]
            failed = find(m, "cairn_tls_handshake_failures_total")[0]
            if (done >= 1 and failed >= 1) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertTrue(done >= 1, done)
        self.assertTrue(failed >= 1, failed)
        self.assertTrue(find(m, "cairn_http_received_bytes_total")[0] > 0)
        self.assertTrue(find(m, "cairn_http_sent_bytes_total")[0] > 0)


class FakeS3(threading.Thread):
    """A minimal path-style S3 server (objects in memory, no signature check):
    enough for a datastore's bucket check, chunk PUTs with If-None-Match and
    the snapshot mirror. stop() makes the endpoint unreachable."""

    def __init__(self, bucket):
        super().__init__(daemon=True)
        objects = self.objects = {}
        alive = self.alive = [True]
        prefix = "/" + bucket

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, code, body=b"", headers=None):
                if not alive[0]:  # stopped: kept-alive connections die too
                    self.close_connection = True
                    return
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def key(self):
                path = urllib.parse.urlsplit(self.path).path
                if path != prefix and not path.startswith(prefix + "/"):
                    return None
                return urllib.parse.unquote(path[len(prefix) + 1:])

            def do_HEAD(self):
                k = self.key()
                if k is None:
                    return self.reply(404)
                if k == "":
                    return self.reply(200)
                if k not in objects or not alive[0]:
                    return self.reply(404)
                self.send_response(200)
                self.send_header("Content-Length", str(len(objects[k])))
                self.send_header("ETag", '"x"')
                self.end_headers()

            def do_GET(self):
                k = self.key()
                if not k or k not in objects:
                    return self.reply(404, b"<Error><Code>NoSuchKey</Code></Error>",
                                      {"Content-Type": "application/xml"})
                self.reply(200, objects[k], {"ETag": '"x"'})

            def do_PUT(self):
                k = self.key()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not k:
                    return self.reply(400)
                if self.headers.get("If-None-Match") == "*" and k in objects:
                    return self.reply(412, b"<Error><Code>PreconditionFailed</Code></Error>",
                                      {"Content-Type": "application/xml"})
                objects[k] = body
                self.reply(200, b"", {"ETag": '"x"'})

            def do_DELETE(self):
                objects.pop(self.key() or "", None)
                self.reply(204)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]

    def run(self):
        self.httpd.serve_forever(0.05)

    def stop(self):
        self.alive[0] = False
        self.httpd.shutdown()
        self.httpd.server_close()


class S3Datastore(ObserveCase):
    def test_s3_metrics_and_readiness(self):
        s3 = FakeS3("obs-bucket")
        s3.start()
        stopped = []

        def stop():
            if not stopped:
                stopped.append(1)
                s3.stop()
        self.addCleanup(stop)
        mport = ch.free_port()
        srv = metrics_cairn(mport)
        self.addCleanup(srv.close)
        self.ok(srv.post(API + "/config/s3", params={
            "id": "fake", "endpoint": "127.0.0.1", "port": str(s3.port), "region": "us-east-1",
            "access-key": "AK", "secret-key": "SK", "path-style": "true",
            "use-tls": "false"}), "endpoint")
        self.ok(srv.post(API + "/config/datastore", params={
            "name": "s3store", "path": srv.datastore_path("s3store"),
            "backend": "type=s3,client=fake,bucket=obs-bucket"}), "s3 datastore")
        self.backup(srv, "s3store", "vm1", int(time.time()) - 100)
        self.assertTrue(any(k.startswith("s3store/.chunks/") for k in s3.objects))
        r = srv.request("GET", API + "/readyz", token=False)
        self.assertEqual(200, r.status, r)
        m = parse_metrics(http_get(mport, "/metrics")[2])
        puts = find(m, "cairn_s3_requests_total", store="s3store", op="put", result="ok")
        self.assertTrue(puts and puts[0] >= 3, puts)  # 3 chunks, then the snapshot mirror
        self.assertTrue(find(m, "cairn_s3_requests_total", store="s3store", op="head_bucket",
                             result="ok")[0] >= 1)
        self.assertTrue(find(m, "cairn_s3_sent_bytes_total", store="s3store")[0] > 0)
        self.assertEqual([0.0], find(m, "cairn_s3_retries_total", store="s3store"))
        usage = self.ok(srv.get(API + "/status/datastore-usage"))
        self.assertEqual(["s3"], [u["backend-type"] for u in usage if u["store"] == "s3store"])
        # The bucket goes away: not ready, naming the datastore.
        stop()
        r = srv.request("GET", API + "/readyz", token=False, timeout=120)
        self.assertEqual(503, r.status, r)
        self.assertEqual(["s3store"], [f["store"] for f in r.data["data"]["failing"]])
        self.assertIn("S3", r.data["data"]["failing"][0]["error"])


class UsageHistory(ObserveCase):
    def test_estimated_full_date_from_kept_samples(self):
        srv = ch.Cairn(tls=False, start=False)
        self.addCleanup(srv.close)
        # A history the server kept earlier (one sample per 30 min, usage
        # growing 1% per sample): the estimate is where the line reaches 1.
        os.makedirs(os.path.join(srv.config_dir, "usage"))
        now = int(time.time())
        with open(os.path.join(srv.config_dir, "usage", "hstore"), "w") as f:
            for i in range(48):
                t = now - (47 - i) * 1800 - 60  # the last one recent: no new sample
                f.write("%d %d %d\n" % (t, (10 + i) * 1000, 100 * 1000))
        with open(os.path.join(srv.config_dir, "datastore.cfg"), "w") as f:
            f.write("datastore: hstore\n\tpath %s\n" % srv.datastore_path("hstore"))
        os.makedirs(os.path.join(srv.datastore_path("hstore"), ".chunks"))
        srv.start()
        usage = self.ok(srv.get(API + "/status/datastore-usage"))
        row = [u for u in usage if u["store"] == "hstore"][0]
        self.assertIn("estimated-full-date", row)
        # 10% at the first sample, +1% per 1800 s: full 90 samples later.
        first = now - 47 * 1800 - 60
        self.assertAlmostEqual(first + 90 * 1800, row["estimated-full-date"], delta=1800)
        self.assertTrue(len(row["history"]) >= 48)
        self.assertAlmostEqual(0.10, [h for h in row["history"] if h is not None][0], 3)


class Readiness(ObserveCase):
    def test_ready_and_not_ready(self):
        srv = ch.Cairn(tls=False)
        self.addCleanup(srv.close)
        r = srv.request("GET", API + "/readyz", token=False)
        self.assertEqual(200, r.status, r)
        self.make_store(srv, "rstore")
        self.make_store(srv, "rstore2")
        r = srv.request("GET", API + "/readyz", token=False)
        self.assertEqual(200, r.status, r)
        self.assertEqual({"ready": True, "datastores": 2, "failing": []}, r.data["data"])
        chunks = os.path.join(srv.datastore_path("rstore2"), ".chunks")
        os.rename(chunks, chunks + ".gone")
        r = srv.request("GET", API + "/readyz", token=False)
        self.assertEqual(503, r.status, r)
        failing = r.data["data"]["failing"]
        self.assertEqual(["rstore2"], [f["store"] for f in failing])
        self.assertIn(".chunks", failing[0]["error"])
        os.rename(chunks + ".gone", chunks)
        self.assertEqual(200, srv.request("GET", API + "/readyz", token=False).status)
        # Liveness stays the ping endpoint.
        self.assertEqual(200, srv.request("GET", API + "/ping", token=False).status)


class NoMetrics(ObserveCase):
    def test_disabled(self):
        srv = ch.Cairn(tls=False, args=("--no-metrics",))
        self.addCleanup(srv.close)
        self.assertEqual(404, srv.request("GET", "/metrics").status)
        self.assertEqual(200, srv.request("GET", API + "/readyz", token=False).status)


class Prometheus(ObserveCase):
    """A real Prometheus scrapes cairnd; its API returns the group's series."""

    def test_prometheus_scrapes_last_backup(self):
        prom = shutil.which("prometheus")
        self.assertIsNotNone(prom, "prometheus (Debian package) is not installed: "
                             "scripts/deps.sh test installs it")
        mport = ch.free_port()
        srv = metrics_cairn(mport)
        self.addCleanup(srv.close)
        self.make_store(srv, "promstore")
        t = int(time.time()) - 300
        self.backup(srv, "promstore", "db1", t)
        tmp = tempfile.mkdtemp(prefix="cairn-prom-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: cairn\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % mport)
        pport = ch.free_port()
        log = open(os.path.join(tmp, "prometheus.log"), "wb")
        self.addCleanup(log.close)
        p = subprocess.Popen([prom, "--config.file", cfg, "--storage.tsdb.path",
                              os.path.join(tmp, "data"), "--web.listen-address",
                              "127.0.0.1:%d" % pport], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)

        def stop():
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.addCleanup(stop)
        q = urllib.parse.quote('cairn_last_backup_timestamp_seconds{store="promstore"}')
        result = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not result:
            self.assertIsNone(p.poll(), "prometheus exited")
            try:
                _, _, body = http_get(pport, "/api/v1/query?query=" + q, timeout=5)
                result = json.loads(body)["data"]["result"]
            except (OSError, ValueError, KeyError):
                pass
            if not result:
                time.sleep(0.5)
        self.assertEqual(1, len(result), "no series in Prometheus within 90 s")
        labels = result[0]["metric"]
        self.assertEqual(("promstore", "", "host", "db1"),
                         (labels["store"], labels.get("ns", ""), labels["type"], labels["id"]))
        self.assertEqual(t, int(float(result[0]["value"][1])))
        # The scrape target is healthy.
        _, _, body = http_get(pport, "/api/v1/targets")
        targets = json.loads(body)["data"]["activeTargets"]
        self.assertEqual("up", targets[0]["health"], targets)


NOTIFY_WRAPPER = r"""
import os, socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_PID"] = str(os.getpid())  # exec keeps the pid
os.environ["LISTEN_FDS"] = "1"
os.execv(sys.argv[2], sys.argv[2:])
"""


class ActivatedCairn(ch.Cairn):
    """cairnd started through a wrapper that passes a listening socket on
    fd 3 (LISTEN_FDS=1, LISTEN_PID = the wrapper's pid, which exec keeps).
    Its --listen names another port, which must stay closed."""

    def __init__(self, **kw):
        self.unused_port = ch.free_port()
        super().__init__(**kw)

    def command(self):
        cmd = super().command()
        i = cmd.index("--listen")
        cmd[i + 1] = "127.0.0.1:%d" % self.unused_port
        return [sys.executable, "-c", NOTIFY_WRAPPER, str(self.port)] + cmd


class Systemd(ObserveCase):
    def notify_socket(self):
        d = tempfile.mkdtemp(prefix="cairn-notify-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "notify")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        self.addCleanup(s.close)
        s.settimeout(15)
        return s, path

    def messages_until(self, s, want):
        got = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = s.recv(4096).decode()
            got.append(msg)
            if want in msg.split("\n"):
                return got
        self.fail("no %s in %r" % (want, got))

    def test_ready_stopping_watchdog(self):
        s, path = self.notify_socket()
        srv = ch.Cairn(tls=False, start=False,
                       env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        self.addCleanup(srv.close)
        srv.start()
        got = self.messages_until(s, "READY=1")
        # READY comes after the listener is up: the port accepts right away.
        self.assertTrue(srv.port_open())
        self.assertTrue(any(l.startswith("STATUS=") for m in got for l in m.split("\n")))
        self.messages_until(s, "WATCHDOG=1")
        srv.stop()
        self.messages_until(s, "STOPPING=1")

    def test_socket_activation(self):
        s, path = self.notify_socket()
        srv = ActivatedCairn(tls=False, env={"NOTIFY_SOCKET": path})
        self.addCleanup(srv.close)
        self.messages_until(s, "READY=1")
        # (The wrapper listens before exec: the harness saw the port open early.)
        self.assertIsNotNone(srv.wait_log("listening on passed socket 3", timeout=15),
                             srv.log_text())
        r = srv.request("GET", API + "/ping", token=False)
        self.assertEqual(200, r.status, r)
        r = srv.request("GET", API + "/version")
        self.assertEqual(200, r.status, r)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", srv.unused_port), timeout=1).close()
        self.assertEqual(0, srv.stop())


if __name__ == "__main__":
    unittest.main()
