#!/usr/bin/env python3
"""Validates configuration documents against schemas/*.schema.json with an independent
implementation: ruamel.yaml (YAML 1.2) to read, Python jsonschema (draft 2020-12) to check.

    scripts/check-schemas.py DIR...

Every YAML document outside `.github/`, `drafts/` and `policies/data/` must be valid for its
kind. Exits 1 on the first directory with an invalid document, listing every error.
"""
import datetime
import json
import pathlib
import sys

import jsonschema
from ruamel.yaml import YAML

ROOT = pathlib.Path(__file__).resolve().parent.parent
SKIPPED = (".github/", "drafts/", "policies/data/")


def plain(value):
    """ruamel reads unquoted dates as dates; resources hold them as strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def main(dirs):
    validators = {}
    for path in sorted((ROOT / "schemas").glob("*.schema.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[schema["title"]] = jsonschema.Draft202012Validator(schema)
    yaml = YAML(typ="safe", pure=True)
    failed = False
    for directory in dirs:
        base = pathlib.Path(directory)
        count = 0
        for path in sorted(base.rglob("*.y*ml")):
            relative = path.relative_to(base).as_posix()
            if relative.startswith(SKIPPED):
                continue
            for document in yaml.load_all(path.read_text()):
                if document is None:
                    continue
                document = plain(document)
                count += 1
                for error in validators[document["kind"]].iter_errors(document):
                    failed = True
                    where = "/".join(str(p) for p in error.absolute_path)
                    print(f"{relative}: {where}: {error.message}")
        print(f"{directory}: {count} documents checked against schemas/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
