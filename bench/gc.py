#!/usr/bin/python3
"""bench/gc: garbage collection of a large local datastore against cairnd.

The datastore holds --chunks small chunks (default 1,000,000) of which half
are referenced by --snapshots snapshots (default 300: 30 groups of 10
incremental snapshots, each referencing a growing prefix of its group's
chunk range, so most references are repeats that the touched-digest cache
absorbs) and half are referenced by nothing. Every chunk is aged two days,
so the first GC removes exactly the unreferenced half.

Measured in one run, over the same chunk tree:
  find      `find .chunks -type f | wc -l`, cold (page cache, dentries and
            inodes dropped through /proc/sys/vm/drop_caches, when allowed)
            and warm (right after a walk). find reads directories only
            (d_type), while GC must also read every chunk's inode for its
            atime, so before the warm GC of the full tree `du` brings the
            inodes into the cache too.
  gc        POST .../gc until the task stops, no other load; phase 1 (mark)
            and phase 2 (sweep) from the task log
on the full tree (GC removes half), then on the remaining half (nothing to
remove) cold and warm. Finally the status endpoint's throughput (wrk, one
thread, 16 keep-alive connections) idle and while a GC runs.

Targets (reported, not asserted): GC at most 3x the warm find over the same
tree; status throughput during GC at least 80% of idle.

The last line is key=value pairs: gc_s, find_s (the full tree, warm), ratio,
removed, kept, phase1_s, phase2_s, find_cold_s, status_idle_rps,
status_gc_rps, status_ratio.
"""

import argparse
import hashlib
import multiprocessing
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration"))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = "/api2/json"
TASKS = API + "/nodes/localhost/tasks"
STORE = "bench"
T0 = 1700000000
MAGIC_PLAIN = bytes.fromhex("42ab3807be8370a1")
GROUP_SNAPSHOTS = 10


def payload(i):
    """Chunk i's plaintext: 48 bytes, unique per i."""
    return struct.pack("<QQ", i, 0x63616972) * 3


def digest_of(i):
    return hashlib.sha256(payload(i)).digest()


def write_chunks(args):
    """Worker: writes chunks [start, end) into base/.chunks."""
    base, start, end = args
    root = os.path.join(base, ".chunks")
    for i in range(start, end):
        p = payload(i)
        d = hashlib.sha256(p).hexdigest()
        path = "%s/%s/%s" % (root, d[:4], d)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, MAGIC_PLAIN + struct.pack("<I", zlib.crc32(p)) + p)
        os.close(fd)
    return end - start


def age_chunks(args):
    base, prefixes, when = args
    root = os.path.join(base, ".chunks")
    n = 0
    for pfx in prefixes:
        d = os.path.join(root, pfx)
        for name in os.listdir(d):
            os.utime(os.path.join(d, name), (when, when))
            n += 1
    return n


def make_chunk_files(base, start, end, jobs, what="chunks"):
    """The 65536 prefix directories and the chunk files [start, end) under base/.chunks."""
    root = os.path.join(base, ".chunks")
    for p in range(65536):
        os.makedirs(os.path.join(root, "%04x" % p), exist_ok=True)
    step = 20000
    work = [(base, s, min(s + step, end)) for s in range(start, end, step)]
    with multiprocessing.Pool(jobs) as pool:
        done = 0
        for n in pool.imap_unordered(write_chunks, work):
            done += n
            sys.stderr.write("\r  %s: %d/%d" % (what, done, end - start))
        sys.stderr.write("\n")


def build_floor(base, start, end, jobs):
    """The unlink floor's files: a copy of the chunks GC will remove (same names,
    same size, same prefix layout) in a tree of their own, and their list."""
    make_chunk_files(base, start, end, jobs, "floor copy")
    path = os.path.join(base, "list")
    with open(path, "w") as f:
        for i in range(start, end):
            d = digest_of(i).hex()
            f.write("%s/%s\n" % (d[:4], d))
    return path


def unlink_floor(bindir, base, listfile, threads):
    """gc_floor: the listed files unlinked by `threads` threads scheduled as GC's
    workers (SCHED_IDLE, nice 19), each over a range of prefixes as GC's
    sweepers. Their inodes are read first (du), as before the GC."""
    subprocess.run(["du", "-s", ".chunks"], cwd=base, capture_output=True, check=True)
    out = subprocess.run([os.path.join(bindir, "gc_floor"), os.path.join(base, ".chunks"),
                          str(threads), listfile, "idle"],
                         capture_output=True, text=True, check=True).stdout
    kv = dict(x.split("=", 1) for x in out.split())
    return float(kv["unlink_s"]), int(kv["unlinked"]), float(kv["cpu_s"])


def build_datastore(base, n_chunks, n_snapshots, jobs):
    """Chunk files, snapshot indexes and manifests; chunk i < n/2 is referenced."""
    make_chunk_files(base, 0, n_chunks, jobs)
    referenced = n_chunks // 2
    groups = max(1, n_snapshots // GROUP_SNAPSHOTS)
    per_group = referenced // groups
    snaps = 0
    for g in range(groups):
        lo = g * per_group
        hi = referenced if g == groups - 1 else lo + per_group
        entries = bytearray()
        for k, i in enumerate(range(lo, hi)):
            entries += struct.pack("<Q", (k + 1) * 48) + digest_of(i)
        gid = "g%03d" % g
        gdir = pp.group_dir(base, "host", gid)
        os.makedirs(gdir, exist_ok=True)
        with open(os.path.join(gdir, "owner"), "w") as f:
            f.write("root@pam\n")
        count = hi - lo
        for s in range(GROUP_SNAPSHOTS):
            t = T0 + s * 3600
            n = max(1, count * (s + 1) // GROUP_SNAPSHOTS)
            ent = bytes(entries[:n * 40])
            csum = hashlib.sha256(ent).digest()
            header = bytearray(4096)
            header[0:8] = pp.MAGIC_DIDX
            header[8:24] = hashlib.md5(b"%d/%d" % (g, s)).digest()
            header[24:32] = struct.pack("<q", t)
            header[32:64] = csum
            sdir = pp.snapshot_dir(base, "host", gid, t)
            os.makedirs(sdir, exist_ok=True)
            with open(os.path.join(sdir, "data.pxar.didx"), "wb") as f:
                f.write(bytes(header) + ent)
            doc = pp.manifest("host", gid, t, [{"filename": "data.pxar.didx",
                                                "crypt-mode": "none", "size": n * 48,
                                                "csum": csum.hex()}])
            with open(os.path.join(sdir, pp.MANIFEST), "wb") as f:
                f.write(pp.manifest_blob(doc))
            snaps += 1
    return referenced, snaps


def age_all(base, seconds, jobs):
    when = time.time() - seconds
    prefixes = ["%04x" % p for p in range(65536)]
    parts = [(base, prefixes[i::jobs * 8], when) for i in range(jobs * 8)]
    with multiprocessing.Pool(jobs) as pool:
        return sum(pool.map(age_chunks, parts))


def cpu_seconds(pid):
    """utime + stime of a process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drop_caches():
    """True if the page cache, dentries and inodes could be dropped."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def time_find(base):
    t = time.monotonic()
    out = subprocess.run("find .chunks -type f | wc -l", shell=True, cwd=base,
                         capture_output=True, text=True, check=True).stdout
    return time.monotonic() - t, int(out.strip())


def run_gc(srv):
    t = time.monotonic()
    r = srv.post("%s/admin/datastore/%s/gc" % (API, STORE))
    if r.status != 200:
        raise RuntimeError("gc start: %r" % r)
    upid = r.data["data"]
    q = urllib.parse.quote(upid, safe="")
    while True:
        st = srv.get("%s/%s/status" % (TASKS, q)).data["data"]
        if st["status"] == "stopped":
            break
        time.sleep(0.01)
    wall = time.monotonic() - t
    if st["exitstatus"] != "OK":
        raise RuntimeError("GC ended %s" % st["exitstatus"])
    log = srv.get("%s/%s/log" % (TASKS, q), params={"limit": "0"}).data["data"]
    text = "\n".join(e["t"] for e in log)
    m = re.search(r"Phase 1: ([0-9.]+) s, phase 2: ([0-9.]+) s", text)
    gcs = srv.get("%s/admin/datastore/%s/gc" % (API, STORE)).data["data"]
    return {"wall": wall, "p1": float(m.group(1)), "p2": float(m.group(2)),
            "removed": gcs["removed-chunks"], "kept": gcs["disk-chunks"] + gcs["pending-chunks"]}


WRK_LUA = """
wrk.method = "GET"
wrk.headers["Authorization"] = "PBSAPIToken=%s"
"""


def wrk_rps(srv, seconds, script):
    url = "%s%s/admin/datastore/%s/status" % (srv.url, API, STORE)
    out = subprocess.run(["wrk", "-t1", "-c16", "-d%ds" % seconds, "-s", script, url],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m is None or bad:
        raise RuntimeError("wrk failed:\n" + out)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    ap.add_argument("--chunks", type=int, default=1000000)
    ap.add_argument("--snapshots", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--wrk-seconds", type=int, default=3)
    ap.add_argument("--gc-threads", type=int, default=16,
                    help="threads of the unlink floor: cairnd's GC workers (default 16)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary tree")
    a = ap.parse_args()
    os.environ["CAIRN_BIN_DIR"] = os.path.abspath(a.bin)
    for tool in (os.path.join(a.bin, "cairnd"), os.path.join(a.bin, "gc_floor"),
                 shutil.which("wrk")):
        if not tool or not os.access(tool, os.X_OK):
            sys.exit("bench/gc: %s is missing (build first; wrk is a Debian package)"
                     % (tool or "wrk"))
    if a.keep:
        os.environ["CAIRN_KEEP_TMP"] = "1"

    srv = ch.Cairn(tls=False, log_level="warn", start=False)
    try:
        base = srv.datastore_path(STORE)
        t = time.monotonic()
        sys.stderr.write("building %d chunks, %d snapshots in %s\n"
                         % (a.chunks, a.snapshots, base))
        os.makedirs(base)
        open(os.path.join(base, ".lock"), "w").close()
        referenced, snaps = build_datastore(base, a.chunks, a.snapshots, a.jobs)
        aged = age_all(base, 2 * 86400, a.jobs)
        floor_base = os.path.join(os.path.dirname(base), "unlink-floor")
        floor_list = build_floor(floor_base, referenced, a.chunks, a.jobs)
        sys.stderr.write("  built in %.1f s (%d chunks aged)\n" % (time.monotonic() - t, aged))
        srv.start()
        r = srv.post(API + "/config/datastore",
                     params={"name": STORE, "path": base, "reuse-datastore": "1",
                             "tuning": "gc-atime-safety-check=false"})
        if r.status != 200:
            raise RuntimeError("datastore create: %r" % r)

        rows = []
        can_drop = drop_caches()
        find_cold, n = time_find(base)
        find_warm, n2 = time_find(base)
        assert n == n2 == a.chunks, (n, n2)
        # find reads directories only (d_type); GC also reads every inode
        # (atimes). Warm those too, as a datastore's second GC finds them.
        subprocess.run(["du", "-s", ".chunks"], cwd=base, capture_output=True, check=True)
        # The floor of the sweep: the same number of same-sized files, same
        # layout, same threads and scheduling, unlinked from their list.
        # Each starts with nothing dirty: neither pays for the other's journal.
        os.sync()
        floor_s, floor_n, floor_cpu = unlink_floor(a.bin, floor_base, floor_list, a.gc_threads)
        os.sync()
        cpu0 = cpu_seconds(srv.proc.pid)
        g1 = run_gc(srv)
        g1["cpu"] = cpu_seconds(srv.proc.pid) - cpu0
        if floor_n != g1["removed"]:
            raise RuntimeError("floor unlinked %d files, GC removed %d" % (floor_n, g1["removed"]))
        # Once more after the GC (the files made again, untimed): GC's workers
        # and the floor's threads run at SCHED_IDLE, so whatever else runs on
        # the machine slows both; the mean of before and after is the floor.
        build_floor(floor_base, referenced, a.chunks, a.jobs)
        os.sync()
        floor_s2, _, floor_cpu2 = unlink_floor(a.bin, floor_base, floor_list, a.gc_threads)
        floor_runs = (floor_s, floor_s2)
        floor_s = (floor_s + floor_s2) / 2
        floor_cpu = (floor_cpu + floor_cpu2) / 2
        rows.append(("full tree", a.chunks, find_cold if can_drop else None, find_warm,
                     None, g1))

        rest = a.chunks - g1["removed"]
        drop_caches()
        find_cold2, _ = time_find(base)
        drop_caches()
        g2 = run_gc(srv)
        find_warm2, _ = time_find(base)
        g3 = run_gc(srv)
        rows.append(("remaining, cold", rest, find_cold2 if can_drop else None, None, g2, None))
        rows.append(("remaining, warm", rest, None, find_warm2, None, g3))

        # Status throughput, idle and during a GC (of the remaining tree).
        script = os.path.join(srv.root, "bench.lua")
        with open(script, "w") as f:
            f.write(WRK_LUA % srv.token)
        idle = wrk_rps(srv, a.wrk_seconds, script)
        window = max(1, min(a.wrk_seconds, int(g3["wall"] * 0.8)))
        r = srv.post("%s/admin/datastore/%s/gc" % (API, STORE))
        upid = r.data["data"]
        busy = wrk_rps(srv, window, script)
        st = srv.get("%s/%s/status" % (TASKS, urllib.parse.quote(upid, safe=""))).data["data"]
        gc_ran_throughout = st["status"] == "running"
        while srv.get("%s/%s/status" % (TASKS, urllib.parse.quote(upid, safe=""))
                      ).data["data"]["status"] != "stopped":
            time.sleep(0.05)

        def f(v):
            return "%8.2f" % v if v is not None else "     n/a"

        print()
        print("bench/gc: %d chunks (%d referenced by %d snapshots), %s" % (
            a.chunks, referenced, snaps, "cold = caches dropped" if can_drop
            else "cold runs unavailable (cannot write /proc/sys/vm/drop_caches)"))
        print("%-18s %9s %9s %9s %9s %9s %9s %9s %9s %7s" % (
            "tree", "chunks", "find cold", "find warm", "gc cold", "gc warm", "phase 1",
            "phase 2", "removed", "gc/find"))
        for name, chunks, fc, fw, gcold, gwarm in rows:
            g = gwarm or gcold
            find = fw if fw is not None else fc
            ratio = (g["wall"] / find) if find else None
            print("%-18s %9d %s  %s  %s  %s  %s  %s %9d %7s" % (
                name, chunks, f(fc), f(fw), f(gcold["wall"] if gcold else None),
                f(gwarm["wall"] if gwarm else None), f(g["p1"]), f(g["p2"]), g["removed"],
                "%.2fx" % ratio if ratio else "n/a"))
        # For the cold pair, compare cold GC with cold find of the same tree.
        if can_drop:
            print("%-18s GC cold / find cold on the remaining tree: %.2fx"
                  % ("", g2["wall"] / find_cold2))
        print()
        print("status requests (wrk -t1 -c16): idle %.0f r/s, during GC %.0f r/s (%.0f%%)%s"
              % (idle, busy, 100 * busy / idle,
                 "" if gc_ran_throughout else " [GC ended before the window did]"))
        floor = find_warm + floor_s
        print("floor of the full-tree GC: walk (warm find) %.2f s + unlink of %d files "
              "(%d threads, SCHED_IDLE as GC; mean of %.2f s before and %.2f s after the GC) "
              "%.2f s = %.2f s; GC %.2f s = %.2fx the floor"
              % (find_warm, floor_n, a.gc_threads, floor_runs[0], floor_runs[1], floor_s,
                 floor, g1["wall"], g1["wall"] / floor))
        print("CPU: cairnd during the full-tree GC %.2f s (all threads, the task polling "
              "included); the unlink floor %.2f s (mean)"
              % (g1["cpu"], floor_cpu))
        print("GC with nothing to remove (warm) %.2f s = %.2fx the walk of the same tree"
              % (g3["wall"], g3["wall"] / find_warm2))
        print("targets: gc_vs_floor <= 1.3: %s; GC with nothing removed <= 3x the walk: %s; "
              "status during GC >= 80%% of idle: %s"
              % ("met" if g1["wall"] <= 1.3 * floor else "MISSED",
                 "met" if g3["wall"] <= 3 * find_warm2 else "MISSED",
                 "met" if busy >= 0.8 * idle else "MISSED"))
        print("gc_s=%.3f find_s=%.3f ratio=%.2f removed=%d kept=%d phase1_s=%.3f phase2_s=%.3f "
              "find_cold_s=%s gc_cold_s=%s status_idle_rps=%.0f status_gc_rps=%.0f "
              "status_ratio=%.2f walk_s=%.3f unlink_floor_s=%.3f gc_vs_floor=%.2f "
              "gc_nothing_s=%.3f walk_nothing_s=%.3f gc_nothing_vs_walk=%.2f gc_cpu_s=%.2f "
              "unlink_floor_cpu_s=%.2f" % (
                  g1["wall"], find_warm, g1["wall"] / find_warm, g1["removed"], g1["kept"],
                  g1["p1"], g1["p2"], "%.3f" % find_cold if can_drop else "na",
                  "%.3f" % g2["wall"] if can_drop else "na", idle, busy, busy / idle,
                  find_warm, floor_s, g1["wall"] / floor, g3["wall"], find_warm2,
                  g3["wall"] / find_warm2, g1["cpu"], floor_cpu))
    finally:
        srv.close()


if __name__ == "__main__":
    main()
