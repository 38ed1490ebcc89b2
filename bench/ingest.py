#!/usr/bin/python3
"""bench/ingest: chunk upload throughput of cairnd's backup protocol (issue #3).

Distinct 4 MiB chunks, random and compressible, uploaded by 1, 4 and 16
keep-alive connections into one backup session, at sync levels none, file
and filesystem, over HTTP and TLS; each cell ends with index, manifest and
finish (syncfs at `filesystem`). In the same run: nginx (Debian) accepting the
same POSTs into nothing, a plain write loop of the same bytes to the same
disk, cairnd's peak RSS while 16 connections upload 16 MiB chunks, and the
sync-level table of PBS's patch: one 2 GiB backup at none, filesystem, file.

The load generator is this script: one thread and one raw socket per
connection; a chunk is a fixed prefix plus an 8-byte counter, so its digest
(a copied SHA-256 state) and CRC (zlib.crc32 continued) cost microseconds, and
its body goes out by sendmsg() straight from the shared prefix buffer. See
bench/README.md. The last line is key=value pairs for scripts and CI logs.
"""

import argparse
import hashlib
import itertools
import json
import os
import random
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration"))
import pbs_proto as pp  # noqa: E402
from benchutil import (children, child_setup, cpu_ticks, free_port,  # noqa: E402
                       logger, proc_status_kib, stop_proc, wait_port)

log = logger("ingest")

MiB = 1024 * 1024
MB = 1e6
STORE = "bench"


# ---- chunks -------------------------------------------------------------------

def compressible_bytes(n, seed):
    """Log-like text; zstd -1 makes it about 3-4 times smaller."""
    rnd = random.Random(seed)
    words = [b"backup", b"chunk", b"index", b"store", b"finish", b"upload", b"verify",
             b"session", b"digest", b"group", b"snapshot", b"namespace"]
    out = bytearray()
    t = 1700000000
    while len(out) < n:
        t += rnd.randrange(3)
        out += b"%d host%02d cairnd[%d]: %s %s %s id=%08x size=%d\n" % (
            t, rnd.randrange(16), rnd.randrange(1000, 1100), rnd.choice(words),
            rnd.choice(words), rnd.choice(words), rnd.getrandbits(32), rnd.randrange(1 << 22))
    return bytes(out[:n])


class ChunkSource:
    """Distinct chunks of `size` bytes: payload = prefix (size - 8) + u64 counter.

    random: the blob is plain, its body = header + prefix + counter.
    compressible: the blob is zstd, its payload two frames, zstd(prefix) made
    once and zstd(counter) per chunk (a DataBlob payload may hold several
    frames; PBS decodes them with decode_all, cairnd streams them).
    The digest is SHA-256(prefix + counter) from a copied hash state.
    """

    def __init__(self, kind, size, seed):
        self.kind, self.size = kind, size
        if kind == "random":
            prefix = os.urandom(size - 8)
            self.wire = memoryview(prefix)
            self.magic = pp.MAGIC_PLAIN
        else:
            prefix = compressible_bytes(size - 8, seed)
            self.wire = memoryview(pp.ZSTD.compress(prefix, 1))
            self.magic = pp.MAGIC_ZSTD
        self.hash0 = hashlib.sha256(prefix)
        self.crc0 = zlib.crc32(self.wire)
        self.counter = itertools.count()  # next() is atomic under the GIL
        tail = self.tail(b"\0" * 8)
        self.encoded = 12 + len(self.wire) + len(tail)

    def tail(self, ctr):
        return ctr if self.kind == "random" else pp.ZSTD.compress(ctr, 1)

    def next(self):
        """(digest hex, plaintext size, [blob header, prefix view, tail])."""
        ctr = struct.pack("<Q", next(self.counter))
        h = self.hash0.copy()
        h.update(ctr)
        tail = self.tail(ctr)
        crc = zlib.crc32(tail, self.crc0) & 0xFFFFFFFF
        return h.hexdigest(), self.size, [self.magic + struct.pack("<I", crc), self.wire, tail]

    def verify_once(self):
        """Checks the construction against pbs_proto's own decoder."""
        digest, size, parts = self.next()
        data = pp.blob_decode(b"".join(bytes(p) for p in parts))
        assert len(data) == size and pp.sha256_hex(data) == digest


# ---- the hashing floor -----------------------------------------------------------

def sha256_cpu_rate(nbytes=1 << 30, block=4 * MiB):
    """Bytes per CPU-second of SHA-256 on one core, through OpenSSL's EVP (what
    cairnd's core_sha256 calls; Python's hashlib is OpenSSL too), hashing 4 MiB
    blocks as cairnd hashes a chunk. CPU time of this thread, not wall time,
    so other work on the machine changes the figure little."""
    buf = os.urandom(block)
    hashlib.sha256(buf).digest()  # warm: pages, code
    n = max(1, nbytes // block)
    t0 = time.thread_time()
    for _ in range(n):
        hashlib.sha256(buf).digest()
    cpu = time.thread_time() - t0
    return n * block / max(cpu, 1e-9)


# ---- a raw HTTP/1.1 client ------------------------------------------------------

class Conn:
    """One keep-alive connection; requests are written with sendmsg (plain) or
    a few SSL writes (TLS) straight from the caller's buffers."""

    def __init__(self, port, tls):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(None)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        self.sock, self.tls, self.buf = s, tls, b""

    def send(self, parts):
        if self.tls:
            for p in parts:
                self.sock.sendall(p)
            return
        views = [memoryview(p) for p in parts]
        while views:
            n = self.sock.sendmsg(views)
            while n and views:
                if n >= len(views[0]):
                    n -= len(views[0])
                    views.pop(0)
                else:
                    views[0] = views[0][n:]
                    n = 0

    def response(self):
        """(status, body) of one Content-Length framed response."""
        while b"\r\n\r\n" not in self.buf:
            b = self.sock.recv(65536)
            if not b:
                raise ConnectionError("server closed the connection")
            self.buf += b
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v)
        while len(rest) < length:
            b = self.sock.recv(65536)
            if not b:
                raise ConnectionError("server closed the connection")
            rest += b
        self.buf = rest[length:]
        return status, rest[:length]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def upload(port, tls, token, path_fmt, source, conns, seconds=None, total=None,
           check=True):
    """Uploads distinct chunks over `conns` connections for `seconds`, or until
    `total` chunks are done. path_fmt % (digest, size, encoded size) is the
    request target. Returns the counts, the window and the digests (in
    completion order, with sizes)."""
    head_fmt = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: PBSAPIToken=%s\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n")
    barrier = threading.Barrier(conns + 1)
    done = [[] for _ in range(conns)]
    errors = []
    budget = itertools.count()
    state = {"stop": False, "t0": 0.0, "deadline": None}

    def worker(k):
        try:
            c = Conn(port, tls)
        except OSError as e:
            errors.append("connect: %s" % e)
            barrier.abort()
            return
        try:
            barrier.wait()
            while not state["stop"]:
                if total is not None and next(budget) >= total:
                    break
                if state["deadline"] is not None and time.monotonic() >= state["deadline"]:
                    break
                digest, size, parts = source.next()
                enc = sum(len(p) for p in parts)
                head = (head_fmt % (path_fmt % (digest, size, enc), token, enc)).encode()
                c.send([head] + parts)
                status, body = c.response()
                if status != 200 or (check and digest.encode() not in body):
                    errors.append("%d %r" % (status, body[:200]))
                    state["stop"] = True
                    break
                done[k].append((digest, size, enc))
        except (OSError, ConnectionError, ValueError, threading.BrokenBarrierError) as e:
            errors.append("%s: %s" % (type(e).__name__, e))
            state["stop"] = True
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(conns)]
    for t in threads:
        t.start()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        barrier.wait(60)
    except threading.BrokenBarrierError:
        pass
    t0 = time.monotonic()
    if seconds is not None:
        state["deadline"] = t0 + seconds
    for t in threads:
        t.join()
    t1 = time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    items = [x for d in done for x in d]
    return {
        "secs": t1 - t0, "chunks": len(items), "data": sum(x[1] for x in items),
        "wire": sum(x[2] for x in items), "items": items, "errors": errors,
        "gen_cpu": ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime))
        / max(t1 - t0, 1e-9) * 100,
        "gen_usr": (ru1.ru_utime - ru0.ru_utime) / max(t1 - t0, 1e-9) * 100,
    }


# ---- servers ------------------------------------------------------------------

NGINX_CONF = """
# Generated by bench/ingest.py: POSTs accepted into nothing.
worker_processes %(workers)d;
daemon off;
master_process on;
pid %(pid)s;
error_log stderr error;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_max_body_size 20m;
  client_body_buffer_size 20m;
  client_body_temp_path %(tmp)s/body;
  proxy_temp_path %(tmp)s/proxy;
  fastcgi_temp_path %(tmp)s/fastcgi;
  uwsgi_temp_path %(tmp)s/uwsgi;
  scgi_temp_path %(tmp)s/scgi;
  default_type application/json;
  ssl_protocols %(protocols)s;
  %(ciphers)s
  ssl_session_cache off;
  server {
    listen 127.0.0.1:%(http_port)d;
    listen 127.0.0.1:%(tls_port)d ssl;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    # discard: nginx reads the body and throws it away as it arrives.
    location /discard/ { return 200 '{"data":"ok"}'; }
    # buffer: the whole body is read into one memory buffer first (as cairnd
    # does), then the proxy finds no upstream and the error page says 200.
    location /buffer/ {
      client_body_in_single_buffer on;
      proxy_pass http://127.0.0.1:%(dead_port)d;
      proxy_connect_timeout 1s;
      proxy_intercept_errors on;
      error_page 502 =200 @ok;
    }
    location @ok { return 200 '{"data":"ok"}'; }
  }
}
"""


class Bench:
    def __init__(self, a):
        self.a = a
        self.bin = os.path.abspath(a.bin)
        self.root = tempfile.mkdtemp(prefix="cairn-ingest-", dir=a.dir)
        os.chmod(self.root, 0o755)
        self.config_dir = os.path.join(self.root, "config")
        self.run_dir = os.path.join(self.root, "run")
        self.data_dir = os.path.join(self.root, "data")
        for d in (self.config_dir, self.run_dir, self.data_dir):
            os.mkdir(d)
        self.ds = os.path.join(self.data_dir, STORE)
        self.procs = []
        self.token = None
        self.cipher = None
        self.cairnd = None
        self.backup_time = 1700000000
        self.sync_level = None
        self.load0 = os.getloadavg()[0]
        self.sha_rates = []

    # -- cairnd --

    def admin(self, *args):
        subprocess.run([os.path.join(self.bin, "cairn-admin"), "--config-dir",
                        self.config_dir, "--run-dir", self.run_dir] + list(args),
                       check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def start_cairnd(self, tls):
        port = free_port()
        cmd = [os.path.join(self.bin, "cairnd"), "--config-dir", self.config_dir,
               "--run-dir", self.run_dir, "--log-level", "warn",
               "--listen", "127.0.0.1:%d" % port]
        if not tls:
            cmd.append("--no-tls")
        errlog = open(os.path.join(self.root, "cairnd-%d.log" % port), "w+")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errlog,
                                stderr=subprocess.STDOUT, preexec_fn=child_setup())
        self.procs.append(proc)
        if not wait_port(port, proc):
            errlog.seek(0)
            stop_proc(proc)
            raise RuntimeError("cairnd did not start:\n" + errlog.read()[-3000:])
        if self.token is None:
            with open(os.path.join(self.config_dir, "root.token")) as f:
                self.token = f.read().strip()
        self.cairnd = {"proc": proc, "port": port, "tls": tls, "log": errlog}
        if tls and self.cipher is None:
            c = Conn(port, True)
            self.cipher = c.sock.cipher()
            c.close()
        return self.cairnd

    def stop_cairnd(self):
        if self.cairnd:
            stop_proc(self.cairnd["proc"])
            code = self.cairnd["proc"].returncode
            if code not in (0, None):
                log("cairnd exited with %s" % code)
            self.cairnd = None

    def set_sync(self, level):
        if level != self.sync_level:
            self.admin("datastore", "update", STORE, "--tuning", "sync-level=%s" % level)
            self.sync_level = level
            time.sleep(0.3)  # cairnd notices the new datastore.cfg

    def endpoint(self):
        return pp.Endpoint("127.0.0.1", self.cairnd["port"], self.token, self.cairnd["tls"],
                           timeout=600)

    def session(self, name):
        self.backup_time += 1
        return pp.BackupSession(self.endpoint(), STORE, "host", name, self.backup_time).open()

    def wipe(self):
        """Removes chunk files (prefix directories stay) and snapshots, then
        syncs, so no cell pays for the previous one's writeback."""
        chunks = os.path.join(self.ds, ".chunks")
        with os.scandir(chunks) as it:
            for d in it:
                if d.is_dir():
                    for f in os.scandir(d.path):
                        os.unlink(f.path)
        host = os.path.join(self.ds, "host")
        if os.path.isdir(host):
            shutil.rmtree(host)
        os.sync()

    def cairn_cell(self, kind, conns, size=4 * MiB, seconds=None, total=None, name="cell"):
        """One backup: chunks over `conns` connections, then index, manifest,
        finish. Returns the measurements."""
        source = ChunkSource(kind, size, seed=conns)
        b = self.session(name)
        wid = b.dynamic_index("bench.didx")
        path = b.path("dynamic_chunk") + "?wid=%d&digest=%%s&size=%%d&encoded-size=%%d" % wid
        pids = [self.cairnd["proc"].pid]
        cpu0 = cpu_ticks(pids)
        res = upload(self.cairnd["port"], self.cairnd["tls"], self.token, path, source, conns,
                     seconds=seconds, total=total)
        cpu1 = cpu_ticks(pids)
        t = time.monotonic()
        if res["errors"]:
            b.abort()
            raise RuntimeError("upload errors: %s" % res["errors"][:3])
        ends, digests, pos = [], [], 0
        batch_d, batch_o = [], []
        for digest, sz, _ in res["items"]:
            batch_d.append(digest)
            batch_o.append(pos)
            pos += sz
            ends.append(pos)
            digests.append(digest)
            if len(batch_d) == 4096:
                b.append(wid, batch_d, batch_o)
                batch_d, batch_o = [], []
        if batch_d:
            b.append(wid, batch_d, batch_o)
        csum = pp.didx_csum(ends, digests)
        b.close_index(wid, len(digests), pos, csum)
        b.files.append({"filename": "bench.didx", "crypt-mode": "none", "size": pos,
                        "csum": csum})
        b.upload_manifest()
        b.finish()
        res["finish_s"] = time.monotonic() - t
        hz = os.sysconf("SC_CLK_TCK")
        res["srv_cpu_s"] = ((cpu1 - cpu0) / hz
                            if cpu0 is not None and cpu1 is not None else None)
        res["srv_cpu"] = (res["srv_cpu_s"] / res["secs"] * 100
                          if res["srv_cpu_s"] is not None else None)
        return res

    # -- nginx --

    def start_nginx(self):
        prefix = os.path.join(self.root, "nginx")
        tmp = os.path.join(prefix, "tmp")
        os.makedirs(tmp)
        os.chmod(prefix, 0o755)
        cert, key = self.nginx_cert(prefix)
        http_port, tls_port, dead_port = free_port(), free_port(), free_port()
        proto, suite = "TLSv1.2", None
        if self.cipher:
            suite, proto = self.cipher[0], self.cipher[1]
        conf = NGINX_CONF % {
            "workers": self.a.nginx_workers, "pid": os.path.join(prefix, "nginx.pid"),
            "tmp": tmp, "http_port": http_port, "tls_port": tls_port,
            "dead_port": dead_port, "cert": cert, "key": key, "protocols": proto,
            "ciphers": ("ssl_ciphers %s;" % suite) if suite and proto != "TLSv1.3" else "",
        }
        path = os.path.join(prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        errlog = open(os.path.join(prefix, "error.log"), "w+")
        proc = subprocess.Popen([self.a.nginx, "-p", prefix, "-c", path],
                                stdin=subprocess.DEVNULL, stdout=errlog,
                                stderr=subprocess.STDOUT, preexec_fn=child_setup())
        self.procs.append(proc)
        if not (wait_port(http_port, proc) and wait_port(tls_port, proc)):
            errlog.seek(0)
            stop_proc(proc)
            raise RuntimeError("nginx did not start:\n" + errlog.read()[-3000:])
        workers = []
        for _ in range(50):
            workers = children(proc.pid)
            if len(workers) >= self.a.nginx_workers:
                break
            time.sleep(0.05)
        return {"proc": proc, "http": http_port, "tls": tls_port,
                "workers": workers or [proc.pid], "tmp": tmp, "log": errlog}

    def nginx_cert(self, prefix):
        """cairnd's own key and certificate (same key exchange), or a fresh P-256
        pair when cairnd never ran with TLS here."""
        cert = os.path.join(self.config_dir, "proxy.pem")
        key = os.path.join(self.config_dir, "proxy.key")
        if os.path.exists(cert) and os.path.exists(key):
            return cert, key
        cert, key = os.path.join(prefix, "cert.pem"), os.path.join(prefix, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        return cert, key

    def nginx_cell(self, ngx, tls, variant, kind, conns, seconds):
        source = ChunkSource(kind, 4 * MiB, seed=conns)
        path = "/%s/api2/json/backup/x/dynamic_chunk?wid=1&digest=%%s&size=%%d" \
               "&encoded-size=%%d" % variant
        cpu0 = cpu_ticks(ngx["workers"])
        res = upload(ngx["tls"] if tls else ngx["http"], tls, self.token, path, source, conns,
                     seconds=seconds, check=False)
        cpu1 = cpu_ticks(ngx["workers"])
        if res["errors"]:
            raise RuntimeError("nginx %s: %s" % (variant, res["errors"][:3]))
        hz = os.sysconf("SC_CLK_TCK")
        res["srv_cpu"] = ((cpu1 - cpu0) / hz / res["secs"] * 100
                          if cpu0 is not None and cpu1 is not None else None)
        res["finish_s"] = None
        temp = sum(len(fs) for _, _, fs in os.walk(ngx["tmp"]))
        if temp:
            log("nginx wrote %d temp files: the buffer variant is not memory-only" % temp)
        return res

    # -- the disk --

    def disk_loop(self, volume):
        """The same blob bytes written by a plain loop into one file on the
        datastore's disk: page-cache rate, and the rate including fdatasync."""
        source = ChunkSource("random", 4 * MiB, seed=99)
        n = max(1, volume // (4 * MiB))
        path = os.path.join(self.ds, "disk-loop.bin")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            t0 = time.monotonic()
            written = 0
            for _ in range(n):
                _, _, parts = source.next()
                written += os.writev(fd, parts)
            t1 = time.monotonic()
            os.fdatasync(fd)
            t2 = time.monotonic()
        finally:
            os.close(fd)
            os.unlink(path)
        # One file per chunk with fsync, as sync-level=file does.
        dirp = os.path.join(self.ds, "disk-loop")
        os.mkdir(dirp)
        t3 = time.monotonic()
        files = 0
        while time.monotonic() - t3 < self.a.seconds and files < n:
            _, _, parts = source.next()
            p = os.path.join(dirp, "f%06d" % files)
            fd = os.open(p + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.writev(fd, parts)
            os.fsync(fd)
            os.close(fd)
            os.rename(p + ".tmp", p)
            files += 1
        dfd = os.open(dirp, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        t4 = time.monotonic()
        shutil.rmtree(dirp)
        os.sync()
        return {"bytes": written, "cache_mbps": written / MB / (t1 - t0),
                "sync_mbps": written / MB / (t2 - t0),
                "file_fsync_mbps": files * (4 * MiB + 12) / MB / (t4 - t3)}

    # -- memory --

    def rss_cell(self):
        """A fresh cairnd; 16 connections upload 16 MiB chunks; VmRSS sampled."""
        self.start_cairnd(tls=False)
        self.set_sync("none")
        pid = self.cairnd["proc"].pid
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                v = proc_status_kib(pid, "VmRSS")
                if v:
                    samples.append(v)
                time.sleep(0.02)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        try:
            res = self.cairn_cell("random", 16, size=16 * MiB, seconds=self.a.seconds,
                                  name="rss")
        finally:
            stop.set()
            th.join()
        hwm = proc_status_kib(pid, "VmHWM")
        self.stop_cairnd()
        self.wipe()
        res["rss_mib"] = max(samples) / 1024 if samples else None
        res["hwm_mib"] = hwm / 1024 if hwm else None
        return res

    # -- the run --

    def run(self):
        a = self.a
        for tool in ("cairnd", "cairn-admin"):
            if not os.access(os.path.join(self.bin, tool), os.X_OK):
                raise RuntimeError("%s is missing in %s" % (tool, self.bin))
        for kind in a.kinds:
            ChunkSource(kind, 64 * 1024, seed=1).verify_once()
        self.admin("datastore", "create", STORE, self.ds)
        rows = []

        # cairnd: transports x sync levels x kinds x connections.
        for tls in a.transports:
            self.start_cairnd(tls == "tls")
            try:
                for level in (a.sync if "cairn" in a.targets else ()):
                    self.set_sync(level)
                    for kind in a.kinds:
                        for conns in a.conns:
                            res = self.cairn_cell(kind, conns, seconds=a.seconds,
                                                  name="c-%s-%s-%d" % (level, kind, conns))
                            rows.append(dict(res, target="cairn", transport=tls, kind=kind,
                                             sync=level, conns=conns))
                            self.show(rows[-1])
                            self.wipe()
            finally:
                self.stop_cairnd()

        # nginx: the same POSTs into nothing.
        ngx = None
        if os.access(a.nginx, os.X_OK) and "nginx" in a.targets:
            ngx = self.start_nginx()
            for tls in a.transports:
                for variant in ("discard", "buffer"):
                    # nginx's work is per wire byte: random chunks say it all.
                    for kind in ("random",):
                        for conns in a.conns:
                            res = self.nginx_cell(ngx, tls == "tls", variant, kind, conns,
                                                  a.seconds)
                            rows.append(dict(res, target="nginx-" + variant,
                                             transport=tls, kind=kind, sync="-",
                                             conns=conns))
                            self.show(rows[-1])
        else:
            log("nginx not found or not selected: no baseline")

        # The headline pair (random, 16 connections, HTTP, sync none; nginx
        # discarding) once more in alternating slices, so both see the same
        # background load on a shared machine.
        head = {"cairn": [], "nginx": []}
        # The hashing floor, measured right before and after the headline
        # slices (the lower CPU cost counts: load only ever adds to it).
        self.sha_rates.append(sha256_cpu_rate(a.sha256_mib * MiB))
        if ngx is not None and "cairn" in a.targets and a.headline_slices > 0:
            self.start_cairnd(tls=False)
            try:
                self.set_sync("none")
                for i in range(a.headline_slices):
                    r = self.cairn_cell("random", 16, seconds=a.seconds, name="head%d" % i)
                    head["cairn"].append(r)
                    self.wipe()
                    head["nginx"].append(self.nginx_cell(ngx, False, "discard", "random", 16,
                                                         a.seconds))
                    log("headline slice %d: cairn %.0f MB/s, nginx %.0f MB/s" % (
                        i + 1, r["data"] / MB / r["secs"],
                        head["nginx"][-1]["data"] / MB / head["nginx"][-1]["secs"]))
            finally:
                self.stop_cairnd()
        self.sha_rates.append(sha256_cpu_rate(a.sha256_mib * MiB))
        log("SHA-256 (OpenSSL, one core): %s MB per CPU-second"
            % " / ".join("%.0f" % (r / MB) for r in self.sha_rates))
        if ngx is not None:
            stop_proc(ngx["proc"])

        # The disk: the volume of the largest cairn cell, at least 1 GiB.
        vol = max([r["wire"] for r in rows if r["target"] == "cairn"] + [1 << 30])
        disk = self.disk_loop(min(vol, 8 << 30))
        log("disk loop: %.0f MB/s to the page cache, %.0f MB/s with fdatasync, "
            "%.0f MB/s one fsynced file per chunk" % (disk["cache_mbps"], disk["sync_mbps"],
                                                      disk["file_fsync_mbps"]))

        # Memory with 16 MiB chunks.
        rss = self.rss_cell()
        log("rss: %.1f MiB peak VmRSS (VmHWM %.1f MiB), 16 x 16 MiB chunks at %.0f MB/s"
            % (rss["rss_mib"] or 0, rss["hwm_mib"] or 0, rss["data"] / MB / rss["secs"]))

        # The sync-level table: one backup of backup_gib GiB per level.
        table = []
        if a.backup_gib > 0:
            self.start_cairnd(tls=False)
            try:
                nchunks = int(a.backup_gib * 1024 / 4)
                levels = ["none", "filesystem", "file"]
                for rep in range(a.backup_repeat):
                    # Alternate the order so no level always follows another.
                    for level in (levels if rep % 2 == 0 else levels[::-1]):
                        self.set_sync(level)
                        t = time.monotonic()
                        res = self.cairn_cell("random", a.backup_conns, total=nchunks,
                                              name="backup-%s-%d" % (level, rep))
                        res["elapsed"] = time.monotonic() - t
                        table.append(dict(res, sync=level))
                        log("%.1f GiB backup at sync-level=%s: %.1f s (finish %.2f s)"
                            % (res["data"] / (1 << 30), level, res["elapsed"],
                               res["finish_s"]))
                        self.wipe()
            finally:
                self.stop_cairnd()
        return rows, head, disk, rss, table

    def show(self, r):
        log("%-14s %-4s %-12s %-10s %2d conns: %7.0f MB/s data, %7.0f MB/s wire%s"
            % (r["target"], r["transport"], r["kind"], r["sync"], r["conns"],
               r["data"] / MB / r["secs"], r["wire"] / MB / r["secs"],
               "" if r["finish_s"] is None else ", finish %.2f s" % r["finish_s"]))


def fmt(v, spec):
    if v is None or v != v:
        return "n/a"
    return spec % v


def report(bench, rows, head, disk, rss, table):
    a = bench.a
    print()
    print("bench/ingest: distinct chunks of 4 MiB, %.1f s per cell, one backup session per "
          "cairn cell (index, manifest, finish after the upload window)" % a.seconds)
    if bench.cipher:
        print("TLS: %s %s (nginx limited to the same)" % (bench.cipher[1], bench.cipher[0]))
    print("machine: %d CPUs, load average %.2f at start, %.2f at end; data dir %s"
          % (os.cpu_count() or 0, bench.load0, os.getloadavg()[0], bench.root))
    hdr = ("%-14s %-5s %-12s %-10s %5s %9s %9s %8s %8s %8s %8s %8s"
           % ("target", "proto", "chunks", "sync", "conns", "MB/s", "wire MB/s", "chunks/s",
              "finish s", "srv cpu", "gen cpu", "gen usr"))
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print("%-14s %-5s %-12s %-10s %5d %9.0f %9.0f %8.0f %8s %8s %8s %8s" % (
            r["target"], r["transport"], r["kind"], r["sync"], r["conns"],
            r["data"] / MB / r["secs"], r["wire"] / MB / r["secs"], r["chunks"] / r["secs"],
            fmt(r["finish_s"], "%.2f"), fmt(r["srv_cpu"], "%.0f%%"),
            fmt(r["gen_cpu"], "%.0f%%"), fmt(r["gen_usr"], "%.0f%%")))
    print()
    print("disk (same bytes, same file system): %.0f MB/s page cache, %.0f MB/s with "
          "fdatasync, %.0f MB/s one fsynced file per chunk"
          % (disk["cache_mbps"], disk["sync_mbps"], disk["file_fsync_mbps"]))
    print("memory: cairnd peak VmRSS %s MiB (VmHWM %s MiB) while 16 connections uploaded "
          "16 MiB chunks (%.0f MB/s)" % (fmt(rss["rss_mib"], "%.1f"),
                                         fmt(rss["hwm_mib"], "%.1f"),
                                         rss["data"] / MB / rss["secs"]))
    def rate(runs):
        return sum(r["data"] for r in runs) / MB / sum(r["secs"] for r in runs) if runs \
            else None

    if head["cairn"]:
        print()
        print("headline (random 4 MiB, 16 connections, HTTP, sync none), %d alternating "
              "slices of %.1f s: cairn %.0f MB/s (slices %s), nginx discard %.0f MB/s "
              "(slices %s)" % (
                  len(head["cairn"]), a.seconds, rate(head["cairn"]),
                  "/".join("%.0f" % (r["data"] / MB / r["secs"]) for r in head["cairn"]),
                  rate(head["nginx"]),
                  "/".join("%.0f" % (r["data"] / MB / r["secs"]) for r in head["nginx"])))
    best = {}
    if table:
        print()
        print("sync-level table: one backup of %.1f GiB (random 4 MiB chunks, %d connections,"
              " HTTP), open to finish; %d run%s per level, best first"
              % (a.backup_gib, a.backup_conns, a.backup_repeat,
                 "" if a.backup_repeat == 1 else "s"))
        print("%-11s %9s %9s %9s   %s" % ("sync-level", "elapsed s", "finish s", "MB/s",
                                          "all runs (s)"))
        for level in ("none", "filesystem", "file"):
            runs = sorted((r for r in table if r["sync"] == level), key=lambda r: r["elapsed"])
            if not runs:
                continue
            r = best[level] = runs[0]
            print("%-11s %9.1f %9.2f %9.0f   %s" % (
                level, r["elapsed"], r["finish_s"], r["data"] / MB / r["elapsed"],
                " ".join("%.1f" % x["elapsed"] for x in runs)))

    def get(target, transport="http", kind="random", sync="none", conns=16):
        for r in rows:
            if (r["target"], r["transport"], r["kind"], r["sync"], r["conns"]) == \
                    (target, transport, kind, sync, conns):
                return r["data"] / MB / r["secs"]
        return None

    def nginx(transport):
        return get("nginx-discard", transport, sync="-")

    def ratio(x, y):
        return x / y if x and y else None

    # CPU per GB: cairnd's utime+stime (all threads) over the upload windows
    # of the headline slices (or the matrix row when nginx was not run),
    # per 10^9 bytes of chunk payload accepted with its digest verified.
    cpu_rows = head["cairn"] or [r for r in rows if (
        r["target"], r["transport"], r["kind"], r["sync"], r["conns"]) ==
        ("cairn", "http", "random", "none", 16)]
    cpu_rows = [r for r in cpu_rows if r.get("srv_cpu_s") is not None]
    cairn_cpu_gb = (sum(r["srv_cpu_s"] for r in cpu_rows) /
                    (sum(r["data"] for r in cpu_rows) / 1e9)) if cpu_rows else None
    sha_gb = 1e9 / max(bench.sha_rates) if bench.sha_rates else None
    if cairn_cpu_gb is not None and sha_gb is not None:
        print()
        print("CPU per GB of chunk payload (random 4 MiB, HTTP, 16 connections, sync none): "
              "cairnd %.3f CPU-s/GB over %.2f GB (%s); SHA-256 alone %.3f CPU-s/GB "
              "(OpenSSL, one core: %s MB per CPU-s); ratio %.2f (target <= 1.5)" % (
                  cairn_cpu_gb, sum(r["data"] for r in cpu_rows) / 1e9,
                  "headline slices" if head["cairn"] else "matrix row", sha_gb,
                  " / ".join("%.0f" % (r / MB) for r in bench.sha_rates),
                  cairn_cpu_gb / sha_gb))
    sync_s = {k: r["elapsed"] for k, r in best.items()}
    cairn_http = rate(head["cairn"]) or get("cairn")
    nginx_http = rate(head["nginx"]) or nginx("http")
    kv = [
        ("cairn_http_mbps", cairn_http),
        ("nginx_http_mbps", nginx_http),
        ("cairn_vs_nginx_http", ratio(cairn_http, nginx_http)),
        ("cairn_tls_mbps", get("cairn", "tls")),
        ("nginx_tls_mbps", nginx("tls")),
        ("cairn_vs_nginx_tls", ratio(get("cairn", "tls"), nginx("tls"))),
        ("cairn_http_compressible_mbps", get("cairn", kind="compressible")),
        ("cairn_http_1conn_mbps", get("cairn", conns=1)),
        ("cairn_http_file_mbps", get("cairn", sync="file")),
        ("cairn_http_filesystem_mbps", get("cairn", sync="filesystem")),
        ("nginx_buffer_http_mbps", get("nginx-buffer", sync="-")),
        ("nginx_buffer_tls_mbps", get("nginx-buffer", "tls", sync="-")),
        ("disk_mbps", disk["sync_mbps"]),
        ("disk_cache_mbps", disk["cache_mbps"]),
        ("rss_mib", rss["rss_mib"]),
        ("backup_none_s", sync_s.get("none")),
        ("backup_filesystem_s", sync_s.get("filesystem")),
        ("backup_file_s", sync_s.get("file")),
        ("cairn_cpu_s_per_gb", cairn_cpu_gb),
        ("sha256_cpu_s_per_gb", sha_gb),
        ("ingest_cpu_vs_sha256", ratio(cairn_cpu_gb, sha_gb)),
    ]
    print()
    print("targets (not asserted): ingest_cpu_vs_sha256 <= 1.5 (cairnd CPU per GB against "
          "one core's SHA-256; cairn/nginx is information); cairnd RSS <= 128 MiB with "
          "16 x 16 MiB uploads")
    def kvfmt(k, v):
        if v is None:
            return "na"
        if k.endswith("_per_gb"):
            return "%.3f" % v
        if k.startswith("cairn_vs") or k.endswith("_vs_sha256"):
            return "%.2f" % v
        return "%.1f" % v if k.endswith(("_s", "_mib")) else "%.0f" % v

    print(" ".join("%s=%s" % (k, kvfmt(k, v)) for k, v in kv))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default="build/bin", help="directory with cairnd and cairn-admin")
    p.add_argument("--seconds", type=float, default=2.0, help="upload window per cell")
    p.add_argument("--conns", default="1,4,16")
    p.add_argument("--sync", default="none,file,filesystem")
    p.add_argument("--kinds", default="random,compressible")
    p.add_argument("--transports", default="http,tls")
    p.add_argument("--targets", default="cairn,nginx")
    p.add_argument("--backup-gib", type=float, default=2.0,
                   help="size of the sync-level table's backup (0: skip the table)")
    p.add_argument("--backup-conns", type=int, default=4)
    p.add_argument("--backup-repeat", type=int, default=2,
                   help="backups per sync level (the best is reported)")
    p.add_argument("--headline-slices", type=int, default=3,
                   help="alternating cairn/nginx slices for the headline pair (0: use "
                   "the matrix rows)")
    p.add_argument("--sha256-mib", type=int, default=1024,
                   help="MiB hashed for each one-core SHA-256 measurement")
    p.add_argument("--nginx", default="/usr/sbin/nginx")
    p.add_argument("--nginx-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--dir", default=None, help="parent of the temp dir (default $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    a = p.parse_args()
    a.conns = [int(x) for x in a.conns.split(",")]
    a.sync = a.sync.split(",")
    a.kinds = a.kinds.split(",")
    a.transports = a.transports.split(",")
    a.targets = a.targets.split(",")
    if "cairn" not in a.targets:
        a.sync = []

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    bench = Bench(a)
    ok = False
    try:
        rows, head, disk, rss, table = bench.run()
        report(bench, rows, head, disk, rss, table)
        ok = True
    except (RuntimeError, subprocess.CalledProcessError, OSError, pp.ProtoError) as e:
        log("FAILED: %s" % e)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        for proc in bench.procs:
            stop_proc(proc, 5)
        if a.keep:
            log("kept %s" % bench.root)
        else:
            shutil.rmtree(bench.root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
