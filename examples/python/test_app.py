"""Drives the example app over HTTP with tokens made by the Go signer."""

import http.client
import json
import pathlib
import threading
import unittest
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

from app import make_handler  # first: it finds pi_guard_verify in packages/python when not installed
from pi_guard_verify import Key, Verifier

VECTORS = json.loads((pathlib.Path(__file__).parent.parent / "testdata" / "vectors.json").read_text(encoding="utf-8"))

CASES = {c["name"]: c for c in VECTORS["cases"]}


class AppTest(unittest.TestCase):
    def setUp(self):
        # Configured with the secret only; the clock is the vectors'.
        verifier = Verifier(keys=[Key(secret="  " + VECTORS["secret"] + "\n")], now=lambda: VECTORS["now"])
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(verifier))
        self.server.RequestHandlerClass.log_message = lambda *a: None  # quiet tests
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()

    def send(self, case, path=None, header=None, values=None, body=None):
        """Sends a vector's request (or a variant); returns (status, json)."""
        data = (case["body"] if body is None else body).encode("utf-8")
        conn = http.client.HTTPConnection(*self.server.server_address, timeout=10)
        try:
            conn.putrequest(case["method"], path or case["path"])
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(data)))
            for v in case["header_values"] if values is None else values:
                conn.putheader(header or case["header"], v)  # repeated names stay separate
            conn.endheaders(data)
            resp = conn.getresponse()
            return resp.status, json.load(resp)
        finally:
            conn.close()

    def order(self, payment_id):
        with urllib.request.urlopen(self.base + "/orders") as resp:
            for o in json.load(resp)["orders"]:
                if o["payment_id"] == payment_id:
                    return o
        return None

    def test_flow(self):
        approve = CASES["valid-notice-approve"]
        status, _ = self.send(approve)
        self.assertEqual(status, 200)
        pid = approve["claims"]["sub"]
        self.assertEqual(self.order(pid)["status"], "pending")

        for name in ["missing", "notice-as-verified", "wrong-secret", "tampered-amount", "expired", "wrong-body", "alg-none"]:
            with self.subTest(name):
                status, body = self.send(CASES[name], path="/payments/complete")
                self.assertEqual(status, 401)
                self.assertEqual(body["error"], "payment_not_verified")
                self.assertEqual(self.order(pid)["status"], "pending")

        complete = CASES["valid-complete"]
        status, _ = self.send(complete, values=complete["header_values"] * 2)
        self.assertEqual(status, 401, "duplicate header refused")

        status, body = self.send(complete)
        self.assertEqual(status, 200, body)
        self.assertFalse(body["already_recorded"])
        o = self.order(pid)
        self.assertEqual(o["status"], "paid")
        self.assertEqual(o["txid"], complete["claims"]["txid"])
        self.assertEqual(o["amount"], complete["claims"]["amount"])

        status, body = self.send(complete)  # redelivery
        self.assertEqual(status, 200)
        self.assertTrue(body["already_recorded"])
        self.assertEqual(self.order(pid)["deliveries"], 2)

        status, _ = self.send(CASES["valid-notice-cancel"])
        self.assertEqual(status, 200)
        self.assertEqual(self.order(pid)["status"], "paid", "a late cancellation does not un-pay")

    def test_incomplete(self):
        inc = CASES["valid-incomplete"]
        notice = CASES["valid-notice-approve"]
        status, _ = self.send(inc, header="Pi-Payment-Verified", values=notice["header_values"])
        self.assertEqual(status, 401, "a failing verified header is not read as a notice")
        status, _ = self.send(inc)
        self.assertEqual(status, 200)
        self.assertEqual(self.order(inc["claims"]["sub"])["status"], "paid")

    def test_pages(self):
        with urllib.request.urlopen(self.base + "/") as resp:
            self.assertIn(b"example app behind caddy-pi-guard", resp.read())
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(urllib.request.Request(self.base + "/payments/cancelled_payment", data=b"{}", method="POST"))
        self.assertEqual(cm.exception.code, 401)


if __name__ == "__main__":
    unittest.main()
