"""Runs the shared vectors (tokens made by the Go signer) through the
framework-neutral core of pi_guard_verify. Always runs: standard library only."""

import unittest
from decimal import Decimal

from pi_guard_verify import Key, VerificationError, Verifier, body_digest

from tests.vectors import VECTORS


def verifier_at(now, kid=VECTORS["kid"]):
    return Verifier(keys=[Key(secret=VECTORS["secret"], kid=kid)], issuer=VECTORS["issuer"],
                    audience=VECTORS["audience"], leeway_seconds=VECTORS["leeway_seconds"], now=lambda: now)


class VectorsTest(unittest.TestCase):
    def test_vectors(self):
        for c in VECTORS["cases"]:
            with self.subTest(c["name"]):
                v = verifier_at(c.get("now") or VECTORS["now"])
                kind = "notice" if c["header"] == "Pi-Payment-Notice" else "verified"
                args = (c["method"], c["path"], c["header_values"], c["body"].encode("utf-8"), kind, c.get("payment_id"))
                if c["expect"] == "valid":
                    claims = v.verify_request(*args)
                    want = c["claims"]
                    self.assertEqual(claims["sub"], want["sub"])
                    self.assertEqual(claims["kind"], want["kind"])
                    self.assertEqual(claims["phase"], want["phase"])
                    self.assertEqual((claims["payment"].get("transaction") or {}).get("txid", ""), want["txid"])
                    self.assertIsInstance(claims["payment"]["amount"], Decimal, "amounts stay exact")
                    self.assertEqual(str(claims["payment"]["amount"]), want["amount"])
                    self.assertEqual(claims["amount_text"], want["amount_text"], "the exact decimal amount, as a string")
                    self.assertEqual(claims.get("uid", ""), want["uid"])
                else:
                    with self.assertRaises(VerificationError) as cm:
                        v.verify_request(*args)
                    self.assertEqual(cm.exception.code, c["error"], str(cm.exception))

    def test_every_error_code_is_covered(self):
        seen = {c["error"] for c in VECTORS["cases"] if c["expect"] == "invalid"}
        self.assertEqual(seen, set(VECTORS["error_codes"]))

    def test_key_without_kid(self):
        v = verifier_at(VECTORS["now"], kid="")
        cases = {c["name"]: c for c in VECTORS["cases"]}
        claims = v.verify_token(cases["unknown-kid"]["header_values"][0], "verified")
        self.assertEqual(claims["kind"], "verified")
        with self.assertRaises(VerificationError) as cm:
            v.verify_token(cases["wrong-secret"]["header_values"][0], "verified")
        self.assertEqual(cm.exception.code, "signature")

    def test_short_secret(self):
        with self.assertRaises(ValueError):
            Verifier(keys=[Key(secret="short")])
        with self.assertRaises(ValueError):
            Verifier(keys=[])

    def test_malformed_never_raises_anything_else(self):
        v = verifier_at(VECTORS["now"])
        tok = VECTORS["cases"][0]["header_values"][0]
        for bad in ["", "a", "a.b", "a.b.c.d", "..", tok + "=", tok.replace(".", ".\n", 1),
                    "e30.e30.", "W10.W10.", "bnVsbA.bnVsbA.", "//79.//79.", tok[:-1], tok[1:]]:
            with self.subTest(bad=bad[:20]):
                with self.assertRaises(VerificationError):
                    v.verify_token(bad, "verified")

    def test_body_digest(self):
        self.assertEqual(body_digest(b""), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU")


if __name__ == "__main__":
    unittest.main()
