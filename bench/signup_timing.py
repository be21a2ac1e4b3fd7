#!/usr/bin/env python3
"""Signup timing by address state: does POST /subscribe take longer for some states?

Starts `verdicts serve` (SQLite, outbox transport, no per-IP limit) and sends N signups for
each state — new, pending (within the resend interval), confirmed, unsubscribed — interleaved,
over one keep-alive connection, and prints the median and p90 per state in milliseconds. A gap
between the medians tells a stranger which state an address is in.

Usage: bench/signup_timing.py [BIN=target/release/verdicts] [N=200]
"""
import csv
import http.client
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/verdicts"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200
BIN = os.path.abspath(BIN)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    work = tempfile.mkdtemp(prefix="verdicts-timing-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERDICTS__")}
    env.update(
        {
            "VERDICTS__DATABASE__URL": f"sqlite://{work}/data/verdicts.db",
            "VERDICTS__HTTP__BIND": f"127.0.0.1:{port}",
            "VERDICTS__SIGNUP__RATE_LIMIT_PER_MINUTE": "0",
            "VERDICTS__SIGNUP__RESEND_INTERVAL": "1h",
            "VERDICTS__SIGNUP__CONFIRMATIONS_PER_MAILBOX_PER_HOUR": "1000",
            "VERDICTS__MAIL__OUTBOX_DIR": f"{work}/outbox",
            "VERDICTS__SECURITY__SECRET_KEY_FILE": f"{work}/secret",
            "RUST_LOG": "warn",
        }
    )
    # Old builds do not know the mailbox limit key: retry without it.
    def run_cli(args):
        return subprocess.run([BIN, *args], cwd=work, env=env, capture_output=True, text=True)

    if run_cli(["migrate"]).returncode != 0:
        del env["VERDICTS__SIGNUP__CONFIRMATIONS_PER_MAILBOX_PER_HOUR"]
        out = run_cli(["migrate"])
        assert out.returncode == 0, out.stderr
    # Confirmed and (later) unsubscribed subscribers, imported in one go.
    path = os.path.join(work, "people.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email"])
        for i in range(N):
            w.writerow([f"confirmed{i}@example.org"])
            w.writerow([f"unsub{i}@example.org"])
    out = run_cli(["subscribers", "import", path])
    assert out.returncode == 0, out.stderr
    db = sqlite3.connect(f"{work}/data/verdicts.db")
    db.execute("UPDATE subscribers SET status = 'unsubscribed' WHERE email LIKE 'unsub%'")
    db.commit()
    db.close()
    server = subprocess.Popen([BIN, "serve"], cwd=work, env=env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port)

        def signup(email):
            body = urllib.parse.urlencode({"email": email, "name": "Timing"})
            start = time.perf_counter()
            conn.request(
                "POST",
                "/subscribe",
                body,
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            r = conn.getresponse()
            r.read()
            elapsed = time.perf_counter() - start
            assert r.status == 200, r.status
            return elapsed * 1000

        # Pending: signed up once before the measured run.
        for i in range(N):
            signup(f"pending{i}@example.org")
        # Warm-up.
        for i in range(50):
            signup(f"warm{i}@example.org")
        times = {"new": [], "pending": [], "confirmed": [], "unsubscribed": []}
        for i in range(N):
            times["new"].append(signup(f"new{i}@example.org"))
            times["pending"].append(signup(f"pending{i}@example.org"))
            times["confirmed"].append(signup(f"confirmed{i}@example.org"))
            times["unsubscribed"].append(signup(f"unsub{i}@example.org"))
        for state, t in times.items():
            t.sort()
            print(
                f"{state:<13} median {statistics.median(t):.3f} ms  p90 {t[int(len(t) * 0.9)]:.3f} ms  (n={len(t)})"
            )
        medians = [statistics.median(t) for t in times.values()]
        print(f"spread of medians: {max(medians) - min(medians):.3f} ms")
    finally:
        server.terminate()
        server.wait()


main()
