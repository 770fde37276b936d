"""Minimal stand-ins for Flask's and Django's request objects: only what the
helpers read, so that the helpers are tested where the frameworks are not
installed. Built from a vector case (its method, path, header values, body)."""


class FakeHeaders:
    """werkzeug's Headers: getlist(name), case-insensitive. WSGI joins
    repeated header lines with ", ", so two values arrive as one."""

    def __init__(self, pairs):
        self._pairs = pairs

    def getlist(self, name):
        joined = ", ".join(v for k, v in self._pairs if k.lower() == name.lower())
        return [joined] if joined else []


class FakeFlaskRequest:
    """A werkzeug request mounted at script_root: path is the rest, decoded."""

    def __init__(self, case, script_root="", path=None, header=None, values=None, body=None):
        full = path if path is not None else case["path"]
        self.method = case["method"]
        self.script_root = script_root
        self.path = full[len(script_root):]
        self.headers = FakeHeaders([(header or case["header"], v) for v in (case["header_values"] if values is None else values)])
        self._body = (case["body"] if body is None else body).encode("utf-8")

    def get_data(self, cache=True):
        return self._body


class FakeDjangoRequest:
    """A Django HttpRequest: path (script prefix included, decoded), META with
    the headers as HTTP_* keys joined with ",", body bytes."""

    def __init__(self, case, path=None, header=None, values=None, body=None):
        self.method = case["method"]
        self.path = path if path is not None else case["path"]
        values = case["header_values"] if values is None else values
        self.META = {}
        if values:
            self.META["HTTP_" + (header or case["header"]).upper().replace("-", "_")] = ",".join(values)
        self.body = (case["body"] if body is None else body).encode("utf-8")
