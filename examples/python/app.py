"""Example app behind caddy-pi-guard, standard library only.

An order is marked paid only by a valid Pi-Payment-Verified header; notices
record other states. Run:

    PI_GUARD_SIGNING_KEY=... python3 examples/python/app.py

The verifier is the pi_guard_verify package (packages/python): installed with
pip, or else taken from this clone.

Environment: PORT (default 8000), HOST (default 127.0.0.1: reach it through
the guard), PI_GUARD_SIGNING_KEY (the guard's signing_key), PI_GUARD_KEY_ID
(optional kid), PI_GUARD_ISSUER / PI_GUARD_AUDIENCE (optional).
"""

import json
import os
import sys
import threading
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from pi_guard_verify import HEADER_NOTICE, HEADER_VERIFIED, Key, VerificationError, Verifier
except ImportError:  # not installed: the package's folder in this clone
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "packages", "python"))
    from pi_guard_verify import HEADER_NOTICE, HEADER_VERIFIED, Key, VerificationError, Verifier

MAX_BODY_BYTES = 1 << 20

HOME_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>example app behind caddy-pi-guard</title></head>
<body><h1>example app behind caddy-pi-guard</h1>
<p>This placeholder app marks an order paid only when the payment callback carries a valid
<code>Pi-Payment-Verified</code> header. See <a href="/orders">/orders</a>.</p></body></html>
"""


class Orders:
    """In-memory orders keyed by payment id; a real app uses its database."""

    def __init__(self):
        self._lock = threading.Lock()
        self._orders = {}

    def _upsert(self, c, change):
        with self._lock:
            o = self._orders.setdefault(c["sub"], {"payment_id": c["sub"], "status": "pending", "deliveries": 0})
            o["amount"] = str(c["payment"].get("amount"))  # exact decimal text
            o["memo"] = c["payment"].get("memo")
            result = change(o)
            o["updated_at"] = datetime.now(timezone.utc).isoformat()
            return dict(o), result

    def mark_paid(self, c):
        """Idempotent: the guard may deliver the same payment more than once."""
        def change(o):
            o["deliveries"] += 1
            if o["status"] == "paid":
                return False
            o["status"], o["txid"] = "paid", c["payment"]["transaction"]["txid"]
            return True
        return self._upsert(c, change)

    def note(self, c, status):
        """A notice never makes an order paid, and never un-pays one."""
        def change(o):
            if o["status"] != "paid":
                o["status"] = status
        return self._upsert(c, change)[0]

    def list(self):
        with self._lock:
            return [dict(self._orders[k]) for k in sorted(self._orders)]


def make_handler(verifier, orders=None):
    """Returns the request handler class of the app."""
    orders = orders or Orders()

    class Handler(BaseHTTPRequestHandler):
        server_version = "example-app"

        def _send(self, status, obj):
            data = json.dumps(obj, default=lambda v: str(v) if isinstance(v, Decimal) else repr(v)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self):
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                return None  # http.server does not decode chunked bodies
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return None
            if n < 0 or n > MAX_BODY_BYTES:
                return None
            return self.rfile.read(n)

        def _verify(self, kind, body):
            header = HEADER_NOTICE if kind == "notice" else HEADER_VERIFIED
            return verifier.verify_request(self.command, self.path, self.headers.get_all(header) or [], body, kind)

        def _refuse(self, kind, err):
            code = "notice_not_verified" if kind == "notice" else "payment_not_verified"
            self._send(401, {"error": code, "message": str(err)})

        def _paid(self, c):
            order, first = orders.mark_paid(c)
            if first:
                self.log_message("payment %s paid: %s Pi, tx %s", order["payment_id"], order["amount"], order["txid"])
            self._send(200, {"ok": True, "order": order, "already_recorded": not first})

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/orders":
                self._send(200, {"orders": orders.list()})
            elif path == "/":
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(HOME_PAGE)))
                self.end_headers()
                self.wfile.write(HOME_PAGE)
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self):
            path = self.path.split("?", 1)[0]
            notices = {"/payments/approve": "pending", "/payments/cancelled_payment": "cancelled"}
            if path not in ("/payments/complete", "/payments/incomplete", *notices):
                self._send(404, {"error": "not_found"})
                return
            body = self._body()
            if body is None:
                self._send(413, {"error": "body_not_accepted"})
                return
            # Completion, and an incomplete payment the guard completed: only a
            # verified header pays. A verified header that fails is refused,
            # never read as a notice.
            if path == "/payments/complete" or (path == "/payments/incomplete" and self.headers.get_all(HEADER_VERIFIED)):
                try:
                    c = self._verify("verified", body)
                except VerificationError as err:
                    self._refuse("verified", err)
                    return
                self._paid(c)
                return
            try:
                c = self._verify("notice", body)
            except VerificationError as err:
                self._refuse("notice", err)
                return
            self._send(200, {"ok": True, "order": orders.note(c, notices.get(path, "incomplete"))})

    return Handler


def verifier_from_env(env=os.environ):
    secret = env.get("PI_GUARD_SIGNING_KEY", "")
    if not secret.strip():
        raise SystemExit("set PI_GUARD_SIGNING_KEY to the guard's signing_key")
    return Verifier(
        keys=[Key(secret=secret, kid=env.get("PI_GUARD_KEY_ID", ""))],
        issuer=env.get("PI_GUARD_ISSUER") or "caddy-pi-guard",
        audience=env.get("PI_GUARD_AUDIENCE") or "pi-app",
    )


def main():
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer((host, port), make_handler(verifier_from_env()))
    print(f"example app behind caddy-pi-guard listening on http://{host}:{port}", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
