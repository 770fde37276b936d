"""Flask helpers: claims from a Flask request, and a view decorator.

    from pi_guard_verify import Key, Verifier
    from pi_guard_verify.flask import pi_payment_required

    verifier = Verifier(keys=[Key(secret=os.environ["PI_GUARD_SIGNING_KEY"])])

    @payments.post("/complete")                  # a Blueprint with url_prefix="/payments"
    @pi_payment_required(verifier, "verified")
    def complete():
        c = flask.g.pi_payment                   # the verified claims
        ...

A refused request gets 401 {"error": "payment_not_verified" |
"notice_not_verified", "message": ...} and the view is not called. Flask is
imported only when the decorator runs a request.
"""

import functools
from urllib.parse import quote

from .core import HEADER_VERIFIED, VerificationError
from .request import check_kind, header_name, kind_for, refusal, split_header_values


def request_path(request):
    """The full path the guard forwarded: the mount point (script_root) and the
    path within the app, percent-encoded again so that verify_request's
    decoding gives back exactly the path Flask decoded."""
    return quote(request.script_root + request.path, safe="/!$&'()*+,;=:@-._~")


def verify_flask_request(verifier, request, kind="verified", payment_id=None):
    """Checks a Flask (werkzeug) request; returns the claims or raises
    VerificationError. kind: "verified", "notice" or "verified-or-notice".
    The raw body is read with request.get_data(cache=True), so the view can
    still read it (request.get_json() works after)."""
    kind = kind_for(kind, split_header_values(request.headers.getlist(HEADER_VERIFIED)))
    values = split_header_values(request.headers.getlist(header_name(kind)))
    body = request.get_data(cache=True)
    return verifier.verify_request(request.method, request_path(request), values, body, kind, payment_id)


def pi_payment_required(verifier, kind="verified"):
    """View decorator: calls the view only when the request's header of kind
    verifies, with the claims in flask.g.pi_payment; otherwise answers 401."""
    check_kind(kind)

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            from flask import g, request  # noqa: PLC0415 (Flask is optional)

            try:
                g.pi_payment = verify_flask_request(verifier, request, kind)
            except VerificationError as err:
                refused = kind_for(kind, split_header_values(request.headers.getlist(HEADER_VERIFIED)))
                return refusal(refused, err), 401, {"Cache-Control": "no-store"}
            return view(*args, **kwargs)

        return wrapped

    return decorate
