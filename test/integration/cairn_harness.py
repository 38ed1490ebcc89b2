"""Integration-test harness: runs a real `cairnd` on a free loopback port.

DESIGN. Every test talks to the real binaries from `$CAIRN_BIN_DIR` (ctest sets it
to build/bin). A `Cairn` owns one temporary tree (config/, run/, data/), one port
and at most one server process at a time; `restart()` keeps the tree and the port
so a test can check what survives a restart. The server's stdout and stderr are
merged and read by a thread into `log_lines`, which is how the harness learns the
TLS fingerprint and that the server is listening, and what tests assert on.

Clean-up is not optional: `close()` (also `__exit__`) stops the process (SIGTERM,
then SIGKILL) and removes the tree unless CAIRN_KEEP_TMP=1; an atexit hook kills
any server a crashed test left behind. Only the standard library is used, so the
tests run with Debian's /usr/bin/python3 and nothing else.

TLS: the server's certificate is self-signed, so the client does what Cairn's own
clients do: no CA check, but the SHA-256 of the served certificate must equal the
fingerprint the server logged (pinning).
"""

import atexit
import hashlib
import http.client
import json as jsonlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import weakref

START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0  # the server's default shutdown grace is 10 s
REQUEST_TIMEOUT = 30.0

_FPR_RE = re.compile(r"\b([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31})\b")
_LIVE = weakref.WeakSet()
_SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                           r"Sanitizer:DEADLYSIGNAL|Segmentation fault|Assertion .* failed")

try:  # loaded here, not in the forked child, where dlopen could deadlock
    import ctypes
    _LIBC = ctypes.CDLL(None, use_errno=True)
except (ImportError, OSError):
    _LIBC = None


# ---- what a test may skip ---------------------------------------------------
#
# A test never skips because a Cairn program or endpoint is missing: a build that
# stops producing one, or a regression that makes an endpoint 404, must fail.
# A skip is only for something this machine lacks that scripts/deps.sh cannot
# install, and in CI (CI=true) only for the reasons listed here, so that a CI
# machine silently missing something shows up as a failure.
MACHINE_SKIPS = {
    "ipv6": "the machine has no IPv6 loopback address (a container without ::1)",
    "fuse": "the machine has no /dev/fuse (a container without the FUSE device)",
}


def skip_for_machine(test, key, reason):
    """Skips `test` (a TestCase) because the machine lacks `key`; fails instead
    in CI unless MACHINE_SKIPS lists that key."""
    if os.environ.get("CI") == "true" and key not in MACHINE_SKIPS:
        raise AssertionError("not skipped in CI (key %r is not in MACHINE_SKIPS): %s"
                             % (key, reason))
    test.skipTest("%s (%s)" % (reason, MACHINE_SKIPS.get(key, key)))


def require_programs(*names):
    """Fails when a Cairn program is not built: call from setUpModule."""
    missing = [binary(n) for n in names if not os.access(binary(n), os.X_OK)]
    if missing:
        raise AssertionError("not built: " + ", ".join(missing))


def finish_server(srv):
    """Stops a server and turns any sanitizer report or crash into a failure:
    the class clean-up of every integration test."""
    srv.close()
    report = srv.sanitizer_reports()
    if report:
        raise AssertionError("cairnd reported a sanitizer error or crash:\n" + report)


def bin_dir():
    """The directory holding cairnd and cairn-admin."""
    d = os.environ.get("CAIRN_BIN_DIR")
    if d:
        return d
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "build", "bin"))


def binary(name):
    return os.path.join(bin_dir(), name)


def free_port():
    """A loopback port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want):
    """Raises this process's soft RLIMIT_NOFILE towards `want` (children inherit
    it); returns the new soft limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def cert_fingerprint(der):
    """'aa:bb:...' SHA-256 of a DER certificate, as cairnd prints it."""
    return ":".join("%02x" % b for b in hashlib.sha256(der).digest())


def normalize_fingerprint(fpr):
    return fpr.strip().lower()


class FingerprintMismatch(ssl.SSLError):
    pass


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS without CA checks but with the certificate pinned by SHA-256."""

    def __init__(self, host, port, fingerprint, timeout=REQUEST_TIMEOUT, context=None):
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        super().__init__(host, port, timeout=timeout, context=context)
        self.fingerprint = normalize_fingerprint(fingerprint) if fingerprint else None

    def connect(self):
        super().connect()
        der = self.sock.getpeercert(binary_form=True)
        got = cert_fingerprint(der)
        if self.fingerprint is not None and got != self.fingerprint:
            self.sock.close()
            self.sock = None
            raise FingerprintMismatch("certificate fingerprint %s, expected %s"
                                      % (got, self.fingerprint))


class Response:
    """(status, headers, data) plus the raw body. Unpacks like a 3-tuple."""

    def __init__(self, status, headers, data, raw):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage: case-insensitive get()
        self.data = data        # parsed JSON, or bytes when the body is not JSON
        self.raw = raw

    def __iter__(self):
        return iter((self.status, self.headers, self.data))

    @classmethod
    def from_raw(cls, status, hdrs, body):
        """From a raw exchange (exchange_one's headers dict and body)."""
        msg = http.client.HTTPMessage()
        for k, v in hdrs.items():
            msg[k] = v
        data = body
        if body[:1] in (b"{", b"["):
            try:
                data = jsonlib.loads(body)
            except ValueError:
                pass
        return cls(status, msg, data, body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.raw[:300])


class Cairn:
    """One cairnd with its own temp dirs and port.

    tls: serve HTTPS (default) or pass --no-tls.
    args: extra cairnd arguments (e.g. ["--header-timeout-ms", "1000"]).
    env: extra environment for the server.
    use_env: configure the server through CAIRN_* variables instead of options.
    log_level: at "warn"/"error" the harness sees no info lines: it waits for
      the port instead and pins the certificate in proxy.pem.
    preexec: a callable run in the child before exec (e.g. to lower RLIMIT_NOFILE).
    """

    def __init__(self, tls=True, args=(), env=None, use_env=False, start=True,
                 log_level="debug", preexec=None):
        self.tls = tls
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.use_env = use_env
        self.log_level = log_level
        self.preexec = preexec
        self.root = tempfile.mkdtemp(prefix="cairn-it-")
        self.config_dir = os.path.join(self.root, "config")
        self.run_dir = os.path.join(self.root, "run")
        self.data_dir = os.path.join(self.root, "data")
        for d in (self.config_dir, self.run_dir, self.data_dir):
            os.mkdir(d)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.proc = None
        self.log_lines = []
        self.failed_start_logs = []
        self._log_cond = threading.Condition()
        self._reader = None
        self.fingerprint = None
        self.fingerprint_source = None  # "log", or "proxy.pem" when not logged
        self.token = None
        self.exit_codes = []
        self._closed = False
        _LIVE.add(self)
        if start:
            try:
                self._first_start()
            except BaseException:
                self.close()
                raise

    def _first_start(self):
        # free_port() is a race with every other process picking ports: on
        # "address in use" try another port (restart() keeps its port).
        for attempt in range(3):
            try:
                return self.start()
            except RuntimeError as e:
                if attempt == 2 or not re.search(r"in use|EADDRINUSE", str(e), re.I):
                    raise
                # Kept apart: a report from that exit path is not the test's.
                with self._log_cond:
                    self.failed_start_logs.append(self.log_lines)
                    self.log_lines = []
                self.port = free_port()

    # ---- lifecycle ----

    def command(self):
        cmd = [binary("cairnd")]
        if not self.use_env:
            cmd += ["--config-dir", self.config_dir, "--run-dir", self.run_dir,
                    "--listen", "%s:%d" % (self.host, self.port)]
            if not self.tls:
                cmd.append("--no-tls")
            if self.log_level:
                cmd += ["--log-level", self.log_level]
        return cmd + self.args

    def environment(self):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("CAIRN_") and k not in ("CAIRN_BIN_DIR", "CAIRN_KEEP_TMP"):
                del env[k]
        if self.use_env:
            env["CAIRN_CONFIG_DIR"] = self.config_dir
            env["CAIRN_RUN_DIR"] = self.run_dir
            env["CAIRN_LISTEN"] = "%s:%d" % (self.host, self.port)
            if not self.tls:
                env["CAIRN_NO_TLS"] = "1"
            if self.log_level:
                env["CAIRN_LOG_LEVEL"] = self.log_level
        env.update(self.extra_env)
        return env

    def start(self, timeout=START_TIMEOUT):
        """Starts the server and waits until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("cairnd already running")
        exe = binary("cairnd")
        if not os.access(exe, os.X_OK):
            raise RuntimeError("%s not found (set CAIRN_BIN_DIR)" % exe)
        mark = len(self.log_lines)
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=self.environment(), preexec_fn=self._preexec)
        self._reader = threading.Thread(target=self._read_log, args=(self.proc,),
                                        daemon=True)
        self._reader.start()
        self._wait_listening(mark, timeout)
        self._load_identity(mark)

    def _preexec(self):
        # The server dies with the test process even when that is SIGKILLed (a
        # ctest timeout), so no test leaves a cairnd behind.
        if _LIBC is not None:
            _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if self.preexec is not None:
            self.preexec()

    def _read_log(self, proc):
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._log_cond:
                self.log_lines.append(line)
                self._log_cond.notify_all()
        proc.stdout.close()
        with self._log_cond:
            self._log_cond.notify_all()

    def port_open(self):
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _wait_listening(self, mark, timeout):
        # The "listening on" line is the contract; an accepting port counts too
        # (a server started with --log-level warn prints no info lines).
        deadline = time.monotonic() + timeout
        want = "listening on"
        while True:
            with self._log_cond:
                if any(want in l for l in self.log_lines[mark:]):
                    return
                exited = self.proc.poll() is not None
                if not exited:
                    self._log_cond.wait(0.05)
            if exited:
                self._reader.join(2)
                raise RuntimeError("cairnd exited with %s during start:\n%s"
                                   % (self.proc.returncode, self.log_text(mark)))
            if self.port_open():
                return
            if time.monotonic() >= deadline:
                self.kill9()
                raise RuntimeError("cairnd did not listen on %s:%d within %.0f s:\n%s"
                                   % (self.host, self.port, timeout, self.log_text(mark)))

    def _load_identity(self, mark):
        path = os.path.join(self.config_dir, "root.token")
        deadline = time.monotonic() + 2.0
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        if os.path.exists(path):
            with open(path) as f:
                self.token = f.read().strip()
        self.fingerprint = None
        self.fingerprint_source = None
        if not self.tls:
            return
        # The port may have opened before the reader thread saw the line.
        verbose = self.log_level in ("debug", "info", None)
        line = self.wait_log(r"(?i)fingerprint.*" + _FPR_RE.pattern,
                             timeout=1.0 if verbose else 0, since=mark)
        if line:
            self.fingerprint = normalize_fingerprint(_FPR_RE.search(line).group(1))
            self.fingerprint_source = "log"
        elif verbose:
            raise RuntimeError("cairnd logged no certificate fingerprint:\n%s"
                               % self.log_text(mark))
        else:
            # Quieter log levels: pin what is on disk (tests of the logged
            # fingerprint check fingerprint_source == "log").
            with open(os.path.join(self.config_dir, "proxy.pem")) as f:
                der = ssl.PEM_cert_to_DER_cert(f.read())
            self.fingerprint = cert_fingerprint(der)
            self.fingerprint_source = "proxy.pem"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Stops the server (SIGTERM, then SIGKILL); returns its exit code."""
        if self.proc is None:
            return None
        proc = self.proc
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        self.proc = None
        self.exit_codes.append(proc.returncode)
        return proc.returncode

    def kill9(self):
        return self.stop(sig=signal.SIGKILL)

    def restart(self, args=None, timeout=START_TIMEOUT):
        """Stops and starts again with the same dirs and port."""
        self.stop()
        if args is not None:
            self.args = list(args)
        self.start(timeout)

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            if os.environ.get("CAIRN_KEEP_TMP") == "1":
                print("CAIRN_KEEP_TMP: kept %s" % self.root)
            else:
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- the log ----

    def log_text(self, since=0):
        with self._log_cond:
            return "\n".join(self.log_lines[since:])

    def sanitizer_reports(self):
        """The log from the first sanitizer or crash report on, or "" if none:
        tests fail on these even when every request happened to succeed."""
        with self._log_cond:
            for i, line in enumerate(self.log_lines):
                if _SANITIZER_RE.search(line):
                    return "\n".join(self.log_lines[i:i + 60])
        return ""

    def log_mark(self):
        return len(self.log_lines)

    def wait_log(self, pattern, timeout=5.0, since=0):
        """Waits until a log line (from index `since`) matches the regex; returns it
        or None."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._log_cond:
            while True:
                for line in self.log_lines[since:]:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._log_cond.wait(min(left, 0.1))

    # ---- HTTP ----

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.tls else "http", self.host, self.port)

    def auth_header(self, token=None):
        return "PBSAPIToken=" + (token if token is not None else self.token)

    def connection(self, timeout=REQUEST_TIMEOUT, fingerprint=None):
        """A new (keep-alive capable) http.client connection to the server."""
        if self.tls:
            return PinnedHTTPSConnection(self.host, self.port,
                                         fingerprint or self.fingerprint, timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, params=None, json=None, body=None, headers=None,
                token=True, conn=None, timeout=REQUEST_TIMEOUT):
        """Sends one request; returns Response (unpacks to status, headers, data).

        params: a dict; in the query string for GET/DELETE/HEAD, else a form body.
        json: a value sent as a JSON body. body: raw bytes or str.
        token: True for the root token, False for none, or a token string.
        conn: reuse this connection (keep-alive) instead of a fresh one.
        """
        hdrs = {}
        if token is True:
            hdrs["Authorization"] = self.auth_header()
        elif token:
            hdrs["Authorization"] = self.auth_header(token)
        data = None
        if params:
            enc = urllib.parse.urlencode(params)
            if method in ("GET", "DELETE", "HEAD") or json is not None or body is not None:
                path += ("&" if "?" in path else "?") + enc
            else:
                data = enc.encode()
                hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if json is not None:
            data = jsonlib.dumps(json).encode()
            hdrs["Content-Type"] = "application/json"
        if body is not None:
            data = body.encode() if isinstance(body, str) else body
        if headers:
            hdrs.update(headers)
        own = conn is None
        c = self.connection(timeout) if own else conn
        try:
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            raw = r.read()
            status, rh = r.status, r.headers
        finally:
            if own:
                c.close()
        parsed = raw
        ctype = rh.get("Content-Type", "") or ""
        if raw and ("json" in ctype or raw[:1] in (b"{", b"[")):
            try:
                parsed = jsonlib.loads(raw)
            except ValueError:
                parsed = raw
        return Response(status, rh, parsed, raw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # ---- raw sockets, for hostile input ----

    def raw_socket(self, timeout=5.0, tls=None):
        """A connected socket; TLS-wrapped (no checks) when `tls` (default: the
        server's mode) is true."""
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        if tls if tls is not None else self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        return s

    def raw_exchange(self, data, timeout=5.0, tls=None):
        """Sends bytes, reads until the server closes or `timeout` passes.
        Returns (bytes received, closed_by_server)."""
        s = self.raw_socket(timeout, tls)
        try:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return read_until_close(s, timeout)
        finally:
            s.close()

    # ---- cairn-admin ----

    def admin(self, *args, check=False, timeout=60, env=None):
        """Runs cairn-admin with this server's dirs; returns CompletedProcess
        (text mode). check=True raises on a non-zero exit with its output."""
        cmd = [binary("cairn-admin"), "--config-dir", self.config_dir,
               "--run-dir", self.run_dir] + [str(a) for a in args]
        e = dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout, env=e)
        if check and p.returncode != 0:
            raise RuntimeError("%s exited %d\nstdout:\n%s\nstderr:\n%s"
                               % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
        return p

    # ---- convenience ----

    def datastore_path(self, name):
        return os.path.join(self.data_dir, name)

    def rss_kib(self):
        """The server's VmRSS in KiB, or None."""
        if not self.alive():
            return None
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None


def read_until_close(s, timeout):
    """Reads from a socket until EOF/reset or timeout; returns (data, closed)."""
    chunks = []
    deadline = time.monotonic() + timeout
    closed = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, ssl.SSLError, OSError):
            closed = True
            break
        if not b:
            closed = True
            break
        chunks.append(b)
    return b"".join(chunks), closed


def exchange_one(sock, data, timeout=5.0):
    """Sends bytes on a connected socket and reads one response (or until close).
    Returns (status or None, headers dict, body bytes, closed, all bytes read)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    buf = b""
    closed = False
    deadline = time.monotonic() + timeout
    while True:
        got = split_response(buf)
        if got is not None:
            status, hdrs, body, _ = got
            return status, hdrs, body, closed, buf
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            b = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, ssl.SSLError, OSError):
            closed = True
            break
        if not b:
            closed = True
            break
        buf += b
    return parse_status_line(buf), {}, b"", closed, buf


def parse_status_line(data):
    """The status code of the first HTTP response in `data`, or None."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None


def split_response(data):
    """Splits one HTTP/1.1 response (Content-Length framed) off `data`; returns
    (status, headers dict lowercase, body, rest) or None if incomplete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", head[0])
    if not m:
        return None
    hdrs = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    body = data[end + 4:end + 4 + n]
    if len(body) < n:
        return None
    return int(m.group(1)), hdrs, body, data[end + 4 + n:]


def error_message(resp):
    """The `message` of a JSON error envelope, asserting its shape loosely."""
    d = resp.data
    if isinstance(d, dict):
        return d.get("message")
    return None


@atexit.register
def _kill_leftovers():
    for c in list(_LIVE):
        try:
            c.close()
        except Exception:
            pass
