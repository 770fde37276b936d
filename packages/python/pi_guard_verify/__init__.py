"""Verifies the headers caddy-pi-guard adds to a Pi app's payment callbacks.

    a valid Pi-Payment-Verified header => paid
    anything else (a notice, no header, an invalid header) => not paid

Framework-neutral core (standard library only): Verifier, Key,
VerificationError. Request helpers: pi_guard_verify.flask and
pi_guard_verify.django (neither imports its framework until it is used).
Specification: docs/header.md of caddy-pi-guard.
"""

from .core import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    DEFAULT_LEEWAY_SECONDS,
    HEADER_NOTICE,
    HEADER_VERIFIED,
    MAX_TOKEN_BYTES,
    TYPES,
    Key,
    VerificationError,
    Verifier,
    body_digest,
)
from .request import KINDS, header_name, kind_for, refusal, split_header_values

__all__ = [
    "DEFAULT_AUDIENCE", "DEFAULT_ISSUER", "DEFAULT_LEEWAY_SECONDS", "HEADER_NOTICE", "HEADER_VERIFIED",
    "KINDS", "MAX_TOKEN_BYTES", "TYPES", "Key", "VerificationError", "Verifier", "body_digest",
    "header_name", "kind_for", "refusal", "split_header_values",
]
