#!/usr/bin/env python3
"""A submission server for the SMTP tests: aiosmtpd with STARTTLS, implicit TLS, AUTH, and the
misbehaviours of real servers (idle connections dropped with 421 or silently, AUTH that is never
answered). The Rust tests start it as a subprocess (tests/common/submission.rs).

Every event goes to --log as one JSON line:
  {"event": "auth", "user": ..., "password": ..., "tls": bool, "ok": bool}
  {"event": "message", "mail_from": ..., "rcpt": [...], "tls": bool, "auth": user or null,
   "smtputf8": bool, "file": path}
  {"event": "refused", "rcpt": [...], "reply": "421 ..."}   (--refuse-every)
Each message is written to --out as N.eml. Prints READY once it listens.
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

LOCK = threading.Lock()


def log(args, record):
    with LOCK:
        with open(args.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def is_tls(server):
    return server.transport is not None and server.transport.get_extra_info("sslcontext") is not None


class Handler:
    def __init__(self, args):
        self.args = args
        self.count = 0
        self.seen = 0

    async def handle_DATA(self, server, session, envelope):
        with LOCK:
            self.seen += 1
            refuse = self.args.refuse_every and self.seen % self.args.refuse_every == 0
        if refuse:
            # A relay refusing this one message (a per-message rate limit, greylisting): the
            # reply to the end of DATA; with 421 the server then closes the connection.
            reply = self.args.refuse_reply
            log(self.args, {"event": "refused", "rcpt": envelope.rcpt_tos, "reply": reply})
            if reply.startswith("421") and server.transport is not None:
                asyncio.get_running_loop().call_later(0.05, server.transport.close)
            return reply
        with LOCK:
            self.count += 1
            n = self.count
        path = os.path.join(self.args.out, f"{n:06d}.eml")
        with open(path, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        log(self.args, {
            "event": "message",
            "mail_from": envelope.mail_from,
            "rcpt": envelope.rcpt_tos,
            "tls": is_tls(server) or self.args.implicit,
            "auth": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
            "smtputf8": "SMTPUTF8" in [o.upper() for o in envelope.mail_options],
            "file": path,
        })
        if self.args.close_after_message and server.transport is not None:
            # After the reply is written: the client finds the connection closed when it
            # reuses it.
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
        return "250 OK queued"


class Authenticator:
    """Checks against the password file, read at every attempt (a test may change it)."""

    def __init__(self, args):
        self.args = args

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        with open(self.args.auth_file, encoding="utf-8") as f:
            user, password = f.read().split("\n", 1)
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password.rstrip("\n")
        log(self.args, {
            "event": "auth",
            "user": auth_data.login.decode(),
            "password": auth_data.password.decode(),
            "tls": is_tls(server) or self.args.implicit,
            "ok": ok,
        })
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


class SilentAuth:
    """AUTH PLAIN and LOGIN that never answer."""

    async def auth_PLAIN(self, server, args):
        log(server._verdicts_args, {"event": "auth-silent", "tls": is_tls(server)})
        await asyncio.sleep(3600)

    async def auth_LOGIN(self, server, args):
        await self.auth_PLAIN(server, args)


class IdleSMTP(SMTP):
    """Drops connections idle for the server's `timeout`, with a 421 first when asked to."""

    idle_mode = "close"

    def _timeout_cb(self):
        log(self._verdicts_args, {"event": "idle-drop", "mode": self.idle_mode})
        if self.idle_mode == "421" and self.transport is not None:
            self.transport.write(b"421 4.4.2 idle too long, closing\r\n")
        super()._timeout_cb()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--implicit", action="store_true", help="TLS from the first byte")
    p.add_argument("--starttls", action="store_true", help="offer and require STARTTLS")
    p.add_argument("--auth-file", help="user and password, one a line: AUTH required")
    p.add_argument("--auth-without-tls", action="store_true", help="offer AUTH on plain text")
    p.add_argument("--silent-auth", action="store_true", help="never answer AUTH")
    p.add_argument("--idle", type=float, help="drop connections idle this many seconds")
    p.add_argument("--idle-mode", choices=["421", "close"], default="close")
    p.add_argument("--close-after-message", action="store_true", help="one message a connection")
    p.add_argument("--smtputf8", action="store_true", help="announce SMTPUTF8")
    p.add_argument("--refuse-every", type=int, default=0,
                   help="refuse every Nth message (1: all) at the end of DATA")
    p.add_argument("--refuse-reply", default="421 4.7.0 too many messages, try again later",
                   help="the reply of --refuse-every")
    args = p.parse_args()

    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    handler = Handler(args)
    if args.silent_auth:
        for name in ("auth_PLAIN", "auth_LOGIN"):
            setattr(handler, name, getattr(SilentAuth(), name))

    kwargs = {
        "decode_data": False,
        "enable_SMTPUTF8": args.smtputf8,
        "hostname": "verdicts-test",
        "ident": "verdicts test submission server",
    }
    if args.starttls:
        kwargs["tls_context"] = context
        kwargs["require_starttls"] = True
    if args.auth_file or args.silent_auth:
        kwargs["authenticator"] = Authenticator(args)
        kwargs["auth_required"] = not args.auth_without_tls
        # aiosmtpd counts only STARTTLS as TLS; with implicit TLS every byte is encrypted.
        kwargs["auth_require_tls"] = not (args.auth_without_tls or args.implicit)
    if args.idle:
        kwargs["timeout"] = args.idle

    class Server(IdleSMTP):
        idle_mode = args.idle_mode

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self._verdicts_args = args

    class OurController(Controller):
        def factory(self):
            return Server(self.handler, **self.SMTP_kwargs)

    controller = OurController(
        handler,
        hostname="127.0.0.1",
        port=args.port,
        ssl_context=context if args.implicit else None,
        server_kwargs=kwargs,
    )
    controller.start()
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    sys.exit(main())
