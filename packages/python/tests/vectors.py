"""The shared test vectors (examples/testdata/vectors.json, tokens made by the
Go signer) and a verifier configured like them."""

import json
import pathlib

from pi_guard_verify import Key, Verifier

VECTORS = json.loads((pathlib.Path(__file__).resolve().parents[3] / "examples" / "testdata" / "vectors.json")
                     .read_text(encoding="utf-8"))
CASES = {c["name"]: c for c in VECTORS["cases"]}


def vectors_verifier(now=None):
    """A Verifier with the vectors' secret, issuer, audience and clock."""
    return Verifier(keys=[Key(secret=VECTORS["secret"], kid=VECTORS["kid"])], issuer=VECTORS["issuer"],
                    audience=VECTORS["audience"], leeway_seconds=VECTORS["leeway_seconds"],
                    now=lambda: now or VECTORS["now"])
