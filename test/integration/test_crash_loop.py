"""Issue #17 item 2: the crash-consistency loop.

Each iteration starts backups, a prune, a garbage collection, a verify and
a group or namespace move (issue #15) in threads against a local datastore,
kills cairnd with SIGKILL after a random delay, restarts it, and then
requires that
- `cairn-admin datastore check NAME --verify-chunks` finds no problem (it runs
  while the restarted server's recovery walk may still be busy),
- every snapshot whose finish was answered before the kill exists in exactly
  one place: where its group is, or, for a group that a move of this
  iteration concerned, in either the move's source or its target (whether
  the move task got to run before the kill is not known),
- a move that may have been interrupted, re-run after the restart (that is
  how moves promise to finish), completes, after which every snapshot of
  the moved groups is in the target, once, and
- every such snapshot restores to the bytes that were backed up (unless a
  prune of this iteration removed it), and
- after an iteration with a local sync pull of the whole datastore into a
  second one (sync/, issue #18), the pull target's `datastore check
  --verify-chunks` is clean and one of its finished snapshots restores to
  the bytes backed up.

Everything random comes from one seed, printed at the start and in every
failure: CAIRN_CRASH_SEED=<seed> reproduces the choices (thread timing still
varies), CAIRN_CRASH_ITERATIONS=<n> runs more iterations (`make crash-loop
N=1000`). ctest runs 20.

S3CrashLoopTest runs the same loop, without moves (see the class), against
an S3 datastore on s3rver (a light npm S3 server that starts in about a
second; Ceph RGW takes longer than the loop's budget under ctest): 5
iterations under ctest, CAIRN_CRASH_S3_ITERATIONS=<n> for more (`make
crash-loop S3=1 N=50`); the check after each restart then covers the bucket
too.
"""

import hashlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cairn_harness as H  # noqa: E402
import pbs_proto as pp  # noqa: E402
import urllib.parse  # noqa: E402

STORE = "crash"
MIRROR = "crashcopy"   # the target of the local sync pulls
TASKS = pp.API + "/nodes/localhost/tasks"
GROUPS = ("a", "b", "c", "d")
BASE_TIME = 1600000000
ARCHIVE = "data.pxar.didx"


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


class LoopBase(pp.CaseMixin):
    """The loop; the subclasses choose the datastore (local or S3)."""
    iterations_env = "CAIRN_CRASH_ITERATIONS"
    default_iterations = 20
    move_rate = 0.7  # the share of iterations with a move
    pull_rate = 0.3  # ... with a local sync pull into MIRROR

    def server_env(self):
        return None

    def make_store(self):
        # A one-minute atime cutoff, and chunks aged between iterations (below),
        # so that GC really sweeps while it may be killed.
        self.srv.admin("datastore", "create", STORE, self.ds, "--tuning",
                       "gc-atime-safety-check=false,gc-atime-cutoff=1", check=True)

    def setUp(self):
        self.seed = env_int("CAIRN_CRASH_SEED", random.SystemRandom().randrange(1, 2**31))
        self.iterations = env_int(self.iterations_env, self.default_iterations)
        self.moves = 0
        self.reruns = 0   # moves found unfinished after the restart and re-run
        sys.stderr.write("crash loop (%s): CAIRN_CRASH_SEED=%d %s=%d\n"
                         % (type(self).__name__, self.seed, self.iterations_env,
                            self.iterations))
        self.srv = H.Cairn(tls=False, log_level="info", env=self.server_env())
        self.ds = self.srv.datastore_path(STORE)
        self.make_store()
        if self.pull_rate:
            self.srv.admin("datastore", "create", MIRROR, self.srv.datastore_path(MIRROR),
                           check=True)
        self.pulls = 0
        self.lock = threading.Lock()
        self.expected = {}   # (id, time) -> sha256 of the archive's content
        self.next_time = BASE_TIME
        self.failures = []   # errors seen while the server was meant to be alive
        self.killed = False
        # Where each group is ("" is the root namespace), and the namespaces
        # (flat, below the root) that exist; a namespace move renames one to
        # a fresh name, so namespaces never merge.
        self.place = {g: "" for g in GROUPS}
        self.namespaces = set()
        self.ns_serial = 0
        for _ in range(2):
            self.ns_create(self.fresh_ns())

    def fresh_ns(self):
        self.ns_serial += 1
        return "n%d" % self.ns_serial

    def ns_create(self, ns):
        r = self.srv.post("%s/admin/datastore/%s/namespace" % (pp.API, STORE),
                          params={"name": ns})
        self.assertOk(r, "create namespace %s" % ns)
        self.namespaces.add(ns)

    def tearDown(self):
        self.srv.stop()
        report = self.srv.sanitizer_reports()
        self.srv.close()
        self.maxDiff = None  # a sanitizer report is worth reading whole
        self.assertEqual("", report, "seed %d" % self.seed)

    def where(self, it):
        return "%s: seed %d, iteration %d (reproduce: CAIRN_CRASH_SEED=%d)" % (
            type(self).__name__, self.seed, it, self.seed)

    # ---- operations (threads) ----

    def guarded(self, what, fn):
        try:
            fn()
        except Exception as e:  # a killed server breaks any request
            with self.lock:
                if not self.killed and self.srv.alive():
                    self.failures.append("%s: %r" % (what, e))

    def backup(self, rng, backup_id, t, pool, ns):
        chunks = [rng.choice(pool) if rng.random() < 0.3 else
                  pp.Chunk(rng.randbytes(rng.randint(1, 64 * 1024)))
                  for _ in range(rng.randint(1, 24))]
        content = hashlib.sha256(b"".join(c.data for c in chunks)).hexdigest()

        def run():
            b = pp.BackupSession(self.srv, STORE, "host", backup_id, t, ns=ns or None)
            b.open(wait_busy=2.0)
            b.upload_dynamic(ARCHIVE, chunks)
            b.upload_manifest()
            b.finish()
            with self.lock:
                self.expected[(backup_id, t)] = content
        return lambda: self.guarded("backup host/%s/%d" % (backup_id, t), run)

    def task(self, what, params=None, ok=(200,)):
        def run():
            r = self.srv.post("%s/admin/datastore/%s/%s" % (pp.API, STORE, what),
                              params=params)
            if r.status not in ok:
                raise pp.ProtoError("POST %s" % what, r)
        return lambda: self.guarded(what, run)

    def move(self, m, start):
        """POSTs the move `m` (see plan_move) `start` seconds after the
        operations began (a local move takes milliseconds: started at once, it
        would nearly always finish before the kill); its task runs on. A group
        with no snapshot yet is a 404: nothing to move, and that is fine."""
        def run():
            time.sleep(start)
            if m["kind"] == "group":
                params = {"backup-type": "host", "backup-id": m["gid"],
                          "target-ns": m["dst"]}
                if m["src"]:
                    params["ns"] = m["src"]
                r = self.srv.post("%s/admin/datastore/%s/move-group" % (pp.API, STORE),
                                  params=params)
                ok = (200, 404)
            else:
                r = self.srv.post("%s/admin/datastore/%s/move-namespace" % (pp.API, STORE),
                                  params={"ns": m["src"], "target-ns": m["dst"]})
                ok = (200,)
            if r.status not in ok:
                raise pp.ProtoError("move %r" % m, r)
        return lambda: self.guarded("move %r" % m, run)

    def plan_move(self, rng, taken):
        """A group move of a group no other operation of the iteration touches
        (to the root or another namespace), or a namespace move of a
        namespace whose groups are all untouched, to a fresh name."""
        free = [g for g in GROUPS if g not in taken]
        if rng.random() < 0.5:
            if not free:
                return None
            g = rng.choice(free)
            dst = rng.choice(sorted(({""} | self.namespaces) - {self.place[g]}))
            return {"kind": "group", "gid": g, "src": self.place[g], "dst": dst,
                    "gids": [g]}
        movable = [ns for ns in sorted(self.namespaces)
                   if all(g in free for g in GROUPS if self.place[g] == ns)]
        if not movable:
            return None
        src = rng.choice(movable)
        return {"kind": "namespace", "src": src, "dst": self.fresh_ns(),
                "gids": [g for g in GROUPS if self.place[g] == src]}

    def pull(self):
        """A one-off local sync pull of the whole crash datastore (every
        namespace) into MIRROR; its task runs on."""
        def run():
            r = self.srv.post(pp.API + "/pull", params={"store": MIRROR,
                                                        "remote-store": STORE})
            if r.status not in (200, 409):  # 409: the previous pull still runs
                raise pp.ProtoError("pull", r)
        return lambda: self.guarded("pull", run)

    def check_mirror(self, it, rng):
        """The pull target after the restart: `datastore check` clean, and a
        snapshot it holds finished restores to the bytes backed up."""
        p = self.srv.admin("datastore", "check", MIRROR, "--verify-chunks", timeout=120)
        self.assertEqual(0, p.returncode, "%s: datastore check of the pull target failed:"
                         "\n%s%s%s" % (self.where(it), p.stdout, p.stderr, self.log_tail()))
        done = []
        for ns in sorted(self.all_namespaces(MIRROR)):
            r = self.srv.get("%s/admin/datastore/%s/snapshots" % (pp.API, MIRROR),
                             params={"ns": ns} if ns else None)
            if r.status == 404:
                continue
            done += [(ns, row["backup-id"], row["backup-time"]) for row in self.assertOk(r)
                     if not row.get("unfinished")
                     and (row["backup-id"], row["backup-time"]) in self.expected]
        if not done:
            return
        ns, gid, t = rng.choice(sorted(done))
        rd = self.open_session(pp.ReaderSession(self.srv, MIRROR, "host", gid, t,
                                                ns=ns or None))
        _, data = rd.restore_index(ARCHIVE)
        rd.close()
        self.assertEqual(self.expected[(gid, t)], hashlib.sha256(data).hexdigest(),
                         "%s: the pulled copy of host/%s/%d (namespace %r) restores other "
                         "bytes" % (self.where(it), gid, t, ns))

    def age_chunks(self):
        past = time.time() - 2 * 3600
        for prefix, name, path in pp.chunk_dir_listing(self.ds):
            try:
                os.utime(path, (past, os.stat(path).st_mtime))
            except OSError:
                pass

    # ---- checks after the restart ----

    def check_store(self, it, when="after the restart"):
        p = self.srv.admin("datastore", "check", STORE, "--verify-chunks", timeout=120)
        self.assertEqual(0, p.returncode, "%s: datastore check failed %s:\n%s%s%s"
                         % (self.where(it), when, p.stdout, p.stderr, self.log_tail()))
        self.assertIn("0 problem(s)", p.stdout)

    def all_namespaces(self, store=STORE):
        r = self.srv.get("%s/admin/datastore/%s/namespace" % (pp.API, store))
        return {""} | {row["ns"] for row in self.assertOk(r, "namespaces")}

    def all_snapshots(self):
        """(backup-id, backup-time) -> [(ns, row)] over every namespace."""
        out = {}
        for ns in sorted(self.all_namespaces()):
            r = self.srv.get("%s/admin/datastore/%s/snapshots" % (pp.API, STORE),
                             params={"ns": ns} if ns else None)
            if r.status == 404:  # a namespace removed since the listing
                continue
            for row in self.assertOk(r, "snapshots of %r" % ns):
                out.setdefault((row["backup-id"], row["backup-time"]), []).append((ns, row))
        return out

    def check_places(self, it, pruned, allowed):
        """Every expected snapshot exists once, in a place its group may be;
        returns the listing."""
        snaps = self.all_snapshots()
        for key in sorted(self.expected):
            gid, t = key
            where = snaps.get(key, [])
            # The prune of this iteration removed it, or was killed while
            # removing it: it deletes the manifest first, so the snapshot reads
            # as unfinished until the recovery walk removes the rest.
            if gid in pruned and all(row.get("unfinished") for _, row in where):
                del self.expected[key]
                continue
            self.assertEqual(1, len(where), "%s: finished snapshot host/%s/%d is in %d "
                             "place(s): %r (group expected in %r)%s"
                             % (self.where(it), gid, t, len(where), [w[0] for w in where],
                                sorted(allowed[gid]), self.log_tail()))
            ns, row = where[0]
            self.assertIn(ns, allowed[gid], "%s: host/%s/%d is in namespace %r"
                          % (self.where(it), gid, t, ns))
            self.assertFalse(row.get("unfinished"), "%s: finished snapshot host/%s/%d in "
                             "namespace %r is listed as unfinished (group expected in %r)%s"
                             % (self.where(it), gid, t, ns, sorted(allowed[gid]),
                                self.log_tail()))
        return snaps

    def wait_task(self, upid, timeout=120):
        deadline = time.monotonic() + timeout
        path = "%s/%s/status" % (TASKS, urllib.parse.quote(upid, safe=""))
        while True:
            st = self.assertOk(self.srv.get(path), "task status")
            if st["status"] == "stopped":
                return st
            self.assertLess(time.monotonic(), deadline, "task %s still running" % upid)
            time.sleep(0.02)

    def task_log(self, upid):
        r = self.srv.get("%s/%s/log" % (TASKS, urllib.parse.quote(upid, safe="")),
                         params={"limit": 0})
        return "\n".join(e["t"] for e in self.assertOk(r, "task log"))

    def finish_move(self, it, m):
        """Re-runs the move `m` if anything is left in its source, so that it
        completes; afterwards its groups are in the target."""
        if m["kind"] == "group":
            r = self.srv.get("%s/admin/datastore/%s/groups" % (pp.API, STORE),
                             params={"ns": m["src"]} if m["src"] else None)
            left = r.status == 200 and any(
                g["backup-type"] == "host" and g["backup-id"] == m["gid"]
                for g in self.assertOk(r))
            what = "move-group"
            params = {"backup-type": "host", "backup-id": m["gid"], "target-ns": m["dst"]}
            if m["src"]:
                params["ns"] = m["src"]
        else:
            left = m["src"] in self.all_namespaces()
            what = "move-namespace"
            params = {"ns": m["src"], "target-ns": m["dst"]}
        if left:
            self.reruns += 1
            for attempt in range(5):
                r = self.srv.post("%s/admin/datastore/%s/%s" % (pp.API, STORE, what),
                                  params=params)
                # 404: the group held only an unfinished snapshot, which the
                # recovery walk has removed meanwhile.
                if m["kind"] == "group" and r.status == 404:
                    break
                upid = self.assertOk(r, "%s: re-run %s %r" % (self.where(it), what, params))
                st = self.wait_task(upid)
                # "in use": the recovery walk held a snapshot lock for a moment.
                if st["exitstatus"] == "OK" or "in use" not in st["exitstatus"] \
                        or attempt == 4:
                    break
                time.sleep(0.1)
            if r.status != 404:
                self.assertEqual("OK", st["exitstatus"], "%s: re-run of %s %r:\n%s%s"
                                 % (self.where(it), what, params, self.task_log(upid),
                                    self.log_tail()))
        if m["kind"] == "namespace":
            self.namespaces.discard(m["src"])
            self.namespaces.add(m["dst"])
        for g in m["gids"]:
            self.place[g] = m["dst"]
        return left

    def check_restores(self, it, fresh):
        # Restore what finished in this iteration, and one older snapshot.
        older = sorted(set(self.expected) - set(fresh))
        for key in sorted(set(fresh) & set(self.expected)) + older[-1:]:
            ns = self.place[key[0]]
            rd = pp.ReaderSession(self.srv, STORE, "host", key[0], key[1], ns=ns or None)
            self.open_session(rd)
            _, data = rd.restore_index(ARCHIVE)
            rd.close()
            self.assertEqual(self.expected[key], hashlib.sha256(data).hexdigest(),
                             "%s: host/%s/%d (namespace %r) restores other bytes"
                             % (self.where(it), key[0], key[1], ns))

    # ---- the loop ----

    def no_sanitizer_report(self, it):
        """A sanitizer report that has begun is let finish (the process aborts
        after it) rather than cut short by the kill, so it has a stack."""
        if not self.srv.sanitizer_reports():
            return
        try:
            self.srv.proc.wait(30)
        except Exception:
            pass
        self.srv.stop()
        self.maxDiff = None
        self.assertEqual("", self.srv.sanitizer_reports(), self.where(it))

    def iteration(self, it, rng, pool):
        self.age_chunks()
        with self.lock:
            self.killed = False
            before = set(self.expected)
        busy = rng.sample(GROUPS, rng.randint(1, 3))
        ops = []
        for backup_id in busy:
            self.next_time += 10
            ops.append(self.backup(random.Random(rng.random()), backup_id, self.next_time,
                                   pool, self.place[backup_id]))
        idle = [g for g in GROUPS if g not in busy]
        pruned = set()
        if idle and rng.random() < 0.5:
            g = rng.choice(idle)
            pruned.add(g)
            params = {"backup-type": "host", "backup-id": g,
                      "keep-last": str(rng.randint(1, 2)), "dry-run": "0"}
            if self.place[g]:
                params["ns"] = self.place[g]
            ops.append(self.task("prune", params,
                                 ok=(200, 404)))  # 404: no backup of that group yet
        delay = rng.uniform(0.0, 0.6)
        moving = None
        if rng.random() < self.move_rate:
            moving = self.plan_move(rng, set(busy) | pruned)
            if moving:
                self.moves += 1
                ops.append(self.move(moving, rng.uniform(0.0, delay)))
        if rng.random() < 0.6:
            ops.append(self.task("gc"))
        if rng.random() < 0.4:
            ops.append(self.task("verify"))
        pulled = rng.random() < self.pull_rate
        if pulled:
            self.pulls += 1
            ops.append(self.pull())
        rng.shuffle(ops)
        threads = [threading.Thread(target=op, daemon=True) for op in ops]
        for th in threads:
            th.start()
        time.sleep(delay)
        self.no_sanitizer_report(it)
        with self.lock:
            self.killed = True
        self.srv.kill9()
        for th in threads:
            th.join(30)
            self.assertFalse(th.is_alive(), "%s: an operation hangs" % self.where(it))
        self.assertEqual([], self.failures, "%s: failed before the kill%s"
                         % (self.where(it), self.log_tail()))
        self.srv.start()
        allowed = {g: {self.place[g]} for g in GROUPS}
        if moving:
            for g in moving["gids"]:
                allowed[g] = {moving["src"], moving["dst"]}
        self.check_places(it, pruned, allowed)
        self.check_store(it)
        if moving and self.finish_move(it, moving):
            self.check_places(it, set(), {g: {self.place[g]} for g in GROUPS})
            self.check_store(it, "after the re-run of %r" % moving)
        fresh = set(self.expected) - before
        self.check_restores(it, fresh)
        if pulled:
            self.check_mirror(it, random.Random(rng.random()))

    def test_crash_loop(self):
        rng = random.Random(self.seed)
        pool = [pp.Chunk(rng.randbytes(rng.randint(1, 32 * 1024))) for _ in range(8)]
        for it in range(self.iterations):
            self.iteration(it, rng, pool)
        # The recovery walk has had its time: a last check sees it finished.
        self.srv.restart()
        self.check_store(self.iterations)
        self.check_places(self.iterations, set(), {g: {self.place[g]} for g in GROUPS})
        copied = 0
        if self.pull_rate:
            for ns in self.all_namespaces(MIRROR):
                r = self.srv.get("%s/admin/datastore/%s/snapshots" % (pp.API, MIRROR),
                                 params={"ns": ns} if ns else None)
                copied += len(self.assertOk(r)) if r.status == 200 else 0
        sys.stderr.write("crash loop (%s): %d iterations, %d snapshots kept, %d moves (%d "
                         "re-run after the kill), %d pulls (%d snapshots in the target), seed %d\n"
                         % (type(self).__name__, self.iterations, len(self.expected),
                            self.moves, self.reruns, self.pulls, copied, self.seed))



class CrashLoopTest(LoopBase, unittest.TestCase):
    """A local datastore."""

    def test_check_command_exit_codes(self):
        """The check as users run it: 0 clean, 1 with one line per problem, 2 when
        it cannot check."""
        b = self.open_session(pp.BackupSession(self.srv, STORE, "host", "a", BASE_TIME))
        b.upload_dynamic(ARCHIVE, [pp.Chunk(b"first"), pp.Chunk(b"second")])
        b.upload_manifest()
        b.finish()
        p = self.srv.admin("datastore", "check", STORE, "--verify-chunks")
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"1 finished snapshot\(s\) checked.*0 problem\(s\)")
        # One chunk's bytes replaced by another valid chunk: only hashing sees it.
        names = [path for prefix, name, path in pp.chunk_dir_listing(self.ds)]
        with open(names[1], "rb") as f:
            other = f.read()
        with open(names[0], "wb") as f:
            f.write(other)
        self.assertEqual(0, self.srv.admin("datastore", "check", STORE).returncode)
        p = self.srv.admin("datastore", "check", STORE, "--verify-chunks")
        self.assertEqual(1, p.returncode, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"(?m)^problem: snapshot host/a/.* does not match its name")
        self.assertRegex(p.stdout, r"1 problem\(s\)$")
        self.assertEqual(2, self.srv.admin("datastore", "check", "nosuch").returncode)
        self.assertEqual(2, self.srv.admin("datastore", "check", STORE, "--bogus").returncode)


S3_BUCKET = "cairn-crash"


class S3rver:
    """The npm s3rver (test/s3/s3rver-install.sh): starts in about a second,
    keeps its objects in a directory, and lives across the cairnd kills."""

    def __init__(self):
        root = os.path.dirname(os.path.dirname(HERE))
        subprocess.run([os.path.join(root, "test", "s3", "s3rver-install.sh")], check=True,
                       timeout=300)
        self.work = tempfile.mkdtemp(prefix="cairn-crash-s3-")
        with socket.socket() as so:
            so.bind(("127.0.0.1", 0))
            self.port = so.getsockname()[1]
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        self.proc = subprocess.Popen(
            ["node", os.path.join(root, "node_modules", ".bin", "s3rver"), "-d", self.work,
             "-a", "127.0.0.1", "-p", str(self.port), "--no-vhost-buckets", "-s",
             "--configure-bucket", S3_BUCKET],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("s3rver exited: " + self.proc.stderr.read().decode()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("s3rver did not listen within 30 s")
                time.sleep(0.05)

    def client(self):
        import boto3  # python3-boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url="http://127.0.0.1:%d" % self.port,
                            aws_access_key_id="S3RVER", aws_secret_access_key="S3RVER",
                            region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
        shutil.rmtree(self.work, ignore_errors=True)


class S3CrashLoopTest(LoopBase, unittest.TestCase):
    """An S3 datastore on s3rver: 5 iterations under ctest, more with
    CAIRN_CRASH_S3_ITERATIONS (`make crash-loop S3=1 N=50`). The check after
    each restart includes the bucket side of `cairn-admin datastore check`."""
    iterations_env = "CAIRN_CRASH_S3_ITERATIONS"
    default_iterations = 5
    pull_rate = 0.0  # pulls are covered by the local loop; this one stays short

    def setUp(self):
        self.s3 = S3rver()
        self.addCleanup(self.s3.stop)
        # One pause point (core_testpoint.h), open unless a test closes it.
        self.pause_dir = tempfile.mkdtemp(prefix="cairn-crash-pause-")
        self.addCleanup(shutil.rmtree, self.pause_dir, True)
        open(os.path.join(self.pause_dir, "finish-mirrored.go"), "w").close()
        super().setUp()

    def server_env(self):
        return {"CAIRN_TEST_PAUSE_POINTS": "finish-mirrored",
                "CAIRN_TEST_PAUSE_DIR": self.pause_dir}

    def test_kill_between_bucket_and_cache(self):
        """A finish killed after the bucket has the manifest but before the
        cache's copy is published: the snapshot is unfinished in the cache,
        and the recovery walk removes it from the cache and the bucket, so
        the two agree (it was never reported finished). Regression: finish
        published the cache's manifest first, and a kill before the bucket's
        copy left a snapshot finished in the cache alone (the crash loop's
        `datastore check` found `index.json.blob: not in the bucket`)."""
        go = os.path.join(self.pause_dir, "finish-mirrored.go")
        parked = os.path.join(self.pause_dir, "finish-mirrored.parked")
        os.unlink(go)
        b = self.open_session(pp.BackupSession(self.srv, STORE, "host", "k", BASE_TIME))
        b.upload_dynamic(ARCHIVE, [pp.Chunk(b"kill me" * 100)])
        b.upload_manifest()
        th = threading.Thread(target=lambda: self.guarded("finish", b.finish), daemon=True)
        self.killed = True  # the finish is expected to break
        th.start()
        deadline = time.monotonic() + 30
        while not os.path.exists(parked):
            self.assertLess(time.monotonic(), deadline, "finish did not park" + self.log_tail())
            time.sleep(0.01)
        s3 = self.s3.client()
        keys = [o["Key"] for o in s3.list_objects_v2(
            Bucket=S3_BUCKET, Prefix=STORE + "/.cnt/host/k/").get("Contents", [])]
        self.assertTrue(any(k.endswith("/index.json.blob") for k in keys), keys)
        snaps = self.all_snapshots()
        self.assertTrue(snaps[("k", BASE_TIME)][0][1].get("unfinished"), snaps)
        self.srv.kill9()
        th.join(30)
        os.unlink(parked)
        open(go, "w").close()
        self.srv.start()
        deadline = time.monotonic() + 60
        while True:  # the recovery walk and its bucket clean-up run in the background
            keys = [o["Key"] for o in s3.list_objects_v2(
                Bucket=S3_BUCKET, Prefix=STORE + "/.cnt/host/k/").get("Contents", [])]
            snap_keys = [k for k in keys if "/host/k/20" in k]
            if ("k", BASE_TIME) not in self.all_snapshots() and not snap_keys:
                break
            self.assertLess(time.monotonic(), deadline, "still there: %r%s"
                            % (snap_keys, self.log_tail()))
            time.sleep(0.05)
        self.check_store(0)

    def make_store(self):
        r = self.srv.post(pp.API + "/config/s3", params={
            "id": "s3rver", "endpoint": "127.0.0.1", "port": str(self.s3.port),
            "region": "us-east-1", "access-key": "S3RVER", "secret-key": "S3RVER",
            "path-style": "true", "use-tls": "false"})
        self.assertOk(r, "S3 endpoint")
        r = self.srv.post(pp.API + "/config/datastore", params={
            "name": STORE, "path": self.ds,
            "backend": "type=s3,client=s3rver,bucket=%s" % S3_BUCKET,
            "tuning": "gc-atime-safety-check=false,gc-atime-cutoff=1"})
        self.assertOk(r, "S3 datastore")

    def test_check_sees_the_bucket(self):
        """`datastore check` on an S3 datastore: a referenced chunk and an
        index missing from the bucket are problems the local cache alone
        would not show; --cache-only checks the cache alone."""
        b = self.open_session(pp.BackupSession(self.srv, STORE, "host", "a", BASE_TIME))
        b.upload_dynamic(ARCHIVE, [pp.Chunk(b"first" * 100), pp.Chunk(b"second" * 100)])
        b.upload_manifest()
        b.finish()
        p = self.srv.admin("datastore", "check", STORE, "--verify-chunks")
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"the bucket listed 2 chunk and \d+ metadata key")
        s3 = self.s3.client()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=S3_BUCKET,
                                                     Prefix=STORE + "/")["Contents"]]
        chunk = sorted(k for k in keys if "/.chunks/" in k)[0]
        index = [k for k in keys if k.endswith("/" + ARCHIVE)][0]
        for k in (chunk, index):
            s3.delete_object(Bucket=S3_BUCKET, Key=k)
        p = self.srv.admin("datastore", "check", STORE)
        self.assertEqual(1, p.returncode, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"(?m)^problem: snapshot host/a/\S+ %s: chunk %s is not in "
                         r"the bucket$" % (re.escape(ARCHIVE), chunk.rsplit("/", 1)[1]))
        self.assertRegex(p.stdout, r"(?m)^problem: snapshot host/a/\S+ %s: not in the bucket$"
                         % re.escape(ARCHIVE))
        self.assertRegex(p.stdout, r"2 problem\(s\)$")
        p = self.srv.admin("datastore", "check", STORE, "--cache-only")
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertIn("only the local cache was checked", p.stdout)
        # An endpoint that does not answer: the check cannot be made (2).
        self.s3.stop()
        p = self.srv.admin("datastore", "check", STORE)
        self.assertEqual(2, p.returncode, p.stdout + p.stderr)
        self.assertIn("--cache-only", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
