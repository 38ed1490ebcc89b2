#!/usr/bin/python3
"""bench/run_all: `make bench` -- every benchmark that needs no S3 server, one summary.

Runs bench/status.py, ingest.py, gc.py, backup.py and load.py one after the
other (each starts its own cairnd and peers on this machine), shows their
output as it comes, keeps each one's output in bench/results/<name>.log, and
writes bench/results/latest.json: every key=value figure of each benchmark's
last line, the machine (CPU model, cores, memory, kernel, load average before
and after) and the commit. The previous latest.json becomes previous.json, so

    bench/compare bench/results/previous.json bench/results/latest.json

shows what changed. bench/results/ is git-ignored. A benchmark that fails is
recorded with its exit code and the others still run; the exit code is then 1.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BENCHMARKS = ("status", "ingest", "gc", "backup", "load")


def machine():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": mem,
            "kernel": platform.release(), "host": platform.node()}


def commit():
    def git(*args):
        r = subprocess.run(["git"] + list(args), cwd=ROOT, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    c = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": c, "dirty": bool(dirty), "branch": git("rev-parse", "--abbrev-ref", "HEAD")}


def parse_value(v):
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def last_kv_line(text):
    """The figures: the last output line made only of key=value tokens."""
    for line in reversed(text.splitlines()):
        toks = line.split()
        if toks and all("=" in t and not t.startswith("=") for t in toks):
            return {k: parse_value(v) for k, v in (t.split("=", 1) for t in toks)}
    return {}


def run_one(name, a, logdir):
    cmd = [sys.executable, os.path.join(HERE, name + ".py"), "--bin", a.bin]
    cmd += a.extra.get(name, [])
    sys.stderr.write("== bench/%s: %s\n" % (name, " ".join(cmd)))
    sys.stderr.flush()
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    out = []
    with open(os.path.join(logdir, name + ".log"), "w") as log:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, bufsize=1)
        for line in p.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(line)
            out.append(line)
        rc = p.wait()
    return {"exit": rc, "seconds": round(time.monotonic() - t0, 1),
            "load_before": load0, "load_after": os.getloadavg()[0],
            "figures": last_kv_line("".join(out)) if rc == 0 else {}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--only", default=",".join(BENCHMARKS),
                    help="comma-separated subset of " + ",".join(BENCHMARKS))
    ap.add_argument("--out", default=os.path.join(HERE, "results"),
                    help="directory of latest.json and the logs")
    ap.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                    help="extra arguments for one benchmark, e.g. gc='--chunks 100000'")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    a.extra = {}
    for spec in a.args:
        name, _, rest = spec.partition("=")
        a.extra[name] = rest.split()
    names = [n for n in a.only.split(",") if n]
    for n in names:
        if n not in BENCHMARKS:
            sys.exit("bench/run_all: unknown benchmark %s" % n)
    os.makedirs(a.out, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    summary = {"started": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine(),
               "source": commit(), "benchmarks": {}}
    for n in names:
        summary["benchmarks"][n] = run_one(n, a, a.out)
    summary["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    latest = os.path.join(a.out, "latest.json")
    if os.path.exists(latest):
        shutil.copyfile(latest, os.path.join(a.out, "previous.json"))
    with open(latest + ".tmp", "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(latest + ".tmp", latest)
    failed = [n for n, r in summary["benchmarks"].items() if r["exit"] != 0]
    sys.stderr.write("== wrote %s%s\n" % (latest, "; FAILED: " + ", ".join(failed)
                                          if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
