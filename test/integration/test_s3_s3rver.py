#!/usr/bin/env python3
"""Cairn's S3 client against the npm s3rver 3.7.1 (a light extra server).

s3rver is loose (no SigV4 check, no conditional PUT, its own listing order),
so this is a smoke run of the basic operations only; Ceph RGW is the
conformance server (test_s3_rgw.py). s3rver is installed into the
repository's node_modules by test/s3/s3rver-install.sh.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("CAIRN_BIN_DIR", os.path.join(ROOT, "build", "bin"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    work = tempfile.mkdtemp(prefix="cairn-s3rver-")
    proc = None
    ok = False
    try:
        subprocess.run([os.path.join(ROOT, "test", "s3", "s3rver-install.sh")], check=True,
                       timeout=300)
        port = free_port()
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        proc = subprocess.Popen(
            ["node", os.path.join(ROOT, "node_modules", ".bin", "s3rver"), "-d", work, "-a",
             "127.0.0.1", "-p", str(port), "--no-vhost-buckets", "-s",
             "--configure-bucket", "cairn-smoke"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.time()
        while True:
            if proc.poll() is not None:
                raise RuntimeError("s3rver exited: " + proc.stderr.read().decode()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.time() - t0 > 20:
                    raise RuntimeError("s3rver did not listen")
                time.sleep(0.05)
        denv = dict(os.environ, S3_ENDPOINT="127.0.0.1", S3_PORT=str(port),
                    S3_ACCESS_KEY="S3RVER", S3_SECRET_KEY="S3RVER", S3_REGION="us-east-1",
                    S3_BUCKET="cairn-smoke")
        res = subprocess.run([os.path.join(BIN, "s3_check"), "s3rver"], env=denv,
                             capture_output=True, text=True, timeout=120)
        sys.stdout.write(res.stdout)
        if res.returncode != 0:
            sys.stdout.write(res.stderr[-4000:])
        ok = res.returncode == 0
    except Exception as e:  # noqa: BLE001
        print(f"FAIL setup: {e}")
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{1 if ok else 0} passed, {0 if ok else 1} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
