"""Runs the shared vectors through pyjwt_verify.py, the PyJWT lines of
docs/header.md. `make test-python` runs this file with an interpreter that has
PyJWT (PI_GUARD_REQUIRE_PYJWT=1 turns a missing PyJWT into a failure)."""

import datetime as _dt
import json
import os
import pathlib
import unittest
from decimal import Decimal
from unittest import mock

try:
    import jwt
    import jwt.api_jwt
    from pyjwt_verify import verify_paid
except ImportError:
    if os.environ.get("PI_GUARD_REQUIRE_PYJWT"):
        raise
    raise unittest.SkipTest("PyJWT is not installed for this interpreter; `make test-python` runs this file with one that has it")

VECTORS = json.loads((pathlib.Path(__file__).parent.parent / "testdata" / "vectors.json").read_text())


def frozen_datetime(now):
    class Frozen(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return _dt.datetime.fromtimestamp(now, tz=tz)

        @classmethod
        def utcnow(cls):
            return _dt.datetime.utcfromtimestamp(now)

    return Frozen


class PyJWTVectorsTest(unittest.TestCase):
    def test_vectors(self):
        for c in VECTORS["cases"]:
            if c["header"] != "Pi-Payment-Verified":
                continue  # the doc's lines read the verified header only
            with self.subTest(c["name"]), mock.patch.object(jwt.api_jwt, "datetime", frozen_datetime(c.get("now") or VECTORS["now"])):
                def run():
                    claims = verify_paid(c["header_values"], c["method"], c["path"], c["body"].encode("utf-8"), VECTORS["secret"])
                    if c.get("payment_id") and claims["sub"] != c["payment_id"]:
                        raise jwt.InvalidTokenError("another payment")
                    return claims
                # A key configured without kid accepts any kid (docs/header.md, rule 3).
                if c["expect"] == "valid" or c["name"] == "unknown-kid":
                    claims = run()
                    if c["expect"] == "valid":
                        self.assertEqual(claims["sub"], c["claims"]["sub"])
                        self.assertEqual(claims["amount_text"], c["claims"]["amount_text"])
                        self.assertEqual(Decimal(claims["amount_text"]), Decimal(c["claims"]["amount"]), "exact amounts")
                elif c.get("strict"):
                    try:
                        run()  # may be accepted: the check adds nothing once the signature holds
                    except jwt.InvalidTokenError:
                        pass
                else:
                    with self.assertRaises(jwt.InvalidTokenError):
                        run()


if __name__ == "__main__":
    unittest.main()
