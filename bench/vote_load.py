#!/usr/bin/env python3
"""Load client for bench/votes.sh: posts genuine vote links of issue #1 over keep-alive
HTTP/1.1 connections on loopback, each request a distinct (reader, comparison, tool), and
prints `RESULT requests=… ok=… non200=… seconds=… rate=… p50_ms=… p99_ms=…`.

The tokens are made as src/engagement.rs makes them (HMAC-SHA256 with security.secret_key):
the reader part base64url(id ‖ HMAC("verdicts/vote-reader/v1:" ‖ number ‖ id)[..13]) and
the per-issue part base64url(number ‖ position ‖ tool ‖ choice ‖ HMAC(…)[..12])."""
import argparse, asyncio, base64, hashlib, hmac, struct, time

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def token(key, number, sid, position, tool, choice):
    r = struct.pack(">qq", number, sid)
    reader = b64(struct.pack(">q", sid) + hmac.new(key, b"verdicts/vote-reader/v1:" + r, hashlib.sha256).digest()[:13])
    body = struct.pack(">qHBB", number, position, tool, choice)
    part = b64(body + hmac.new(key, b"verdicts/vote-choice/v1:" + body, hashlib.sha256).digest()[:12])
    return reader + part

async def worker(port, jobs, deadline, lat, counts):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.monotonic() < deadline and jobs:
        path = jobs.pop()
        t0 = time.perf_counter()
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode())
        status = int((await reader.readline()).split()[1])
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        await reader.readexactly(length)
        lat.append(time.perf_counter() - t0)
        counts["ok" if status == 200 else "non200"] += 1
    writer.close()

async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--readers", type=int, default=20000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--connections", type=int, default=32)
    a = p.parse_args()
    key = a.key.encode()
    jobs = [f"/vote/{token(key, 1, sid, pos, tool, 1 + (sid + tool) % 2)}"
            for sid in range(a.readers, 0, -1) for pos in (1, 0) for tool in (1, 0)]
    lat, counts = [], {"ok": 0, "non200": 0}
    start = time.monotonic()
    await asyncio.gather(*(worker(a.port, jobs, start + a.seconds, lat, counts)
                           for _ in range(a.connections)))
    took = time.monotonic() - start
    lat.sort()
    n = len(lat)
    print(f"RESULT requests={n} ok={counts['ok']} non200={counts['non200']} seconds={took:.1f} "
          f"rate={n / took:,.0f}/s p50_ms={lat[n // 2] * 1000:.1f} p99_ms={lat[int(n * 0.99)] * 1000:.1f}")

asyncio.run(main())
