#!/usr/bin/env python3
"""faultproxy.py: an HTTP/1.1-aware TCP proxy that injects faults.

    faultproxy.py --listen PORT --upstream HOST:PORT --seed N --rate 0.10

Sits between an S3 client and an S3 server. For every request it reads (head
and Content-Length body), a seeded random schedule picks one fate:

    pass       forward, relay the response
    delay      sleep 20-300 ms, then pass
    reset      drop the client connection with a TCP RST, request unsent
    reset-late forward the request, then RST before relaying the answer
    truncate   forward, relay only part of the response, then close
    500 / 503  answer itself with an S3 <Error> (InternalError / ServiceUnavailable)
    slowdown   answer 503 SlowDown
    stall      hold the request without answering (the client's timeout fires)

`--rate` is the share of requests that get a failing fault (every fate but
pass and delay); `--delay-rate` the share, of the rest, that is only delayed.
Prints "LISTENING <port>" when ready; on SIGTERM prints the fate counts as
one JSON line on stdout. Standard library only.
"""
import argparse
import asyncio
import json
import random
import signal
import socket
import struct
import sys

FAULTS = ["reset", "reset-late", "truncate", "500", "503", "slowdown", "stall"]
WEIGHTS = [3, 2, 3, 3, 3, 3, 1]


class Proxy:
    def __init__(self, upstream, seed, rate, delay_rate, stall_s):
        self.up_host, self.up_port = upstream
        self.rng = random.Random(seed)
        self.rate = rate
        self.delay_rate = delay_rate
        self.stall_s = stall_s
        self.counts = {k: 0 for k in ["pass", "delay"] + FAULTS}
        self.requests = 0

    def fate(self):
        self.requests += 1
        if self.rng.random() < self.rate:
            return self.rng.choices(FAULTS, WEIGHTS)[0]
        return "delay" if self.rng.random() < self.delay_rate else "pass"

    @staticmethod
    async def read_head(reader):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return head, lines[0], headers

    @staticmethod
    async def read_body(reader, headers, no_body=False):
        if no_body:
            return b""
        if "content-length" in headers:
            n = int(headers["content-length"])
            return await reader.readexactly(n) if n else b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = await reader.readuntil(b"\r\n")
                out += line
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    out += await reader.readuntil(b"\r\n")  # no trailers from S3
                    return out
                out += await reader.readexactly(size + 2)
        return b""

    @staticmethod
    def rst(writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    @staticmethod
    def error_response(status, code, reason):
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>injected by faultproxy</Message><RequestId>fp</RequestId></Error>")
        return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}").encode()

    async def handle(self, creader, cwriter):
        ureader = uwriter = None
        try:
            while True:
                try:
                    head, reqline, headers = await self.read_head(creader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                body = await self.read_body(creader, headers)
                method = reqline.split(" ", 1)[0]
                fate = self.fate()
                self.counts[fate] += 1
                if fate == "reset":
                    self.rst(cwriter)
                    return
                if fate == "stall":
                    await asyncio.sleep(self.stall_s)
                    self.rst(cwriter)
                    return
                if fate in ("500", "503", "slowdown"):
                    status, code, reason = {
                        "500": (500, "InternalError", "Internal Server Error"),
                        "503": (503, "ServiceUnavailable", "Service Unavailable"),
                        "slowdown": (503, "SlowDown", "Slow Down"),
                    }[fate]
                    cwriter.write(self.error_response(status, code, reason))
                    await cwriter.drain()
                    continue
                if fate == "delay":
                    await asyncio.sleep(self.rng.uniform(0.02, 0.3))
                if uwriter is None:
                    ureader, uwriter = await asyncio.open_connection(self.up_host, self.up_port)
                uwriter.write(head + body)
                await uwriter.drain()
                rhead, status_line, rheaders = await self.read_head(ureader)
                status = int(status_line.split(" ")[1])
                no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                rbody = await self.read_body(ureader, rheaders, no_body)
                if fate == "reset-late":
                    self.rst(cwriter)
                    return
                if fate == "truncate":
                    whole = rhead + rbody
                    cut = self.rng.randrange(1, max(2, len(whole) - 1))
                    cwriter.write(whole[:cut])
                    await cwriter.drain()
                    self.rst(cwriter)
                    return
                cwriter.write(rhead + rbody)
                await cwriter.drain()
                if rheaders.get("connection", "").lower() == "close":
                    cwriter.close()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.rst(cwriter)
        finally:
            if uwriter is not None:
                uwriter.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, default=0)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--delay-rate", type=float, default=0.05)
    ap.add_argument("--stall", type=float, default=5.0)
    a = ap.parse_args()
    host, port = a.upstream.rsplit(":", 1)
    p = Proxy((host, int(port)), a.seed, a.rate, a.delay_rate, a.stall)
    server = await asyncio.start_server(p.handle, "127.0.0.1", a.listen, limit=1 << 20)
    print(f"LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    server.close()
    print(json.dumps({"requests": p.requests, **p.counts}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
