#!/usr/bin/env python3
"""Re-runs the issue-13 probe against `verdicts serve` and prints what was held off.

Starts the server (SQLite, outbox transport) with short limits so the run takes seconds:
http.header_timeout = 2s, http.request_timeout = 2s, http.rate_limit_per_minute = 60,
signup.trust_forwarded_for = true, confirmations per mailbox = 3. Then:
  1. 500 idle sockets          -> how many the server closed within 4 s
  2. 50 slowloris clients      -> one header line every 0.5 s; how many were cut off within 4 s
  3. 20 byte-by-byte bodies    -> one byte every 0.5 s; how many got 408
  4. 3,500 requests to /confirm, /unsubscribe and /api from one address -> how many got 429
  5. victim+0..49@ from 50 forwarded addresses -> confirmation mails written
  6. GET /metrics without a token -> status

Usage: bench/edge_probe.py [BIN=target/release/verdicts]
"""
import glob
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/verdicts")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def closed_within(sock, seconds):
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True


def main():
    work = tempfile.mkdtemp(prefix="verdicts-probe-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERDICTS__")}
    env.update(
        {
            "VERDICTS__DATABASE__URL": f"sqlite://{work}/data/verdicts.db",
            "VERDICTS__HTTP__BIND": f"127.0.0.1:{port}",
            "VERDICTS__HTTP__HEADER_TIMEOUT": "2s",
            "VERDICTS__HTTP__REQUEST_TIMEOUT": "2s",
            "VERDICTS__HTTP__RATE_LIMIT_PER_MINUTE": "60",
            "VERDICTS__SIGNUP__TRUST_FORWARDED_FOR": "true",
            "VERDICTS__SIGNUP__CONFIRMATIONS_PER_MAILBOX_PER_HOUR": "3",
            "VERDICTS__ADMIN__TOKEN": "probe-admin-token-0123456789",
            "VERDICTS__MAIL__OUTBOX_DIR": f"{work}/outbox",
            "VERDICTS__SECURITY__SECRET_KEY_FILE": f"{work}/secret",
            "RUST_LOG": "error",
        }
    )
    server = subprocess.Popen([BIN, "serve"], cwd=work, env=env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        addr = ("127.0.0.1", port)

        # 1. Idle sockets.
        idle = [socket.create_connection(addr) for _ in range(500)]
        results = []
        lock = threading.Lock()

        def watch(s):
            r = closed_within(s, 4.0)
            with lock:
                results.append(r)

        threads = [threading.Thread(target=watch, args=(s,)) for s in idle]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(f"idle sockets closed within 4 s: {sum(results)}/500")
        [s.close() for s in idle]

        # 2. Slowloris.
        def slowloris(out):
            s = socket.create_connection(addr)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            start = time.time()
            cut = False
            while time.time() - start < 4.0:
                time.sleep(0.5)
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                    s.settimeout(0.01)
                    if s.recv(1) == b"":
                        cut = True
                        break
                except (socket.timeout, TimeoutError):
                    pass
                except OSError:
                    cut = True
                    break
            with lock:
                out.append(cut)
            s.close()

        cut = []
        threads = [threading.Thread(target=slowloris, args=(cut,)) for _ in range(50)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(f"slowloris clients cut off within 4 s: {sum(cut)}/50")

        # 3. Byte-by-byte bodies.
        def slow_body(out):
            s = socket.create_connection(addr)
            s.sendall(
                b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 100\r\n\r\n"
            )
            got = b""
            start = time.time()
            while time.time() - start < 4.0:
                time.sleep(0.5)
                try:
                    s.sendall(b"e")
                    s.settimeout(0.01)
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                except (socket.timeout, TimeoutError):
                    pass
                except OSError:
                    break
            with lock:
                out.append(got.startswith(b"HTTP/1.1 408"))
            s.close()

        slow = []
        threads = [threading.Thread(target=slow_body, args=(slow,)) for _ in range(20)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(f"byte-by-byte bodies answered 408: {sum(slow)}/20")

        # 4. Floods from one address.
        conn = http.client.HTTPConnection(*addr)
        statuses = {}
        targets = [
            ("POST", "/confirm/" + "A" * 43, {}),
            ("POST", "/unsubscribe/" + "A" * 32, {}),
            ("GET", "/api/issues", {"Authorization": "Bearer probe-admin-token-0123456789"}),
        ]
        retry_after = 0
        for i in range(3500):
            method, path, headers = targets[i % 3]
            conn.request(method, path, headers=headers)
            r = conn.getresponse()
            r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status == 429 and r.getheader("Retry-After"):
                retry_after += 1
        print(f"3500 requests to /confirm, /unsubscribe, /api from one address: {statuses}; 429s with Retry-After: {retry_after}")

        # 5. Plus-address mail bomb.
        answers = set()
        for i in range(50):
            body = urllib.parse.urlencode({"email": f"victim+{i}@example.org"})
            conn.request(
                "POST",
                "/subscribe",
                body,
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Forwarded-For": f"198.51.100.{i}",
                },
            )
            r = conn.getresponse()
            answers.add((r.status, r.read()))
        time.sleep(3)
        mails = len(glob.glob(f"{work}/outbox/**/*.eml", recursive=True))
        print(f"victim+0..49@ from 50 addresses: {mails} confirmation mails, {len(answers)} distinct answer(s)")

        # 6. Metrics (a new connection: the old one sat idle past the header timeout).
        conn = http.client.HTTPConnection(*addr)
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        r.read()
        print(f"GET /metrics without a token: {r.status}")
    finally:
        server.terminate()
        server.wait()


main()
