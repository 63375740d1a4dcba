"""Validate MISP requests/responses against MISP's own OpenAPI spec.

Shared by test_openapi.py and validate_requests.py. Needs the test venv
(openapi-schema-validator, jsonschema, PyYAML).

Validation is strict OpenAPI 3.0 (OAS30Validator with format checks). Where the
published spec is known to disagree with what real MISP accepts or returns,
the disagreement is listed below, once, with the reason; a schema error is
forgiven only when one of these narrow rules explains it. Nothing else is
relaxed.
"""

import json
import re
from pathlib import Path

import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker

SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "misp-openapi" / "openapi.yaml"

# --------------------------------------------------------------------------- deviations
#
# Each entry: (id, applies to "request"/"response", why). The predicates live
# in _rule_allows() and are keyed by these ids.
KNOWN_DEVIATIONS = [
    ("flag-as-0-1", "request",
     "MISP reads restSearch/edit flags with PHP truthiness, so 0/1 (and \"0\"/\"1\") are accepted "
     "where the spec says boolean (to_ids, published, enforceWarninglist, deleted, metadata...). "
     "PyMISP itself sends 0/1 (_make_misp_bool)."),
    ("filter-as-list", "request",
     "restSearch filters go through MISP's convert_filters(), which accepts a list of values "
     "(e.g. type: [\"ip-dst\", \"domain\"], eventid: [\"3\", \"4\"], deleted: [0, 1]); the spec types "
     "them as a single value. Allowed only when every list element is itself valid."),
    ("number-for-digit-string", "request",
     "ids, enums and timestamps typed as digit strings are accepted as JSON numbers by MISP "
     "(PyMISP sends distribution/threat_level_id/analysis/timestamp as ints). Allowed only when "
     "the decimal string form of the number is valid."),
    ("php-empty-array", "response",
     "PHP's json_encode renders an empty associative array as [], so objects that are empty "
     "(e.g. UserSetting of a user without settings) come back as []."),
]
DEVIATION_IDS = {d[0] for d in KNOWN_DEVIATIONS}

# Requests whose URL differs from the spec's path templates only by MISP routing sugar.
PATH_ALIASES = [
    # ".json" suffix selects the output format (e.g. /servers/getPyMISPVersion.json).
    ("json-suffix", re.compile(r"\.json$"), ""),
    # CakePHP named parameters (/events/add/metadata:1, /attributes/add/3/breakOnDuplicate:0).
    ("named-params", re.compile(r"(/[A-Za-z_]+:[^/]*)+$"), ""),
]
# The spec documents the user view only under /admin; MISP serves the same body at
# /users/view/me for the key's own user (PyMISP's constructor calls it).
USER_VIEW_ALIAS = (re.compile(r"^/users/view/[^/]+$"), "/admin/users/view/{userId}", "get")
# MISP routes accept POST for actions the spec lists as PUT/DELETE (PyMISP uses POST).
METHOD_FALLBACK = {"post": ("put", "delete")}


def load_spec(path=SPEC_PATH):
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    # The shipped spec repeats "text" in AttributesRestSearchReturnFormat's enum, which
    # OpenAPI/JSON Schema forbid (uniqueItems). Harmless for validation; dedupe in memory
    # so strict validators accept the document. The file on disk stays byte-exact.
    fmt = spec["components"]["schemas"]["AttributesRestSearchReturnFormat"]
    fmt["enum"] = list(dict.fromkeys(fmt["enum"]))
    return spec


class Checker:
    def __init__(self, spec=None):
        self.spec = spec or load_spec()
        self.components = self.spec["components"]
        self.routes = []
        for template, item in self.spec["paths"].items():
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            self.routes.append((re.compile(rx), template, item))
        # Most specific first, so /events/view/{id} never shadows a literal path.
        self.routes.sort(key=lambda r: (r[1].count("{"), -len(r[1])))

    # ---- schema plumbing
    def _resolve(self, obj):
        while isinstance(obj, dict) and "$ref" in obj:
            ref = obj["$ref"]
            assert ref.startswith("#/"), ref
            node = self.spec
            for part in ref[2:].split("/"):
                node = node[part]
            obj = node
        return obj

    def _validator(self, schema):
        # Wrap so that "#/components/..." refs resolve inside this root document.
        return OAS30Validator({"allOf": [schema], "components": self.components},
                              format_checker=oas30_format_checker)

    # ---- routing
    def operation(self, method, path):
        """-> (template, method_used, operation, notes) or (None, None, None, notes)."""
        notes = []
        path = path.split("?", 1)[0]
        for name, rx, repl in PATH_ALIASES:
            new = rx.sub(repl, path)
            if new != path:
                notes.append(name)
                path = new
        method = method.lower()
        if USER_VIEW_ALIAS[0].match(path) and method == "get":
            item = self.spec["paths"][USER_VIEW_ALIAS[1]]
            return USER_VIEW_ALIAS[1], "get", item["get"], notes + ["user-view-alias"]
        for rx, template, item in self.routes:
            if not rx.match(path):
                continue
            if method in item:
                return template, method, item[method], notes
            for alt in METHOD_FALLBACK.get(method, ()):
                if alt in item:
                    return template, alt, item[alt], notes + [f"{method}-for-{alt}"]
        return None, None, None, notes

    # ---- error filtering
    def _rule_allows(self, err, where):
        inst, kw, want = err.instance, err.validator, err.validator_value
        if where == "request":
            if kw == "type" and want == "boolean" and not isinstance(inst, bool) and inst in (0, 1, "0", "1"):
                return "flag-as-0-1"
            # A list where one value is specified fails several keywords (type, enum,
            # maxLength...) at once; each is forgiven only if every element is valid.
            if isinstance(inst, list) and inst and err.schema.get("type") not in ("array", None):
                if all(not self._problems(err.schema, el, where) for el in inst):
                    return "filter-as-list"
            if kw in ("type", "enum", "pattern") and isinstance(inst, int) and not isinstance(inst, bool):
                if not self._problems(err.schema, str(inst), where):
                    return "number-for-digit-string"
        if where == "response" and kw == "type" and want == "object" and inst == []:
            return "php-empty-array"
        return None

    def _allowed(self, err, where):
        if err.validator in ("oneOf", "anyOf") and err.context:
            branches = {}
            for sub in err.context:
                branches.setdefault(sub.schema_path[0], []).append(sub)
            # One branch whose every failure is a listed deviation makes the value acceptable.
            # (For oneOf this could admit a value matching two branches; MISP itself has no
            # oneOf semantics, so "some branch fits" is the faithful reading.)
            return any(all(self._allowed(s, where) for s in subs) for subs in branches.values())
        return self._rule_allows(err, where) is not None

    def _problems(self, schema, instance, where):
        out = []
        for err in self._validator(schema).iter_errors(instance):
            if not self._allowed(err, where):
                out.append(err)
        return out

    @staticmethod
    def _fmt(err):
        loc = "/".join(str(p) for p in err.absolute_path) or "<root>"
        return f"{loc}: {err.message[:300]}"

    # ---- public API
    def check_request(self, method, path, headers, body):
        """Problems (list of str) with a request as logged by misp_double --request-log."""
        template, _, op, notes = self.operation(method, path)
        if op is None:
            return [f"{method} {path}: not an operation of the MISP OpenAPI spec"]
        problems = []
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        auth = headers.get("authorization", "")
        if not auth.strip():
            problems.append("header Authorization: missing (spec security ApiKeyAuth)")
        elif auth.lower().startswith("bearer "):
            problems.append("header Authorization: MISP expects the bare key, not 'Bearer <key>'")
        if "json" not in headers.get("accept", ""):
            problems.append("header Accept: should be application/json (spec: Accept and Content-Type headers)")
        # Path parameters.
        segs, tsegs = path.split("?")[0].split("/"), template.split("/")
        if "user-view-alias" not in notes:
            params = {self._resolve(p)["name"]: self._resolve(p) for p in op.get("parameters", [])}
            for seg, tseg in zip(segs, tsegs):
                if tseg.startswith("{") and tseg[1:-1] in params:
                    for e in self._problems(params[tseg[1:-1]]["schema"], seg.split(".json")[0], "request"):
                        problems.append(f"path parameter {tseg[1:-1]}={seg!r}: {e.message[:200]}")
        rb = self._resolve(op.get("requestBody")) if op.get("requestBody") else None
        if rb and body is not None:
            if "json" not in headers.get("content-type", ""):
                problems.append("header Content-Type: should be application/json for a JSON body")
            schema = rb.get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                problems += [f"body {self._fmt(e)}" for e in self._problems(schema, body, "request")]
        elif rb and rb.get("required") and body is None:
            problems.append("body: required by the spec but absent")
        return problems

    def check_response(self, method, path, status, body):
        template, _, op, _ = self.operation(method, path)
        if op is None:
            return [f"{method} {path}: not an operation of the MISP OpenAPI spec"]
        responses = op.get("responses", {})
        resp = responses.get(str(status)) or responses.get("default")
        if resp is None:
            return [f"{method} {path}: status {status} not documented"]
        resp = self._resolve(resp)
        schema = resp.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return []
        return [f"{self._fmt(e)}" for e in self._problems(schema, body, "response")]

    def check_schema(self, schema_name, instance, where="response"):
        """Validate against a named component schema (e.g. the unwrapped Sighting)."""
        schema = {"$ref": f"#/components/schemas/{schema_name}"}
        return [self._fmt(e) for e in self._problems(schema, instance, where)]


def read_log(path):
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                yield n, json.loads(line)
