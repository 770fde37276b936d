"""The Django helpers: always with a fake request (tests/fakes.py), and with
Django itself when it is installed (Debian: python3-django)."""

import json
import unittest

from pi_guard_verify import VerificationError
from pi_guard_verify.django import pi_payment_required, request_path, verify_django_request

from tests.fakes import FakeDjangoRequest
from tests.vectors import CASES, vectors_verifier

try:
    import django
except ImportError:
    django = None


class DjangoHelperTest(unittest.TestCase):
    """verify_django_request on fake requests."""

    def setUp(self):
        self.v = vectors_verifier()

    def test_each_route_and_kind(self):
        for name, kind in [("valid-notice-approve", "notice"), ("valid-complete", "verified"),
                           ("valid-incomplete", "verified"), ("valid-notice-cancel", "notice")]:
            c = CASES[name]
            claims = verify_django_request(self.v, FakeDjangoRequest(c), "verified-or-notice" if "incomplete" in name else kind)
            self.assertEqual((claims["sub"], claims["kind"]), (c["claims"]["sub"], kind), name)

    def test_percent_encoded_path_round_trips(self):
        c = CASES["valid-complete"]
        req = FakeDjangoRequest(c, path="/payments/100%")  # Django decodes; a literal % stays one
        self.assertEqual(request_path(req), "/payments/100%25")
        with self.assertRaises(VerificationError) as cm:
            verify_django_request(self.v, req)
        self.assertEqual(cm.exception.code, "binding")

    def test_refusals(self):
        c = CASES["valid-complete"]
        for req, code in [(FakeDjangoRequest(c, values=[]), "missing"),
                          (FakeDjangoRequest(c, values=c["header_values"] * 2), "malformed"),
                          (FakeDjangoRequest(c, body="{}"), "binding"),
                          (FakeDjangoRequest(CASES["expired"]), "expired")]:
            with self.assertRaises(VerificationError) as cm:
                verify_django_request(self.v, req)
            self.assertEqual(cm.exception.code, code)


@unittest.skipIf(django is None, "Django is not installed for this interpreter (Debian: python3-django)")
class DjangoViewTest(unittest.TestCase):
    """The decorator on real Django requests, the app mounted at a script prefix or not."""

    @classmethod
    def setUpClass(cls):
        from django.conf import settings  # not at module level: the test loader would touch the lazy object

        if not settings.configured:
            settings.configure(SECRET_KEY="tests only " + "x" * 40, ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__,
                               MIDDLEWARE=[], INSTALLED_APPS=[], USE_TZ=True)
            django.setup()

    def setUp(self):
        from django.test import RequestFactory

        self.factory = RequestFactory()
        v = vectors_verifier()

        def answer(request):
            from django.http import JsonResponse

            c = request.pi_payment
            return JsonResponse({"sub": c["sub"], "kind": c["kind"], "body": json.loads(request.body)})

        self.views = {kind: pi_payment_required(v, kind)(answer) for kind in ("verified", "notice", "verified-or-notice")}

    def request(self, case, script_name="", header=None):
        meta = {"HTTP_" + (header or case["header"]).upper().replace("-", "_"): v for v in case["header_values"]}
        return self.factory.post(case["path"][len(script_name):], data=case["body"].encode("utf-8"),
                                 content_type="application/json", SCRIPT_NAME=script_name, **meta)

    def test_views(self):
        for script_name in ("", "/payments"):
            with self.subTest(script_name=script_name):
                req = self.request(CASES["valid-complete"], script_name)
                self.assertEqual(req.path, "/payments/complete")
                res = self.views["verified"](req)
                self.assertEqual(res.status_code, 200, res.content)
                self.assertEqual(json.loads(res.content)["kind"], "verified")
                res = self.views["notice"](self.request(CASES["valid-notice-approve"], script_name))
                self.assertEqual(json.loads(res.content)["kind"], "notice")

    def test_refusal_answers_401(self):
        res = self.views["verified"](self.request(CASES["notice-as-verified"], header="Pi-Payment-Verified"))
        self.assertEqual(res.status_code, 401)
        self.assertEqual(res["Cache-Control"], "no-store")
        body = json.loads(res.content)
        self.assertEqual(body["error"], "payment_not_verified")
        self.assertTrue(body["message"].startswith("kind"))
        res = self.views["verified-or-notice"](self.request(CASES["valid-incomplete"], header="Pi-Payment-Notice"))
        self.assertEqual(json.loads(res.content)["error"], "notice_not_verified")


urlpatterns = []  # ROOT_URLCONF of the test settings

if __name__ == "__main__":
    unittest.main()
