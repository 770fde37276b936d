"""Django helpers: claims from a Django request, and a view decorator.

    from pi_guard_verify import Key, Verifier
    from pi_guard_verify.django import pi_payment_required

    verifier = Verifier(keys=[Key(secret=os.environ["PI_GUARD_SIGNING_KEY"])])

    @csrf_exempt                                   # the guard's callbacks carry no CSRF token
    @require_POST
    @pi_payment_required(verifier, "verified")
    def complete(request):
        c = request.pi_payment                     # the verified claims
        ...

A refused request gets 401 {"error": "payment_not_verified" |
"notice_not_verified", "message": ...} and the view is not called. Django is
imported only when the decorator answers a refusal.
"""

import functools
from urllib.parse import quote

from .core import VerificationError
from .request import check_kind, header_name, kind_for, refusal, split_header_values


def _meta_key(header):
    return "HTTP_" + header.upper().replace("-", "_")


def _values(request, header):
    v = request.META.get(_meta_key(header))
    return split_header_values([] if v is None else [v])


def request_path(request):
    """The full path the guard forwarded (request.path includes the script
    prefix), percent-encoded again so that verify_request's decoding gives
    back exactly the path Django decoded."""
    return quote(request.path, safe="/!$&'()*+,;=:@-._~")


def verify_django_request(verifier, request, kind="verified", payment_id=None):
    """Checks a Django request; returns the claims or raises
    VerificationError. kind: "verified", "notice" or "verified-or-notice".
    The raw body is request.body: read nothing from request.POST before."""
    kind = kind_for(kind, _values(request, "Pi-Payment-Verified"))
    return verifier.verify_request(request.method, request_path(request), _values(request, header_name(kind)),
                                   request.body, kind, payment_id)


def pi_payment_required(verifier, kind="verified"):
    """View decorator: calls the view only when the request's header of kind
    verifies, with the claims in request.pi_payment; otherwise answers 401."""
    check_kind(kind)

    def decorate(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            try:
                request.pi_payment = verify_django_request(verifier, request, kind)
            except VerificationError as err:
                from django.http import JsonResponse  # noqa: PLC0415 (Django is optional)

                refused = kind_for(kind, _values(request, "Pi-Payment-Verified"))
                response = JsonResponse(refusal(refused, err), status=401)
                response["Cache-Control"] = "no-store"
                return response
            return view(request, *args, **kwargs)

        return wrapped

    return decorate
