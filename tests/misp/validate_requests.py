#!/usr/bin/env python3
"""Validate requests logged by misp_double.py --request-log against MISP's OpenAPI spec.

Usage: validate_requests.py REQUEST_LOG [--allow-undocumented PATH_REGEX]...

Exit 0 when every logged request is a documented MISP operation with valid
headers, path parameters and JSON body (modulo the known spec deviations listed
in openapi_check.KNOWN_DEVIATIONS); exit 1 naming each bad request and field;
exit 2 on usage errors. Needs the test venv (PyYAML, openapi-schema-validator).
"""

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openapi_check import Checker, read_log  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("request_log")
    p.add_argument("--allow-undocumented", action="append", default=[], metavar="PATH_REGEX",
                   help="skip requests whose path matches (for endpoints the spec does not cover)")
    args = p.parse_args(argv)
    if not Path(args.request_log).exists():
        print(f"{args.request_log}: no such file", file=sys.stderr)
        return 2
    skip = [re.compile(rx) for rx in args.allow_undocumented]
    checker = Checker()
    bad = checked = 0
    for line_no, rec in read_log(args.request_log):
        if any(rx.search(rec["path"]) for rx in skip):
            continue
        checked += 1
        problems = checker.check_request(rec["method"], rec["path"], rec.get("headers"), rec.get("json"))
        if rec.get("raw_body"):
            problems.append("body: not valid JSON")
        for prob in problems:
            bad += 1
            print(f"{args.request_log}:{line_no}: {rec['method']} {rec['path']}: {prob}")
    if checked == 0:
        print(f"{args.request_log}: no requests to validate", file=sys.stderr)
        return 1
    print(f"{checked} request(s) checked, {bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
