"""The framework-neutral verifier: tokens and requests, standard library only.

HS256 only. Specification: docs/header.md of caddy-pi-guard.

    a valid Pi-Payment-Verified header => paid
    anything else (notice, missing, invalid) => not paid

    v = Verifier(keys=[Key(secret=os.environ["PI_GUARD_SIGNING_KEY"])])
    claims = v.verify_request("POST", "/payments/complete",
                              headers.get_all("Pi-Payment-Verified") or [],
                              raw_body, kind="verified")

The Flask and Django helpers (pi_guard_verify.flask, pi_guard_verify.django)
call verify_request with the request's full path and raw body.
"""

import base64
import hashlib
import hmac
import json
import math
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import unquote

HEADER_VERIFIED = "Pi-Payment-Verified"
HEADER_NOTICE = "Pi-Payment-Notice"
TYPES = {"verified": "pi-payment-verified+jwt", "notice": "pi-payment-notice+jwt"}
DEFAULT_ISSUER = "caddy-pi-guard"
DEFAULT_AUDIENCE = "pi-app"
DEFAULT_LEEWAY_SECONDS = 30
MAX_TOKEN_BYTES = 32 * 1024
MIN_SECRET_BYTES = 32
_MAX_UNIX_TIME = 253402300799  # 9999-12-31T23:59:59Z
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_PAYMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class VerificationError(Exception):
    """A refusal. ``code`` is one of: missing, malformed, signature, expired,
    not_yet_valid, issuer, audience, kind, binding, not_completed, payment_id
    (the codes of examples/testdata/vectors.json)."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Key:
    """An HS256 key: the guard's signing_key and, optionally, its kid.

    A str secret is used as its UTF-8 bytes with surrounding whitespace
    removed, as the guard does. A key without kid is tried for any token whose
    kid names no other key (list two keys while rotating)."""

    secret: object  # str or bytes
    kid: str = ""

    def secret_bytes(self):
        s = self.secret
        return s.strip().encode("utf-8") if isinstance(s, str) else bytes(s)


def body_digest(body):
    """The "bsh" claim: base64url (no padding) SHA-256 of the body bytes."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode("ascii")


def _b64decode(seg):
    """Strict base64url: no padding, and canonical (unused bits zero), so two
    different strings never decode to the same token."""
    if not _B64URL.fullmatch(seg) or len(seg) % 4 == 1:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != seg:
        raise ValueError("non-canonical base64url")
    return raw


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _is_int(v):
    return type(v) is int  # bool is a subclass of int: refuse it


def _nonempty_str(v):
    return isinstance(v, str) and v != ""


def _fail(code, message):
    raise VerificationError(code, message)


class Verifier:
    """Checks Pi-Payment-Verified / Pi-Payment-Notice tokens.

    now: a function returning the current Unix time in seconds (injectable)."""

    def __init__(self, keys, issuer=DEFAULT_ISSUER, audience=DEFAULT_AUDIENCE,
                 leeway_seconds=DEFAULT_LEEWAY_SECONDS, now=time.time):
        if not keys:
            raise ValueError("verify: no keys")
        self._keys = []
        for k in keys:
            secret = k.secret_bytes()
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(f"verify: HS256 secret is {len(secret)} bytes, must be at least {MIN_SECRET_BYTES}")
            self._keys.append((k.kid or "", secret))
        self.issuer, self.audience = issuer, audience
        self.leeway = int(leeway_seconds)
        self.now = now

    def _candidates(self, kid):
        if kid:
            named = [s for k, s in self._keys if k == kid]
            if named:
                return named
            anonymous = [s for k, s in self._keys if k == ""]
            if not anonymous:
                _fail("signature", f"unknown key id {kid!r}")
            return anonymous
        return [s for _, s in self._keys]

    def verify_token(self, token, kind):
        """Checks a token of kind "verified" or "notice" without a request and
        returns its claims (amounts as Decimal)."""
        if kind not in TYPES:
            _fail("kind", f"unknown kind {kind!r}")
        if not isinstance(token, str) or token == "":
            _fail("malformed", "empty token")
        if len(token) > MAX_TOKEN_BYTES:
            _fail("malformed", "token too long")
        parts = token.split(".")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            _fail("malformed", "not a compact JWS")
        try:
            header_raw, payload_raw, sig = (_b64decode(p) for p in parts)
            header = json.loads(header_raw.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as e:
            _fail("malformed", f"unreadable token: {e}")
        if not isinstance(header, dict):
            _fail("malformed", "JWT header is not an object")

        # Pin the algorithm: only HS256 is configured; "none", EdDSA, ... are
        # refused before any key is used.
        if header.get("alg") != "HS256":
            _fail("signature", f"algorithm {header.get('alg')!r} is not accepted")
        if "jwk" in header or "crit" in header:
            _fail("signature", "jwk/crit headers are not accepted")
        kid = header.get("kid", "")
        if not isinstance(kid, str):
            _fail("malformed", "kid is not a string")
        signing_input = (parts[0] + "." + parts[1]).encode("ascii")
        if not any(hmac.compare_digest(hmac.new(secret, signing_input, hashlib.sha256).digest(), sig)
                   for secret in self._candidates(kid)):
            _fail("signature", "signature does not verify")

        try:
            c = json.loads(payload_raw.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as e:
            _fail("malformed", f"claims: {e}")
        if not isinstance(c, dict):
            _fail("malformed", "claims are not an object")
        self._check_claims(header, c, kind)
        return c

    def _check_claims(self, header, c, kind):
        if header.get("typ") != TYPES[kind]:
            _fail("kind", f"typ is {header.get('typ')!r}, want {TYPES[kind]!r}")
        if c.get("kind") != kind:
            _fail("kind", f"kind is {c.get('kind')!r}, want {kind!r}")
        if not isinstance(c.get("iss"), str) or not isinstance(c.get("aud"), str):
            _fail("malformed", "iss and aud must be strings")
        if c["iss"] != self.issuer:
            _fail("issuer", f"iss is {c['iss']!r}")
        if c["aud"] != self.audience:
            _fail("audience", f"aud is {c['aud']!r}")
        iat, exp = c.get("iat"), c.get("exp")
        if not (_is_int(iat) and _is_int(exp) and 0 < iat <= _MAX_UNIX_TIME and 0 < exp <= _MAX_UNIX_TIME):
            _fail("malformed", "iat and exp must be Unix times in seconds")
        if exp <= iat:
            _fail("malformed", "exp is not after iat")
        now = math.floor(self.now())
        if now >= exp + self.leeway:
            _fail("expired", f"exp {exp}, now {now}")
        if iat > now + self.leeway:
            _fail("not_yet_valid", f"iat {iat}, now {now}")
        for name in ("jti", "phase", "htm", "htu", "bsh"):
            if not _nonempty_str(c.get(name)):
                _fail("malformed", f"{name} is required")
        sub = c.get("sub")
        if not isinstance(sub, str) or not _PAYMENT_ID.fullmatch(sub):
            _fail("malformed", "sub is not a payment id")
        p = c.get("payment")
        if not isinstance(p, dict):
            _fail("malformed", "payment is required")
        if p.get("identifier") != sub:
            _fail("payment_id", "sub differs from payment.identifier")
        if kind == "verified":
            status = p.get("status") if isinstance(p.get("status"), dict) else {}
            tx = p.get("transaction") if isinstance(p.get("transaction"), dict) else {}
            if status.get("developer_completed") is not True or not _nonempty_str(tx.get("txid")):
                _fail("not_completed", f"payment {sub} is not completed with a transaction")

    def verify_request(self, method, path, header_values, body, kind="verified", payment_id=None):
        """Checks a request: header_values are all the values of the header
        (Pi-Payment-Verified for kind "verified", Pi-Payment-Notice for
        "notice"), path the request target (any query string is ignored),
        body the raw body bytes. payment_id, if given, is required as sub."""
        name = HEADER_NOTICE if kind == "notice" else HEADER_VERIFIED
        values = list(header_values or [])
        if not values:
            _fail("missing", f"no {name} header")
        if len(values) > 1:
            _fail("malformed", f"{name} header appears {len(values)} times")
        c = self.verify_token(values[0], kind)
        if payment_id is not None and c["sub"] != payment_id:
            _fail("payment_id", f"token is for payment {c['sub']!r}")
        if c["htm"] != method:
            _fail("binding", f"token is for method {c['htm']!r}")
        if c["htu"] != unquote(path.split("?", 1)[0]):
            _fail("binding", f"token is for path {c['htu']!r}")
        if not hmac.compare_digest(body_digest(body or b"").encode("ascii"), c["bsh"].encode("utf-8")):
            _fail("binding", "body digest differs")
        return c
