#!/usr/bin/env python3
"""Writes seed corpora for the fuzz targets from the golden vectors.

    python3 fuzz/seed_corpus.py     # from the repository root or from fuzz/

Each vector of crates/wire/vectors/golden.json whose struct is a top-level
body type seeds that type's target; every vector seeds `decode`, prefixed
with the index of its type in `mimid_wire::TYPES` (read from registry.rs).
"""

import hashlib
import json
import pathlib
import re

FUZZ = pathlib.Path(__file__).resolve().parent
WIRE = FUZZ.parent / "crates" / "wire"

TARGETS = {
    "DSRequest": "ds_request",
    "DSResponse": "ds_response",
    "QueueingServiceRequest": "queueing_service_request",
    "QueueingServiceResponse": "queueing_service_response",
    "VerificationKeyRequest": "verification_key_request",
    "VerificationKeyResponse": "verification_key_response",
    "ConnectionKeyPackageRequest": "connection_key_package_request",
    "ConnectionKeyPackageResponse": "connection_key_package_response",
    "GroupKeyPackageRequest": "group_key_package_request",
    "GroupKeyPackageResponse": "group_key_package_response",
    "ProviderSignature": "provider_signature",
    "DSError": "ds_error",
    "MimiDsGroup": "mimi_ds_group",
}


def types_order():
    """The Rust type names of TYPES, in order (find_type is case-insensitive,
    so they match the protocol names up to case)."""
    src = (WIRE / "src" / "registry.rs").read_text()
    body = re.search(r"TYPES: &\[TypeEntry\] = entries!\[(.*?)\];", src, re.S).group(1)
    return [n.strip().lower() for n in body.split(",") if n.strip()]


def write(target, data):
    d = FUZZ / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    order = types_order()
    vectors = json.loads((WIRE / "vectors" / "golden.json").read_text())
    counts = {}
    for v in vectors:
        body = bytes.fromhex(v["hex"])
        target = TARGETS.get(v["struct"])
        if target:
            write(target, body)
            counts[target] = counts.get(target, 0) + 1
        if v["struct"].lower() in order:
            write("decode", bytes([order.index(v["struct"].lower())]) + body)
            counts["decode"] = counts.get("decode", 0) + 1
    for target, n in sorted(counts.items()):
        print(f"{target}: {n} seeds")
    missing = sorted(set(TARGETS.values()) - set(counts))
    if missing:
        print("no golden vector for:", ", ".join(missing))


if __name__ == "__main__":
    main()
