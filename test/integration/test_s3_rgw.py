#!/usr/bin/env python3
"""Cairn's S3 client against Ceph RGW, a TLS front and the fault proxy.

Starts, on free loopback ports and in a temporary directory:
  - Ceph RGW (test/s3/rgw-up.sh): the conformance server;
  - nginx as a TLS front to RGW with a fresh self-signed certificate, so that
    fingerprint pinning is tested against a real TLS server;
  - test/s3/faultproxy.py in front of RGW for the fault run.
and runs the `s3_check` driver's "conformance" and "faults" suites. There is
no skip: if RGW or nginx cannot start, the test fails and says why.
"""
import json
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
S3DIR = os.path.join(os.path.dirname(HERE), "s3")
BIN = os.environ.get("CAIRN_BIN_DIR", os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "bin"))
SEED = int(os.environ.get("S3_SEED", "20251114"))


def port_free(p):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", p))
            return True
        except OSError:
            return False


def free_ports(n):
    """n consecutive free ports (RGW wants PORT, PORT+1, PORT+2)."""
    rng = random.Random(os.getpid() ^ int(time.time()))
    for _ in range(200):
        base = rng.randrange(20000, 60000)
        if all(port_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free ports")


def wait_port(port, proc, what, timeout=15):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def tls_front(work, tls_port, rgw_port):
    """nginx terminating TLS in front of RGW; returns (process, fingerprint)."""
    cert, key = os.path.join(work, "tls.crt"), os.path.join(work, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    fp = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
                        check=True, capture_output=True, text=True).stdout
    fp = fp.strip().split("=", 1)[1].lower()
    ngx = os.path.join(work, "nginx")
    os.makedirs(os.path.join(ngx, "logs"), exist_ok=True)
    conf = os.path.join(ngx, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
pid {ngx}/nginx.pid;
error_log {ngx}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {ngx}/body;
  proxy_temp_path {ngx}/proxy;
  fastcgi_temp_path {ngx}/fastcgi;
  uwsgi_temp_path {ngx}/uwsgi;
  scgi_temp_path {ngx}/scgi;
  server {{
    listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    client_max_body_size 0;
    location / {{
      proxy_pass http://127.0.0.1:{rgw_port};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", ngx, "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(ngx, "stderr"), "w"))
    wait_port(tls_port, proc, "nginx")
    return proc, fp


def s3_client(env):
    import boto3  # python3-boto3
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{env['S3_PORT']}",
                        aws_access_key_id=env["S3_ACCESS_KEY"],
                        aws_secret_access_key=env["S3_SECRET_KEY"], region_name=env["S3_REGION"])


def run_driver(suite, env):
    exe = os.path.join(BIN, "s3_check")
    if not os.path.exists(exe):
        raise RuntimeError(f"{exe} not built (test/s3 must be part of the build)")
    t0 = time.time()
    res = subprocess.run([exe, suite], env=env, capture_output=True, text=True, timeout=300)
    sys.stdout.write(res.stdout)
    if res.returncode != 0:
        sys.stdout.write(res.stderr[-4000:])
    print(f"     ({suite}: {time.time() - t0:.1f} s)")
    return res.returncode == 0


def main():
    passed = failed = 0
    work = tempfile.mkdtemp(prefix="cairn-s3-")
    rgw_dir = os.path.join(work, "rgw")
    procs = []
    try:
        base = free_ports(3)
        t0 = time.time()
        up = subprocess.run([os.path.join(S3DIR, "rgw-up.sh"), rgw_dir, str(base)],
                            capture_output=True, text=True, timeout=180)
        if up.returncode != 0:
            print(up.stderr[-4000:])
            raise RuntimeError("Ceph RGW did not start (is scripts/deps.sh test done?)")
        env = dict(os.environ)
        for line in up.stdout.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
        print(f"RGW up on port {base} in {time.time() - t0:.1f} s")
        s3 = s3_client(env)
        for b in ("cairn-test", "cairn-faults"):
            s3.create_bucket(Bucket=b)

        tls_port = free_ports(1)
        ngx, fp = tls_front(work, tls_port, base)
        procs.append(ngx)
        env.update(S3_BUCKET="cairn-test", S3_TLS_PORT=str(tls_port), S3_TLS_FINGERPRINT=fp)
        if run_driver("conformance", env):
            passed += 1
        else:
            failed += 1

        proxy = subprocess.Popen([sys.executable, os.path.join(S3DIR, "faultproxy.py"),
                                  "--listen", "0", "--upstream", f"127.0.0.1:{base}",
                                  "--seed", str(SEED), "--rate", "0.10", "--stall", "3"],
                                 stdout=subprocess.PIPE, text=True)
        procs.append(proxy)
        first = proxy.stdout.readline().split()
        if len(first) != 2 or first[0] != "LISTENING":
            raise RuntimeError("fault proxy did not start")
        fenv = dict(env, S3_PORT=first[1], S3_BUCKET="cairn-faults", S3_SEED=str(SEED))
        ok = run_driver("faults", fenv)
        proxy.send_signal(signal.SIGTERM)
        counts = json.loads(proxy.stdout.readline())
        proxy.wait(10)
        print(f"     fault proxy: {counts}")
        injected = sum(v for k, v in counts.items() if k not in ("requests", "pass", "delay"))
        if ok and injected >= 0.08 * counts["requests"]:
            passed += 1
        else:
            print("FAIL faults: driver failed or too few faults injected")
            failed += 1
    except Exception as e:  # noqa: BLE001
        print(f"FAIL setup: {e}")
        failed += 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        subprocess.run([os.path.join(S3DIR, "rgw-down.sh"), rgw_dir], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
