#!/usr/bin/python3
"""`cairn benchmark load` end to end: 4 clients for about 3 s over TLS.

Against a harness cairnd: the run must exit 0 with errors=0 and verified=ok,
print a key=value line with every key issue #17 names (clients, backups,
errors, verified, upload_p99_ms, status_p99_ms, rss_mib), write a --json
summary that agrees, and leave finished snapshots in each client's own
namespace that a server-side verify accepts. Nothing here is timed: the
latencies are printed, not asserted.

Runs standalone (`python3 test_bench_load.py`, CAIRN_BIN_DIR=build/bin) and
from ctest.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402

STORE = "load"
KEYS = ("clients", "backups", "errors", "verified", "upload_p99_ms", "status_p99_ms",
        "rss_mib")


class BenchLoad(unittest.TestCase):
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cairn-load-it-")
        cls.srv = ch.Cairn(log_level="info")
        cls.srv.admin("datastore", "create", STORE, cls.srv.datastore_path(STORE), check=True)

    @classmethod
    def tearDownClass(cls):
        if cls.srv:
            reports = cls.srv.sanitizer_reports()
            cls.srv.close()
            if reports:
                raise AssertionError("server sanitizer reports:\n%s" % "\n".join(reports))
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def env(self):
        e = {k: v for k, v in os.environ.items()
             if not k.startswith("CAIRN_") or k == "CAIRN_BIN_DIR"}
        authid, secret = self.srv.token.rsplit(":", 1)
        e["CAIRN_REPOSITORY"] = "%s@%s:%d:%s" % (authid, self.srv.host, self.srv.port, STORE)
        e["CAIRN_SECRET"] = secret
        e["CAIRN_FINGERPRINT"] = self.srv.fingerprint
        return e

    def load(self, *args):
        return subprocess.run([ch.binary("cairn"), "benchmark", "load"] + list(args),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=self.env(), timeout=300)

    def namespaces(self):
        r = self.srv.get("/api2/json/admin/datastore/%s/namespace" % STORE)
        return [n["ns"] for n in r.data["data"]]

    def connections(self):
        r = self.srv.get("/metrics")
        for line in r.raw.decode().splitlines():
            if line.startswith("cairn_http_connections_total "):
                return int(float(line.split()[1]))
        self.fail("no cairn_http_connections_total")

    def test_load_run(self):
        summary = os.path.join(self.tmp, "load.json")
        before = set(self.namespaces())  # other tests' runs share the server
        conns0 = self.connections()
        p = self.load("--clients", "4", "--duration", "3", "--readers", "2", "--pollers", "2",
                      "--size-mix", "1M:60,5M:40", "--json", summary,
                      "--server-pid", str(self.srv.proc.pid))
        msg = "exit %d\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.stdout, p.stderr)
        self.assertEqual(0, p.returncode, msg)
        last = p.stdout.strip().splitlines()[-1]
        kv = dict(f.split("=", 1) for f in last.split())
        for k in KEYS:
            self.assertIn(k, kv, msg)
        self.assertEqual("4", kv["clients"])
        self.assertEqual("0", kv["errors"], msg)
        self.assertEqual("ok", kv["verified"], msg)
        self.assertGreaterEqual(int(kv["backups"]), 4, msg)  # every client finished one
        for k in ("upload_p99_ms", "status_p99_ms", "rss_mib"):
            self.assertRegex(kv[k], r"^\d+\.\d$", msg)
        for op in ("session open", "chunk upload", "index close", "finish", "status"):
            self.assertRegex(p.stdout, r"(?m)^%s\s+[1-9]\d*\s" % op, msg)
        self.assertIn("gc / verify     OK / OK", p.stdout, msg)
        # Keep-alive holds: about one connection per actor (4 clients, 2
        # readers, 2 pollers, the tool's own 2), not one per upload whose
        # answer beat its last write's callback (that cost a TLS handshake
        # each: 167 connections for 248 backups before the client kept them).
        self.assertLessEqual(self.connections() - conns0, 12, msg)

        with open(summary) as f:
            res = json.load(f)
        self.assertEqual(int(kv["backups"]), res["backups"])
        self.assertEqual("ok", res["verified"])
        self.assertEqual(0, res["errors"])
        self.assertGreater(res["ops"]["upload"]["count"], 0)
        self.assertGreater(res["ops"]["read"]["count"], 0)

        # every client wrote into its own namespace under the run's parent
        names = self.namespaces()
        runs = [n for n in names if re.fullmatch(r"load-\d+-\d+", n) and n not in before]
        self.assertEqual(1, len(runs), names)
        total = 0
        for c in range(4):
            ns = "%s/c%03d" % (runs[0], c)
            self.assertIn(ns, names)
            r = self.srv.get("/api2/json/admin/datastore/%s/snapshots" % STORE,
                             params={"ns": ns})
            snaps = r.data["data"]
            self.assertTrue(snaps, ns)
            self.assertEqual({"load-%03d" % c}, {s["backup-id"] for s in snaps})
            total += len(snaps)
        self.assertEqual(res["backups"], total)

    def test_client_rate(self):
        # two 4 MiB chunks per backup at 2 MB/s: the second chunk waits its turn
        # (about 2.1 s), so the run cannot be shorter than that
        p = self.load("--clients", "2", "--count", "2", "--readers", "0", "--pollers", "1",
                      "--size-mix", "8M:1", "--client-rate", "2", "--no-gc")
        msg = "exit %d\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.stdout, p.stderr)
        self.assertEqual(0, p.returncode, msg)
        kv = dict(f.split("=", 1) for f in p.stdout.strip().splitlines()[-1].split())
        self.assertEqual("2.0", kv["client_rate_mbs"], msg)
        self.assertEqual("2", kv["backups"], msg)
        self.assertGreaterEqual(float(kv["seconds"]), 2.0, msg)
        self.assertIn("each client at most 2.0 MB/s (offered 4.0 MB/s)", p.stdout, msg)

    def test_bad_options(self):
        for args in (["--clients", "0"], ["--size-mix", "1M"], ["--size-mix", "0M:1"],
                     ["--duration", "-1"], ["--client-rate", "-1"], ["--frobnicate"]):
            p = self.load(*args)
            self.assertEqual(2, p.returncode, "%s: %s" % (args, p.stderr))
            self.assertIn("cairn benchmark load", p.stderr)
        p = self.load("--help")
        self.assertEqual(0, p.returncode)
        self.assertIn("--size-mix", p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
