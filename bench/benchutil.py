"""Process helpers shared by the benchmark scripts (stdlib only)."""

import os
import signal
import socket
import subprocess
import sys
import time

try:  # loaded before any fork: dlopen in a forked child could deadlock
    import ctypes
    _LIBC = ctypes.CDLL(None, use_errno=True)
except (ImportError, OSError):
    _LIBC = None


def logger(tag):
    """A log function writing `[tag] msg` lines to stderr."""
    def log(msg):
        sys.stderr.write("[%s] %s\n" % (tag, msg))
        sys.stderr.flush()
    return log


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15.0):
    """True once 127.0.0.1:port accepts; False if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def cpu_ticks(pids):
    """utime+stime of one process or a list of them (all threads), in clock
    ticks; None if one is gone."""
    total = 0
    for pid in (pids if isinstance(pids, (list, tuple)) else [pids]):
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return None
    return total


def proc_status_kib(pid, key):
    """A kB field of /proc/PID/status (VmRSS, VmHWM), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def stop_proc(proc, timeout=15):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def child_setup(cpu=None):
    """A preexec_fn: the child dies with the script (even on SIGKILL) and, if
    asked, runs on one CPU."""
    def setup():
        if _LIBC is not None:
            _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return setup
