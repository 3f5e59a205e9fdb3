#!/usr/bin/env python3
"""Verify an auditkit chain export without auditkit.

Usage: python3 verify_chain.py EXPORT.ndjson

The export is what `auditkit export -format chain` (store.FormatChain) writes: one JSON object a
line, {"seq": N, "fields": [34 strings or nulls; 32 for records of version 1 or 2],
"row_hash": "hex"}, in seq order, with field 3
(prev_hash) in hex. Every row_hash is recomputed from the fields as docs/chain.md specifies, and
every prev_hash compared with the row_hash of the line before. Prints OK, the number of records
and the last row_hash (compare it with a signed checkpoint or manifest), or BAD, the first bad
seq and why, and exits 1. Python 3 standard library only.
"""
import hashlib
import json
import struct
import sys

MAGIC = b"auditkit-chain-v1\x00"
FIELDS = 34  # record version 3 and later
FIELDS_V2 = 32  # record versions 1 and 2: no trace context fields


def field_count(fields):
    """The number of fields of a record's encoding, decided by its version (field 32)."""
    return FIELDS_V2 if len(fields) >= FIELDS_V2 and fields[FIELDS_V2 - 1] in ("1", "2") else FIELDS


def encode(fields):
    """The canonical encoding of one record: magic, then each field framed."""
    out = [MAGIC]
    for i, v in enumerate(fields):
        if v is None:
            out.append(b"\x00")
            continue
        b = bytes.fromhex(v) if i == 2 else v.encode("utf-8")
        out.append(b"\x01" + struct.pack(">I", len(b)) + b)
    return b"".join(out)


def bad(seq, why):
    print(f"BAD {seq}: {why}")
    sys.exit(1)


def main(path):
    prev_seq, prev_hash, first_prev, rows = None, None, None, 0
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                seq, fields, row_hash = rec["seq"], rec["fields"], rec["row_hash"]
                assert isinstance(seq, int) and len(fields) == field_count(fields)
                assert fields[1] == str(seq) and len(bytes.fromhex(fields[2])) == 32
            except (ValueError, KeyError, TypeError, AssertionError):
                bad(prev_seq + 1 if prev_seq is not None else 0, f"line {n} is not a chain record")
            if prev_seq is not None and seq != prev_seq + 1:
                bad(min(seq, prev_seq + 1), f"line {n} has seq {seq}, expected {prev_seq + 1}")
            if prev_seq is None:
                first_prev = fields[2]
                if seq == 1 and fields[2] != "00" * 32:
                    bad(seq, "the first record's prev_hash is not 32 zero bytes")
            elif fields[2] != prev_hash:
                bad(seq, f"prev_hash {fields[2][:16]}... is not the row_hash of seq {prev_seq}")
            got = hashlib.sha256(encode(fields)).hexdigest()
            if got != row_hash:
                bad(seq, f"row_hash {row_hash[:16]}... but the fields hash to {got[:16]}...")
            prev_seq, prev_hash, rows = seq, row_hash, rows + 1
    print(f"OK {rows} records, first prev_hash {first_prev}, last row_hash {prev_hash}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
