"""What every framework helper shares: the kinds a route can ask for, the
header values of a request, and the 401 answer of a refusal."""

from .core import HEADER_NOTICE, HEADER_VERIFIED

#: "verified" reads Pi-Payment-Verified, "notice" Pi-Payment-Notice;
#: "verified-or-notice" is for the incomplete route: verified when a
#: Pi-Payment-Verified header is present (never falling back to the notice
#: when it fails), else notice. Only claims["kind"] == "verified" means paid.
KINDS = ("verified", "notice", "verified-or-notice")


def header_name(kind):
    """The header a token of kind "verified" or "notice" comes in."""
    return HEADER_NOTICE if kind == "notice" else HEADER_VERIFIED


def check_kind(kind):
    """Raises ValueError for a kind that is not one of KINDS."""
    if kind not in KINDS:
        raise ValueError(f"pi_guard_verify: kind must be one of {', '.join(KINDS)}, not {kind!r}")


def kind_for(kind, verified_values):
    """The kind to check: kind itself, or for "verified-or-notice" "verified"
    when the request has any Pi-Payment-Verified value, else "notice"."""
    check_kind(kind)
    if kind != "verified-or-notice":
        return kind
    return "verified" if verified_values else "notice"


def split_header_values(values):
    """Every value of a header, also when the server joined repeated headers
    into one with commas (WSGI does): a token never holds a comma, so two
    tokens stay two values and are refused as a duplicate."""
    out = []
    for v in values or []:
        out.extend(part.strip() for part in str(v).split(","))
    return out


def refusal(kind, err):
    """The JSON body of the 401 answer to a refused request of kind."""
    code = "notice_not_verified" if kind == "notice" else "payment_not_verified"
    return {"error": code, "message": str(err)}
