#!/usr/bin/env python3
"""Schema-check the custom resources in Kubernetes manifests, offline.

kubernetes-validate knows the built-in kinds only; this checks every document whose API group is
not Kubernetes' own (KEDA's ScaledObject and TriggerAuthentication, the Prometheus Operator's
ServiceMonitor) against the JSON schema beside this file named <group>_<version>_<Kind>.json.
A custom kind without a schema is an error, so a new CRD cannot slip through unchecked.

    python3 deploy/k8s/schemas/check_custom_resources.py deploy/k8s/*.yaml

Needs PyYAML and jsonschema (both installed with kubernetes-validate). Exit 0 when every custom
resource is valid, 1 otherwise; one line per document checked or problem found.
"""

import json
import pathlib
import sys

import jsonschema
import yaml

SCHEMAS = pathlib.Path(__file__).resolve().parent


def is_builtin(api_version):
    """Core (v1), unqualified groups (apps, policy, batch) and *.k8s.io are Kubernetes' own."""
    if "/" not in api_version:
        return True
    group = api_version.split("/", 1)[0]
    return "." not in group or group.endswith(".k8s.io")


def check(path):
    problems = 0
    with open(path, encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d is not None]
    for doc in documents:
        api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        if kind == "Kustomization" or is_builtin(api_version):
            continue
        name = doc.get("metadata", {}).get("name", "?")
        schema_file = SCHEMAS / f"{api_version.replace('/', '_')}_{kind}.json"
        if not schema_file.exists():
            print(f"ERROR {path}: no schema for {api_version} {kind} ({schema_file.name})")
            problems += 1
            continue
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        validator = jsonschema.Draft7Validator(schema)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        for error in errors:
            where = ".".join(str(p) for p in error.absolute_path) or "(root)"
            print(f"ERROR {path}: {kind}/{name}: {where}: {error.message}")
        if errors:
            problems += len(errors)
        else:
            print(f"OK {path}: {kind}/{name} against {schema_file.name}")
    return problems


def main(paths):
    if not paths:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 64
    return 1 if sum(check(p) for p in paths) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
