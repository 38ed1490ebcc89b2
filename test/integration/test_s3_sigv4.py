#!/usr/bin/env python3
"""Cross-checks Cairn's SigV4 signer against botocore's S3SigV4Auth.

`test_s3_sigv4 --sign` (built from test/unit/test_s3_sigv4.c) builds the URL
and Authorization header for each request shape; botocore signs the same
request with the same fixed timestamp and the two must agree byte for byte.
The encoded path and query are also checked against Python's own quoting, so
a bug shared by the URL builder and the signer cannot hide.
"""
import os
import subprocess
import sys
import urllib.parse

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DATE = "20250714T142002Z"


def shape(name, method="GET", key="", bucket="bucket", query=(), body=b"", headers=(),
          endpoint="127.0.0.1", port=7480, tls=0, path_style=1, region="us-east-1"):
    return dict(name=name, method=method, key=key, bucket=bucket, query=list(query),
                body=body, headers=list(headers), endpoint=endpoint, port=port, tls=tls,
                path_style=path_style, region=region)


SHAPES = [
    shape("plain key", key="store/.chunks/0001/0001abcdef"),
    shape("key with spaces", key="a b  c/d e"),
    shape("unicode key", key="dir/ünïcødé/日本語.txt"),
    shape("plus in key", key="a+b+c"),
    shape("percent in key", key="100%/a%20b%"),
    shape("tilde in key", key="~user/x~y"),
    shape("equals in key", key="k=v/x==y"),
    shape("ampersand in key", key="a&b/c&&d"),
    shape("double slash", key="a//b///c/"),
    shape("leading slash key", key="/abs/path"),
    shape("all specials", key="!\"#$&'()*+,:;<=>?@[\\]^`{|}"),
    shape("head bucket", method="HEAD", key=""),
    shape("put empty body", method="PUT", key="empty", body=b"",
          headers=[("Content-Type", "application/octet-stream"), ("Content-Length", "0")]),
    shape("put small body", method="PUT", key="k", body=b"hello world",
          headers=[("Content-Type", "application/octet-stream"), ("Content-Length", "11"),
                   ("If-None-Match", "*")]),
    shape("put large body", method="PUT", key="big/object", body=os.urandom(4 << 20),
          headers=[("Content-Length", str(4 << 20)), ("Content-MD5", "1B2M2Y8AsgTpgAmYEPiJ9w==")]),
    shape("list query only", key="", query=[("list-type", "2"), ("prefix", "store/.chunks/")]),
    shape("list continuation", key="",
          query=[("list-type", "2"), ("prefix", "a b/+c"), ("max-keys", "1000"),
                 ("continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")]),
    shape("delete objects", method="POST", key="", query=[("delete", None)],
          body=b"<Delete><Object><Key>a</Key></Object></Delete>",
          headers=[("Content-Type", "application/xml"), ("Content-Length", "46")]),
    shape("query with specials", key="", query=[("prefix", "a&b=c%d~e f"), ("list-type", "2")]),
    shape("copy object", method="PUT", key="dst key",
          headers=[("x-amz-copy-source", "bucket/src%20key"),
                   ("x-amz-metadata-directive", "REPLACE")]),
    shape("vhost style", key="x/y z", endpoint="{{bucket}}.s3.{{region}}.example.com",
          port=443, tls=1, path_style=0, region="eu-central-1"),
    shape("vhost custom port", key="k", endpoint="{{bucket}}.s3.{{region}}.example.com",
          port=8443, tls=1, path_style=0, region="eu-west-3"),
    shape("default http port", key="k", port=80),
    shape("ipv6 endpoint", key="k", endpoint="[::1]", port=9000),
    shape("delete key", method="DELETE", key="to/del ete"),
    shape("header whitespace", method="PUT", key="m",
          headers=[("x-amz-meta-note", "  several   spaces  here "),
                   ("Content-Length", "0")]),
    shape("region other", key="k", region="ap-southeast-2"),
]


def hx(b):
    if isinstance(b, str):
        b = b.encode()
    return b.hex() if b else "-"


def line_for(s):
    headers = "".join(f"{n}:{v}\n" for n, v in s["headers"])
    fields = [s["method"], s["endpoint"], s["bucket"], s["key"], str(s["path_style"]),
              str(s["port"]), str(s["tls"]), s["region"], DATE, s["body"], headers]
    out = [hx(f) for f in fields]
    for n, v in s["query"]:
        out.append(hx(n))
        out.append("*" if v is None else hx(v))
    return " ".join(out)


def expected_target(s):
    quote = lambda v, safe: urllib.parse.quote(v, safe=safe)  # noqa: E731
    path = "/"
    if s["path_style"]:
        path += quote(s["bucket"], "") + ("/" if s["key"] else "")
    path += quote(s["key"], "/~")
    q = []
    for n, v in s["query"]:
        q.append(quote(n, "~") + ("" if v is None else "=" + quote(v, "~")))
    return path + ("?" + "&".join(q) if q else "")


def botocore_auth(s, host_header, target, payload_hash):
    scheme = "https" if s["tls"] else "http"
    url = f"{scheme}://{host_header}{target}"
    req = AWSRequest(method=s["method"], url=url, data=s["body"])
    req.headers["Host"] = host_header
    for n, v in s["headers"]:
        req.headers[n] = v
    req.headers["X-Amz-Content-SHA256"] = payload_hash
    signer = S3SigV4Auth(Credentials(AK, SK), "s3", s["region"])
    # add_auth() with the clock fixed: the same steps, our timestamp.
    req.context["timestamp"] = DATE
    signer._modify_request_before_signing(req)
    cr = signer.canonical_request(req)
    sts = signer.string_to_sign(req, cr)
    sig = signer.signature(sts, req)
    signer._inject_signature_to_request(req, sig)
    return req.headers["Authorization"]


def main():
    tool = os.path.join(os.environ.get("CAIRN_BIN_DIR", "build/bin"), "test_s3_sigv4")
    if not os.path.exists(tool):
        print(f"missing {tool}", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    inp = "".join(line_for(s) + "\n" for s in SHAPES)
    res = subprocess.run([tool, "--sign"], input=inp.encode(), capture_output=True,
                         timeout=60, check=True)
    lines = res.stdout.decode().splitlines()
    assert len(lines) == len(SHAPES), (len(lines), res.stderr)
    passed = failed = 0
    for s, ln in zip(SHAPES, lines):
        try:
            host_header, target, payload_hash, auth = ln.split("\t")
            import hashlib
            assert payload_hash == hashlib.sha256(s["body"]).hexdigest(), "payload hash"
            want_target = expected_target(s)
            assert target == want_target, f"target {target!r} != {want_target!r}"
            want = botocore_auth(s, host_header, target, payload_hash)
            assert auth == want, f"\n  cairn:    {auth}\n  botocore: {want}"
            passed += 1
            print(f"ok   {s['name']}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {s['name']}: {e} (line {ln!r})")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or passed < 20 else 0


if __name__ == "__main__":
    sys.exit(main())
