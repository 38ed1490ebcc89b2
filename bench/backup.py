#!/usr/bin/python3
"""bench/backup: the `cairn` client against restic on the same data and machine.

A dataset of about --size-gib GiB (default 2) is generated: compressible text
files, random files, and duplicated files (copies of random ones). Then, each
timed from process start to exit:

  cairn   first backup, unchanged second backup, backup after a 1% change,
          full restore, and the same restore again; cairnd (from --bin) on
          loopback, plain HTTP;
  cairn-enc  the same with --keyfile (client-side AES-256-GCM), since restic
          always encrypts: this is the fair row against restic;
  restic  Debian's restic 0.14 backing up to Debian's `rclone serve restic` on
          loopback (plain HTTP), same five steps.

Metadata mode (issue #19): cairn's unchanged and 1%-changed backups above are
metadata-mode ones (the default once a snapshot with a catalog exists); the
data-mode unchanged backup (`--change-detection-mode data`) is timed too, a
10 MiB file is restored alone (`restore --include ... -`: time and chunks
fetched), and, unless --series-rounds 0, three series of ten 1%-change
snapshots on a fresh copy of the dataset, each in its own datastore, give the
stored size of metadata mode, data mode and pure content-defined chunking
(`--no-file-boundaries`, what the chunk boundaries around files cost), each
with its chunk count and the time of one more, unchanged, backup at the end.
--small-share F puts that share of the dataset in small files (1-256 KiB),
--series-only runs the series alone.

The second restore shows what the first one paid for state left by earlier
steps: cairnd writes chunks with O_DIRECT, so the first restore reads them
from the disk while it writes, where rclone left restic's packs in the page
cache; restic's own time swings with whether the VM has fresh pages to give.
Both restores are verified against the dataset.

Printed: a table of times, MB/s (dataset bytes / time), bytes stored (du of the
datastore / repository) and ratios, the client's peak RSS, and a final line of
key=value pairs (cairn_first_s, restic_first_s, cairn_restore_s,
restic_restore_s, cairn_enc_first_s, ...). The restore figures (`restore s`,
`*_restore_s`, `restore_speedup`) are medians of --restore-runs (5) rounds of
restores alternating between the tools after all backups, with the spread
(`*_restore_spread_s`) printed; `again s` is the second of the two restores
right after each tool's backups. Targets from issue #4: encrypted first backup
and full restore (ratio of the medians) at least 1.5x as fast as restic's;
client RSS at most 256 MiB.
"""

import argparse
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration"))
import cairn_harness as ch  # noqa: E402

STORE = "bench"
MiB = 1 << 20
TEN_MIB = os.path.join("random", "ten-mib.bin")
WORDS = (b"backup chunk index store the of snapshot datastore verify garbage collection "
         b"namespace error ok size digest sha256 request response client server upload "
         b"restore 0x1f2e 42 1337 /var/lib/data INFO WARN debug\n").split(b" ")


def make_small_files(root, size, seed):
    """About `size` bytes of small files (1-256 KiB, half text-like, half
    random) in directories of 100, below root/small."""
    rnd = random.Random(seed)
    pool = b" ".join(rnd.choices(WORDS, k=(4 * MiB) // 6))[:4 * MiB]
    i = 0
    while size > 0:
        d = os.path.join(root, "small", "s%03d" % (i // 100))
        if i % 100 == 0:
            os.makedirs(d)
        n = min(size, rnd.randint(1, 256) * 1024)
        if i % 2:
            off = rnd.randrange(0, len(pool) - n)
            data = b"%d %s\n" % (i, rnd.randbytes(12).hex().encode()) + pool[off:off + n]
            data = data[:n]
        else:
            data = rnd.randbytes(n)
        with open(os.path.join(d, "f%05d.dat" % i), "wb") as f:
            f.write(data)
        size -= n
        i += 1


def make_dataset(root, size, seed=1, small_share=0.0):
    """About `size` bytes: 35% text, 40% random, 25% duplicates of random files
    (of what --small-share leaves; that share is small files)."""
    rnd = random.Random(seed)
    small = int(size * small_share)
    size -= small
    if small > 0:
        make_small_files(root, small, seed + 1000)
    os.makedirs(os.path.join(root, "text"))
    os.makedirs(os.path.join(root, "random"))
    os.makedirs(os.path.join(root, "dups"))
    pool = b" ".join(rnd.choices(WORDS, k=(16 * MiB) // 6))[:16 * MiB]
    text_total, rand_total = int(size * 0.35), int(size * 0.40)
    i = 0
    while text_total > 0:
        n = min(text_total, rnd.randint(1, 12) * MiB)
        parts = []
        left = n
        while left > 0:
            # pool slices with a unique line every 64 KiB: compressible, but no
            # two files share a chunk
            off = rnd.randrange(0, len(pool) - 65536)
            piece = b"%d %d %s\n" % (i, left, rnd.randbytes(12).hex().encode()) + pool[off:off + 65536]
            parts.append(piece[:left])
            left -= len(parts[-1])
        with open(os.path.join(root, "text", "t%04d.log" % i), "wb") as f:
            f.write(b"".join(parts))
        text_total -= n
        i += 1
    rand_files = []
    i = 0
    while rand_total > 0:
        n = min(rand_total, rnd.randint(1, 32) * MiB)
        p = os.path.join(root, "random", "r%04d.bin" % i)
        with open(p, "wb") as f:
            f.write(rnd.randbytes(n))
        rand_files.append((p, n))
        rand_total -= n
        i += 1
    dup_total = size - int(size * 0.35) - int(size * 0.40)
    i = 0
    while dup_total > 0 and rand_files:
        p, n = rand_files[i % len(rand_files)]
        shutil.copyfile(p, os.path.join(root, "dups", "d%04d.bin" % i))
        dup_total -= n
        i += 1
    # the single-file restore's target
    with open(os.path.join(root, TEN_MIB), "wb") as f:
        f.write(rnd.randbytes(10 * MiB))


def change_one_percent(root, size, seed=2):
    """Overwrites 1% of the bytes in 1 MiB pieces spread over random files;
    with small files (--small-share), also 64 bytes in 1% of them."""
    rnd = random.Random(seed)
    files = []
    for d, _, names in os.walk(root):
        files += [os.path.join(d, n) for n in names]
    files.sort()
    small = [p for p in files if os.sep + "small" + os.sep in p]
    for p in rnd.sample(small, len(small) // 100):
        with open(p, "r+b") as f:
            f.seek(rnd.randrange(0, max(1, os.stat(p).st_size - 64)))
            f.write(rnd.randbytes(64))
    left = size // 100
    while left > 0:
        p = rnd.choice(files)
        st = os.stat(p)
        if st.st_size < MiB:
            continue
        with open(p, "r+b") as f:
            f.seek(rnd.randrange(0, st.st_size - MiB + 1))
            f.write(rnd.randbytes(MiB))
        left -= MiB


def tree_bytes(root):
    total = 0
    for d, _, names in os.walk(root):
        for n in names:
            total += os.lstat(os.path.join(d, n)).st_size
    return total


def du(path):
    total = 0
    for d, _, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(d, n)).st_blocks * 512
            except OSError:
                pass
    return total


def tree_digest(root):
    h = hashlib.sha256()
    for d, dirs, names in os.walk(root):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(d, n)
            h.update(os.path.relpath(p, root).encode())
            with open(p, "rb") as f:
                while True:
                    b = f.read(8 * MiB)
                    if not b:
                        break
                    h.update(b)
    return h.hexdigest()


def run(cmd, env, cwd=None):
    """Runs cmd; returns (seconds, stdout)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    dt = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError("%s exited %d:\n%s\n%s" % (" ".join(cmd), p.returncode,
                                                      out.decode(errors="replace")[-2000:],
                                                      err.decode(errors="replace")[-2000:]))
    return dt, out


def run_rss(cmd, env):
    """Runs a timed step; returns (seconds, the process's own peak RSS in MiB).
    Dirty pages of earlier steps are written back first, so no step pays for
    another's writes (cairnd's default sync level syncs the file system at
    the end of a backup, which would otherwise include them)."""
    os.sync()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.execve(cmd[0], cmd, env)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    dt = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("%s failed (%d)" % (" ".join(cmd), os.waitstatus_to_exitcode(status)))
    return dt, usage.ru_maxrss / 1024.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_cairn(args, tmp, data, size, enc, srv):
    b = os.path.abspath(args.bin)
    cairn = os.path.join(b, "cairn")
    authid, secret = srv.token.rsplit(":", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({"CAIRN_REPOSITORY": "%s@127.0.0.1:%d:%s" % (authid, srv.port, STORE),
                "CAIRN_SECRET": secret, "CAIRN_PLAIN_HTTP": "1",
                "CAIRN_ENCRYPTION_PASSWORD": "benchmark passphrase"})
    extra = []
    bid = "enc" if enc else "plain"
    if enc:
        key = os.path.join(tmp, "key.json")
        if not os.path.exists(key):
            subprocess.run([cairn, "key", "create", key, "--kdf", "none"], env=env, check=True,
                           capture_output=True)
        extra = ["--keyfile", key]
    spec = "root.didx:%s" % data
    res = {}
    rss = 0.0
    for step in ("first", "unchanged"):
        dt, r = run_rss([cairn, "backup", spec, "--backup-id", bid, "--no-progress"] + extra, env)
        res[step] = dt
        rss = max(rss, r)
    res["stored_after_first"] = du(srv.datastore_path(STORE))
    if not enc:
        # data mode reads everything again; then one file alone
        dt, _ = run_rss([cairn, "backup", spec, "--backup-id", bid, "--no-progress",
                         "--change-detection-mode", "data"], env)
        res["unchanged_data"] = dt
        _, out = run([cairn, "snapshots", "host/%s" % bid, "--output-format", "json"], env)
        import json
        t = max(s["backup-time"] for s in json.loads(out))
        t0 = time.monotonic()
        p = subprocess.run([cairn, "restore", "host/%s/%d" % (bid, t), "root", "-", "--include",
                            TEN_MIB, "--no-progress"], env=env, capture_output=True, check=True)
        res["single_s"] = time.monotonic() - t0
        with open(os.path.join(data, TEN_MIB), "rb") as f:
            res["single_ok"] = f.read() == p.stdout
        import re
        m = re.search(rb"(\d+) of (\d+) chunks fetched", p.stderr)
        res["single_chunks"] = int(m.group(1)) if m else -1
    return res, rss, env, extra, bid


def bench_series(args, tmp, srv, name, extra):
    """First backup of a fresh dataset, then ten (--series-rounds) 1% changes,
    each backed up; returns (stored bytes, seconds of the ten backups)."""
    cairn = os.path.join(os.path.abspath(args.bin), "cairn")
    store = "series%s" % name
    srv.admin("datastore", "create", store, srv.datastore_path(store), check=True)
    authid, secret = srv.token.rsplit(":", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({"CAIRN_REPOSITORY": "%s@127.0.0.1:%d:%s" % (authid, srv.port, store),
                "CAIRN_SECRET": secret, "CAIRN_PLAIN_HTTP": "1"})
    data = os.path.join(tmp, "series-data")
    shutil.rmtree(data, ignore_errors=True)
    make_dataset(data, int(args.size_gib * (1 << 30)), small_share=args.small_share)
    size = tree_bytes(data)
    cmd = [cairn, "backup", "root.didx:%s" % data, "--backup-id", "s", "--no-progress"] + extra
    run(cmd, env)
    total = 0.0
    for k in range(args.series_rounds):
        change_one_percent(data, size, seed=100 + k)
        dt, _ = run(cmd, env)
        total += dt
    # and one more with nothing changed: what a quiet night costs
    unchanged, _ = run(cmd, env)
    shutil.rmtree(data, ignore_errors=True)
    chunks = 0
    for _, _, names in os.walk(os.path.join(srv.datastore_path(store), ".chunks")):
        chunks += len(names)
    return du(srv.datastore_path(store)), total, chunks, unchanged


def cairn_change_and_restore(args, tmp, data, env, extra, bid, srv):
    cairn = os.path.join(os.path.abspath(args.bin), "cairn")
    res = {}
    dt, rss = run_rss([cairn, "backup", "root.didx:%s" % data, "--backup-id", bid,
                       "--no-progress"] + extra, env)
    res["change"] = dt
    _, out = run([cairn, "snapshots", "host/%s" % bid, "--output-format", "json"], env)
    import json
    t = max(s["backup-time"] for s in json.loads(out))
    target = os.path.join(tmp, "restore-cairn-%s" % bid)
    want = tree_digest(data)
    ok = True
    for step in ("restore", "restore2"):
        dt, r = run_rss([cairn, "restore", "host/%s/%d" % (bid, t), "root", target,
                         "--no-progress"] + extra, env)
        res[step] = dt
        rss = max(rss, r)
        ok = ok and tree_digest(target) == want
        shutil.rmtree(target, ignore_errors=True)
    res["restore_ok"] = ok
    return res, rss


def bench_restic(tmp, data):
    repo_dir = os.path.join(tmp, "restic-repo")
    os.mkdir(repo_dir)
    port = free_port()
    srv = subprocess.Popen(["rclone", "serve", "restic", "--addr", "127.0.0.1:%d" % port,
                            repo_dir], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        env = dict(os.environ)
        env.update({"RESTIC_REPOSITORY": "rest:http://127.0.0.1:%d/" % port,
                    "RESTIC_PASSWORD": "benchmark passphrase",
                    "RESTIC_CACHE_DIR": os.path.join(tmp, "restic-cache"),
                    "XDG_CACHE_HOME": os.path.join(tmp, "restic-cache")})
        run(["restic", "init"], env)
        res = {}
        rss = 0.0
        for step in ("first", "unchanged"):
            dt, r = run_rss([shutil.which("restic"), "backup", "--quiet", data], env)
            res[step] = dt
            rss = max(rss, r)
        res["stored_after_first"] = du(repo_dir)
        return res, rss, env, srv, repo_dir
    except BaseException:
        srv.kill()
        srv.wait()
        raise


def restic_change_and_restore(tmp, data, env):
    res = {}
    dt, rss = run_rss([shutil.which("restic"), "backup", "--quiet", data], env)
    res["change"] = dt
    target = os.path.join(tmp, "restore-restic")
    want = tree_digest(data)
    ok = True
    for step in ("restore", "restore2"):
        dt, r = run_rss([shutil.which("restic"), "restore", "latest", "--target", target], env)
        res[step] = dt
        rss = max(rss, r)
        # restic restores the absolute path below the target
        ok = ok and tree_digest(os.path.join(target, data.lstrip("/"))) == want
        shutil.rmtree(target, ignore_errors=True)
    res["restore_ok"] = ok
    return res, rss


def restore_rounds(args, tmp, data, cairn_steps, restic_env):
    """The restore figures (issue #20): --restore-runs rounds of full restores
    of the changed dataset, alternating tools (cairn, restic, cairn-enc; the
    order reversed every other round), each verified. cairn_steps maps a row
    name to (env, extra, backup id). Returns row name -> list of seconds."""
    import json
    cairn = os.path.join(os.path.abspath(args.bin), "cairn")
    want = tree_digest(data)
    runs = {name: [] for name in cairn_steps}
    if restic_env is not None:
        runs["restic"] = []
    times = {}
    for name, (env, _, bid) in cairn_steps.items():
        _, out = run([cairn, "snapshots", "host/%s" % bid, "--output-format", "json"], env)
        times[name] = max(s["backup-time"] for s in json.loads(out))
    order = [n for n in ("cairn", "restic", "cairn-enc") if n in runs]
    for k in range(args.restore_runs):
        for name in (order if k % 2 == 0 else order[::-1]):
            target = os.path.join(tmp, "restore-rounds-%s" % name)
            if name == "restic":
                dt, _ = run_rss([shutil.which("restic"), "restore", "latest", "--target",
                                 target], restic_env)
                got = os.path.join(target, data.lstrip("/"))
            else:
                env, extra, bid = cairn_steps[name]
                dt, _ = run_rss([cairn, "restore", "host/%s/%d" % (bid, times[name]), "root",
                                 target, "--no-progress"] + extra, env)
                got = target
            if tree_digest(got) != want:
                raise RuntimeError("restore round %d of %s does not match the data"
                                   % (k + 1, name))
            shutil.rmtree(target, ignore_errors=True)
            runs[name].append(dt)
    return runs


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--tmp", default=None, help="work directory (default: a new temp dir)")
    ap.add_argument("--skip-restic", action="store_true")
    ap.add_argument("--series-rounds", type=int, default=10,
                    help="1%%-change snapshots per stored-size series (0: no series)")
    ap.add_argument("--restore-runs", type=int, default=5,
                    help="alternating restore rounds; the restore figures are their medians")
    ap.add_argument("--small-share", type=float, default=0.0,
                    help="share of the dataset in small files (1-256 KiB); each change "
                         "also writes 64 bytes into 1%% of them")
    ap.add_argument("--series-only", action="store_true",
                    help="only the stored-size series (with --series-rounds)")
    args = ap.parse_args()
    os.environ["CAIRN_BIN_DIR"] = os.path.abspath(args.bin)
    for tool in ("restic", "rclone"):
        if not args.skip_restic and shutil.which(tool) is None:
            sys.exit("bench/backup: %s not installed (scripts/deps.sh bench)" % tool)

    tmp = tempfile.mkdtemp(prefix="cairn-bench-backup-", dir=args.tmp)
    size = int(args.size_gib * (1 << 30))
    rows = {}
    series = {}
    server_rss = None
    try:
        data_a = os.path.join(tmp, "data")
        if not args.series_only:
            print("generating %.1f GiB in %s ..." % (size / (1 << 30), data_a), flush=True)
            make_dataset(data_a, size, small_share=args.small_share)
            size = tree_bytes(data_a)
        # Both tools see the same bytes: generation and the change are seeded,
        # so restic gets the dataset regenerated and changed identically.
        srv = ch.Cairn(tls=False, log_level="info")
        try:
            if not args.series_only:
                srv.admin("datastore", "create", STORE, srv.datastore_path(STORE), check=True)
                plain, rss_p, env, extra, bid = bench_cairn(args, tmp, data_a, size, False, srv)
                stored_plain = plain["stored_after_first"]
                enc, rss_e, env_e, extra_e, bid_e = bench_cairn(args, tmp, data_a, size, True, srv)
                enc["stored_after_first"] -= stored_plain
                change_one_percent(data_a, size)
                more, r1 = cairn_change_and_restore(args, tmp, data_a, env, extra, bid, srv)
                plain.update(more)
                more, r2 = cairn_change_and_restore(args, tmp, data_a, env_e, extra_e, bid_e, srv)
                enc.update(more)
                rows["cairn"] = (plain, max(rss_p, r1))
                rows["cairn-enc"] = (enc, max(rss_e, r2))
                server_rss = srv.rss_kib()
                # restic on a fresh copy of the original dataset (cairnd stays up
                # for the alternating restore rounds)
                rclone, env_r = None, None
                try:
                    if not args.skip_restic:
                        shutil.rmtree(data_a)
                        make_dataset(data_a, int(args.size_gib * (1 << 30)),
                                     small_share=args.small_share)
                        r, rss_r, env_r, rclone, _ = bench_restic(tmp, data_a)
                        change_one_percent(data_a, size)
                        more, r3 = restic_change_and_restore(tmp, data_a, env_r)
                        r.update(more)
                        rows["restic"] = (r, max(rss_r, r3))
                    restore_runs = restore_rounds(
                        args, tmp, data_a, {"cairn": (env, extra, bid),
                                            "cairn-enc": (env_e, extra_e, bid_e)}, env_r)
                finally:
                    if rclone is not None:
                        rclone.send_signal(signal.SIGTERM)
                        rclone.wait()
                for name, runs in restore_runs.items():
                    if runs:
                        rows[name][0]["restore_first"] = rows[name][0]["restore"]
                        rows[name][0]["restore"] = median(runs)
                        rows[name][0]["restore_runs"] = runs
            if args.series_rounds > 0:
                shutil.rmtree(data_a, ignore_errors=True)
                for name, extra_args in (("meta", []),
                                         ("data", ["--change-detection-mode", "data"]),
                                         ("nocut", ["--no-file-boundaries"])):
                    series[name] = bench_series(args, tmp, srv, name, extra_args)
        finally:
            srv.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    mb = size / 1e6
    print()
    print("dataset: %.2f GiB (%s35%% text, 40%% random, 25%% duplicates); 2 cores, loopback, "
          "plain HTTP" % (size / (1 << 30), "%.0f%% small files, then " % (args.small_share * 100)
                          if args.small_share else ""))
    print("%-10s %9s %9s %9s %9s %9s %9s %9s %12s %9s %8s" % (
        "tool", "first s", "MB/s", "unchg s", "1% s", "restore s", "MB/s", "again s",
        "stored MiB", "client MiB", "verified"))
    for name, (r, rss) in rows.items():
        print("%-10s %9.2f %9.0f %9.2f %9.2f %9.2f %9.0f %9.2f %12.0f %9.0f %8s" % (
            name, r["first"], mb / r["first"], r["unchanged"], r["change"], r["restore"],
            mb / r["restore"], r["restore2"], r["stored_after_first"] / MiB, rss,
            "yes" if r.get("restore_ok") else "NO"))
    print("restore s: median of %d alternating rounds (cairn, restic, cairn-enc, then reversed); "
          "runs and spread (max - min):" % args.restore_runs)
    for name, (r, _) in rows.items():
        runs = r.get("restore_runs", [])
        if runs:
            print("  %-10s median %.2f s, spread %.2f s (%.2f-%.2f), runs %s; first restore "
                  "after the backups %.2f s" % (
                      name, median(runs), max(runs) - min(runs), min(runs), max(runs),
                      " ".join("%.2f" % x for x in runs), r["restore_first"]))
    kv = {}
    for name, key in (("cairn", "cairn"), ("cairn-enc", "cairn_enc"), ("restic", "restic")):
        if name in rows:
            r, rss = rows[name]
            kv["%s_first_s" % key] = "%.2f" % r["first"]
            kv["%s_unchanged_s" % key] = "%.2f" % r["unchanged"]
            kv["%s_change_s" % key] = "%.2f" % r["change"]
            kv["%s_restore_s" % key] = "%.2f" % r["restore"]
            if r.get("restore_runs"):
                runs = r["restore_runs"]
                kv["%s_restore_spread_s" % key] = "%.2f" % (max(runs) - min(runs))
            kv["%s_restore_again_s" % key] = "%.2f" % r["restore2"]
            kv["%s_stored_mib" % key] = "%.0f" % (r["stored_after_first"] / MiB)
            kv["%s_rss_mib" % key] = "%.0f" % rss
    if "restic" in rows:
        rr = rows["restic"][0]
        ce = rows["cairn-enc"][0]
        kv["enc_first_speedup"] = "%.2f" % (rr["first"] / ce["first"])
        kv["restore_speedup"] = "%.2f" % (rr["restore"] / rows["cairn"][0]["restore"])
        kv["enc_restore_speedup"] = "%.2f" % (rr["restore"] / ce["restore"])
        kv["restore_again_speedup"] = "%.2f" % (rr["restore2"] / rows["cairn"][0]["restore2"])
        kv["enc_restore_again_speedup"] = "%.2f" % (rr["restore2"] / ce["restore2"])
        print()
        print("encrypted first backup: %sx restic's speed (target >= 1.5); full restore: %sx "
              "(encrypted %sx; target >= 1.5), again %sx (encrypted %sx); client peak RSS %s "
              "MiB (target <= 256)" % (
                  kv["enc_first_speedup"], kv["restore_speedup"], kv["enc_restore_speedup"],
                  kv["restore_again_speedup"], kv["enc_restore_again_speedup"],
                  max(kv["cairn_rss_mib"], kv["cairn_enc_rss_mib"], key=float)))
    if "cairn" in rows:
        r = rows["cairn"][0]
        kv["cairn_meta_unchanged_s"] = "%.2f" % r["unchanged"]
        kv["cairn_data_unchanged_s"] = "%.2f" % r["unchanged_data"]
        kv["cairn_meta_change_s"] = "%.2f" % r["change"]
        kv["single_file_restore_s"] = "%.3f" % r["single_s"]
        kv["single_file_chunks"] = str(r["single_chunks"])
        print()
        print("metadata mode: unchanged %.2f s (data mode %.2f s%s), 1%% change %.2f s%s; "
              "10 MiB file alone: %.3f s, %d chunks (targets: <= 5 chunks, < 0.2 s)%s" % (
                  r["unchanged"], r["unchanged_data"],
                  ", restic %.2f s" % rows["restic"][0]["unchanged"] if "restic" in rows else "",
                  r["change"],
                  " (restic %.2f s)" % rows["restic"][0]["change"] if "restic" in rows else "",
                  r["single_s"], r["single_chunks"], "" if r["single_ok"] else " WRONG BYTES"))
    if series:
        for name, (stored, secs, chunks, unchanged) in series.items():
            kv["series_%s_stored_mib" % name] = "%.0f" % (stored / MiB)
            kv["series_%s_backups_s" % name] = "%.1f" % secs
            kv["series_%s_chunks" % name] = str(chunks)
            kv["series_%s_unchanged_s" % name] = "%.2f" % unchanged
        if "meta" in series and "data" in series:
            kv["series_meta_vs_data"] = "%.3f" % (series["meta"][0] / series["data"][0])
        if "data" in series and "nocut" in series:
            kv["series_cut_cost"] = "%.3f" % (series["data"][0] / series["nocut"][0])
        print("first + %d snapshots of 1%% change: stored %s" % (
            args.series_rounds, ", ".join("%s %.0f MiB in %d chunks (%.1f s of backups, "
                                          "%.2f s unchanged)"
                                          % (n, st / MiB, nc, sec, un)
                                          for n, (st, sec, nc, un) in series.items())))
    if server_rss:
        kv["cairnd_rss_mib"] = "%.0f" % (server_rss / 1024)
    print(" ".join("%s=%s" % kv_ for kv_ in kv.items()))
    bad = [n for n, (r, _) in rows.items() if not r.get("restore_ok")]
    if "cairn" in rows and not rows["cairn"][0].get("single_ok"):
        bad.append("cairn single-file")
    if bad:
        sys.exit("bench/backup: restore mismatch for %s" % ", ".join(bad))


if __name__ == "__main__":
    main()
