"""The Flask helpers: always with a fake request (tests/fakes.py), and with
Flask itself when it is installed (Debian: python3-flask)."""

import sys
import types
import unittest
from unittest import mock

from pi_guard_verify import VerificationError
from pi_guard_verify.flask import pi_payment_required, request_path, verify_flask_request

from tests.fakes import FakeFlaskRequest
from tests.vectors import CASES, vectors_verifier

try:
    import flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
except ImportError:
    flask = None


class FlaskHelperTest(unittest.TestCase):
    """verify_flask_request and the decorator on fake requests."""

    def setUp(self):
        self.v = vectors_verifier()

    def test_mounted_app_checks_the_full_path(self):
        c = CASES["valid-complete"]
        req = FakeFlaskRequest(c, script_root="/payments")
        self.assertEqual(req.path, "/complete")
        self.assertEqual(request_path(req), "/payments/complete")
        self.assertEqual(verify_flask_request(self.v, req)["sub"], c["claims"]["sub"])

    def test_each_kind_reads_its_header(self):
        self.assertEqual(verify_flask_request(self.v, FakeFlaskRequest(CASES["valid-notice-approve"]), "notice")["kind"], "notice")
        with self.assertRaises(VerificationError) as cm:
            verify_flask_request(self.v, FakeFlaskRequest(CASES["valid-notice-approve"]), "verified")
        self.assertEqual(cm.exception.code, "missing")

    def test_two_values_joined_by_wsgi_are_refused(self):
        c = CASES["valid-complete"]
        with self.assertRaises(VerificationError) as cm:
            verify_flask_request(self.v, FakeFlaskRequest(c, values=c["header_values"] * 2))
        self.assertEqual(cm.exception.code, "malformed")
        self.assertIn("2 times", str(cm.exception))

    def test_verified_or_notice(self):
        inc, notice = CASES["valid-incomplete"], CASES["valid-notice-approve"]
        self.assertEqual(verify_flask_request(self.v, FakeFlaskRequest(inc), "verified-or-notice")["kind"], "verified")
        # A notice placed in Pi-Payment-Verified is refused as verified, never read as a notice.
        with self.assertRaises(VerificationError) as cm:
            verify_flask_request(self.v, FakeFlaskRequest(notice, header="Pi-Payment-Verified"), "verified-or-notice")
        self.assertEqual(cm.exception.code, "kind")
        self.assertEqual(verify_flask_request(self.v, FakeFlaskRequest(notice), "verified-or-notice")["kind"], "notice")

    def test_decorator_with_a_stand_in_flask_module(self):
        fake = types.ModuleType("flask")
        fake.g = types.SimpleNamespace()
        view = pi_payment_required(self.v, "verified")(lambda: ("paid", fake.g.pi_payment["sub"]))
        with mock.patch.dict(sys.modules, {"flask": fake}):
            fake.request = FakeFlaskRequest(CASES["valid-complete"])
            self.assertEqual(view(), ("paid", CASES["valid-complete"]["claims"]["sub"]))
            fake.request = FakeFlaskRequest(CASES["wrong-secret"])
            body, status, headers = view()
        self.assertEqual(status, 401)
        self.assertEqual(body["error"], "payment_not_verified")
        self.assertTrue(body["message"].startswith("signature"))
        self.assertEqual(headers["Cache-Control"], "no-store")

    def test_unknown_kind_is_a_programming_error(self):
        with self.assertRaises(ValueError):
            pi_payment_required(self.v, "paid")


@unittest.skipIf(flask is None, "Flask is not installed for this interpreter (Debian: python3-flask)")
class FlaskAppTest(unittest.TestCase):
    """A real Flask app: a Blueprint on /payments, and the same app mounted at /payments."""

    def app(self, url_prefix):
        v = vectors_verifier()
        bp = flask.Blueprint("payments", __name__, url_prefix=url_prefix)

        def answer():
            c = flask.g.pi_payment
            return {"sub": c["sub"], "kind": c["kind"], "body": flask.request.get_json(force=True)}

        bp.post("/approve", endpoint="approve")(pi_payment_required(v, "notice")(answer))
        bp.post("/complete", endpoint="complete")(pi_payment_required(v, "verified")(answer))
        bp.post("/incomplete", endpoint="incomplete")(pi_payment_required(v, "verified-or-notice")(answer))
        app = flask.Flask(__name__)
        app.register_blueprint(bp)
        return app

    def post(self, client, case, path=None, header=None):
        return client.post(path or case["path"], data=case["body"].encode("utf-8"),
                           headers=[(header or case["header"], v) for v in case["header_values"]],
                           content_type="application/json")

    def check_routes(self, client):
        for name, kind in [("valid-notice-approve", "notice"), ("valid-complete", "verified"), ("valid-incomplete", "verified")]:
            res = self.post(client, CASES[name])
            self.assertEqual(res.status_code, 200, res.get_data(as_text=True))
            self.assertEqual(res.get_json()["kind"], kind)
            self.assertEqual(res.get_json()["body"]["paymentId"], CASES[name]["claims"]["sub"], "the view still reads the body")
        res = self.post(client, CASES["notice-as-verified"], path="/payments/complete")
        self.assertEqual(res.status_code, 401)
        self.assertEqual(res.get_json()["error"], "payment_not_verified")
        res = self.post(client, CASES["valid-incomplete"], header="Pi-Payment-Notice")
        self.assertEqual(res.status_code, 401)
        self.assertEqual(res.get_json()["error"], "notice_not_verified")

    def test_blueprint_with_url_prefix(self):
        self.check_routes(self.app("/payments").test_client())

    def test_app_mounted_at_payments(self):
        root = flask.Flask("root")
        root.wsgi_app = DispatcherMiddleware(root.wsgi_app, {"/payments": self.app("")})
        self.check_routes(root.test_client())


if __name__ == "__main__":
    unittest.main()
