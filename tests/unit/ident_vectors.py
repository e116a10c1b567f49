#!/usr/bin/env python3
"""Re-derives the schema fingerprints and call identifiers that
tests/unit/test_schema.c and tests/unit/test_ident.c expect, from the byte
layout written in docs/protocol.md (sections "values" and "identifier").

It shares no code with the C implementation: only hashlib and struct. Run it
with no argument to print every vector; with --dump to also print the full
encoded bytes of the worked examples of docs/protocol.md.

    python3 tests/unit/ident_vectors.py [--dump]
"""
import hashlib
import struct
import sys

SCHEMA_FORMAT = b"p2prpc-schema-v1"
IDENT_FORMAT = b"p2prpc-call-v1"
TAGS = {"int64": 1, "double": 2, "bool": 3, "string": 4, "file": 5}


def u64(n):
    return struct.pack(">Q", n)


def lp(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return u64(len(data)) + data


def schema_bytes(name, inputs, outputs):
    out = lp(SCHEMA_FORMAT) + lp(name)
    for params in (inputs, outputs):
        out += u64(len(params))
        for pname, ptype in params:
            out += lp(pname) + bytes([TAGS[ptype]])
    return out


def fingerprint(name, inputs, outputs):
    return hashlib.sha256(schema_bytes(name, inputs, outputs)).hexdigest()


def value_bytes(ptype, value):
    if ptype == "int64":
        return struct.pack(">q", value)
    if ptype == "double":
        return struct.pack(">d", value)  # IEEE-754 binary64, big-endian, bit-exact
    if ptype == "bool":
        return bytes([1 if value else 0])
    if ptype == "string":
        return lp(value)
    if ptype == "file":
        return bytes.fromhex(value)  # the 32 raw bytes of the content hash
    raise ValueError(ptype)


REF_TAG = 0x80


class Ref:
    """An argument given as another call's output (docs/protocol.md,
    "References"): encoded as tag 0x80 | type, the upstream identifier's 32
    raw bytes, lp(output name)."""

    def __init__(self, identifier, output):
        self.identifier = identifier
        self.output = output


def ident_bytes(name, fp_hex, params, values):
    out = lp(IDENT_FORMAT) + lp(name) + bytes.fromhex(fp_hex) + u64(len(params))
    for (pname, ptype), value in zip(params, values):
        if isinstance(value, Ref):
            out += lp(pname) + bytes([REF_TAG | TAGS[ptype]])
            out += bytes.fromhex(value.identifier) + lp(value.output)
        else:
            out += lp(pname) + bytes([TAGS[ptype]]) + value_bytes(ptype, value)
    return out


def ident(name, fp_hex, params, values):
    return hashlib.sha256(ident_bytes(name, fp_hex, params, values)).hexdigest()


def sha(data):
    return hashlib.sha256(data).hexdigest()


ADD = ("p2prpc_add", [("a", "int64"), ("b", "int64")], [("sum", "int64")])
ANALYZE = (
    "p2prpc_analyze_large_file",
    [("video_handle", "file"), ("arg2", "int64")],
    [("results_file1", "file"), ("results_file2", "file"), ("res_var", "int64")],
)
ALL = (
    "p2prpc_all_types",
    [("i", "int64"), ("d", "double"), ("b", "bool"), ("s", "string"), ("f", "file")],
    [("out", "string")],
)
# One-input schemas for the edge values; "x" takes each type in turn.
ONE = {t: ("p2prpc_one", [("x", t)], [("y", "int64")]) for t in TAGS}

EDGES = [
    ("int64 min", "int64", -(2**63)),
    ("int64 max", "int64", 2**63 - 1),
    ("int64 zero", "int64", 0),
    ("int64 minus one", "int64", -1),
    ("double +0.0", "double", 0.0),
    ("double -0.0", "double", -0.0),
    ("double 1.5", "double", 1.5),
    ("double smallest subnormal", "double", 5e-324),
    ("bool false", "bool", False),
    ("bool true", "bool", True),
    ("empty string", "string", ""),
    ("unicode string", "string", "h\u00e9llo \u2713 \U0001F600"),
    ("file of empty content", "file", sha(b"")),
]


def main():
    args = sys.argv[1:]
    if args and args[0] == "--check":
        return check(args[1:])
    dump = "--dump" in args
    for label, schema in (("add", ADD), ("analyze", ANALYZE), ("all types", ALL)):
        print(f"fingerprint {label}: {fingerprint(*schema)}")
    for t, schema in ONE.items():
        print(f"fingerprint one/{t}: {fingerprint(*schema)}")

    add_fp = fingerprint(*ADD)
    print(f"ident add(1, 2): {ident(ADD[0], add_fp, ADD[1], [1, 2])}")
    analyze_fp = fingerprint(*ANALYZE)
    video = sha(b"hello world\n")
    print(f"ident analyze(sha('hello world\\n'), 42): "
          f"{ident(ANALYZE[0], analyze_fp, ANALYZE[1], [video, 42])}")
    upstream = ident(ANALYZE[0], analyze_fp, ANALYZE[1], [video, 42])
    print(f"ident analyze(ref(analyze(...), 'results_file1'), 7): "
          f"{ident(ANALYZE[0], analyze_fp, ANALYZE[1], [Ref(upstream, 'results_file1'), 7])}")
    print(f"ident analyze(ref(analyze(...), 'results_file2'), 7): "
          f"{ident(ANALYZE[0], analyze_fp, ANALYZE[1], [Ref(upstream, 'results_file2'), 7])}")
    all_values = [-1, 0.1, True, "h\u00e9llo", sha(b"abc")]
    print(f"ident all types: {ident(ALL[0], fingerprint(*ALL), ALL[1], all_values)}")
    for label, t, value in EDGES:
        name, params, outputs = ONE[t]
        print(f"ident one {label}: {ident(name, fingerprint(name, params, outputs), params, [value])}")

    if dump:
        print("\nschema bytes of p2prpc_add:")
        print(schema_bytes(*ADD).hex())
        print("\nidentifier bytes of p2prpc_add(a=1, b=2):")
        print(ident_bytes(ADD[0], add_fp, ADD[1], [1, 2]).hex())


def check(sources):
    """Fails unless every vector printed by main() appears in one of `sources`
    (the C tests), so the C constants and this script cannot drift apart."""
    import contextlib
    import io
    import re

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main_args, sys.argv[1:] = sys.argv[1:], []
        main()
        sys.argv[1:] = main_args
    text = "".join(open(path, encoding="utf-8").read() for path in sources)
    missing = []
    lines = buf.getvalue().splitlines()
    for line in lines:
        value = line.rpartition(": ")[2]
        if re.fullmatch(r"[0-9a-f]{64}", value) and value not in text:
            missing.append(line)
    for line in missing:
        print(f"not asserted by the C tests: {line}", file=sys.stderr)
    print(f"ident vectors: {len(lines) - len(missing)} asserted by the C tests, {len(missing)} not")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
