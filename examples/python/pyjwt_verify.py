"""The Pi-Payment-Verified check with PyJWT (>= 2.4), as docs/header.md shows it.

PyJWT checks the signature (alg pinned to HS256), iss, aud, exp and iat with
the leeway; the lines after jwt.decode check what it does not. The package
pi_guard_verify (packages/python) is the stricter standard-library verifier.
"""

import base64
import hashlib
import hmac
from urllib.parse import unquote

import jwt  # PyJWT: pip install PyJWT, or Debian's python3-jwt


def verify_paid(header_values, method, path, body, secret, issuer="caddy-pi-guard", audience="pi-app"):
    """Returns the claims of a valid Pi-Payment-Verified header; raises
    jwt.InvalidTokenError otherwise. header_values: every value of the header;
    path: the request path; body: the raw body bytes."""
    if len(header_values) != 1:
        raise jwt.InvalidTokenError("need exactly one Pi-Payment-Verified header")
    c = jwt.decode(header_values[0], secret.strip().encode(), algorithms=["HS256"],
                   issuer=issuer, audience=audience, leeway=30,
                   options={"require": ["iat", "exp", "sub"]})
    p = c.get("payment") or {}
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
    if (c.get("kind") != "verified" or c["sub"] != p.get("identifier")
            or (p.get("status") or {}).get("developer_completed") is not True
            or not (p.get("transaction") or {}).get("txid")
            or c.get("htm") != method or c.get("htu") != unquote(path.split("?", 1)[0])
            or not hmac.compare_digest(str(c.get("bsh", "")), digest)):
        raise jwt.InvalidTokenError("not a verified payment for this request")
    return c
