"""A deterministic generator of hostile Kafka records for the sales topic (no randomness between runs).

Every record carries a (store, date) key of its own (``day(i)``), so that each one ends either as its
own row in sales or as a dead letter, and the test can count them.

* :func:`field_cases`: one valid record per case with ONE field replaced by a JSON fragment at or beyond a
  type boundary (int32/int64/SMALLINT limits, negatives, floats, exponents, NaN/Infinity, booleans, null,
  strings, arrays, objects) or a hostile string (NUL, lone surrogates, bidi marks, fullwidth digits,
  10,000 characters...). Built from JSON text, so the producer's rules (``validate_row`` on
  ``json.loads``) tell whether the job must accept it.
* :func:`structural_cases`: non-objects, nesting, duplicate keys, invalid UTF-8 and other encodings, raw
  NUL bytes, huge documents, trailing garbage, random bytes, hostile Kafka keys.
"""

from __future__ import annotations

import datetime as dt
import json
import random

from app.ingest.schema import FIELDS

BASE_DAY = dt.date(2013, 1, 1)

INT_FRAGMENTS = [
    "0", "1", "-1", "2", "7", "8", "255", "256", "32767", "32768", "-32768", "-32769", "65535", "65536",
    "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967296", "9223372036854775807",
    "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "1" + "0" * 40,
    "1.0", "1.5", "-0.0", "0.0", "1e2", "1E2", "1e308", "1e400", "-1e400", "1e-400",
    "NaN", "Infinity", "-Infinity", "true", "false", "null",
    '"1"', '""', '"7"', '" 1"', "[]", "{}", "[1]", '{"a": 1}', "01", "-01", "0x1", "+1", ".5", "1_000", "--1",
]
STR_FRAGMENTS = [
    '""', '"0"', '"a"', '"b"', '"c"', '"z"', '"00"', '"0 "', '"A"', '"\\u0000"', '"a\\u0000"', '"0\\u0000"',
    '"\\u00e4"', '"\\ud83d\\ude00"', '"\\ud800"', '"\\udfff\\ud800"', '"\\u202e0"', '"\\u0030"', '"\\n"',
    '"' + "x" * 5000 + '"', '"' + "\\u0000" * 1000 + '"', '"' + "\\ud800" * 500 + '"',
    '"2015-05-01"', '"2015-05-01\\u0000"', '"\\uff12\\uff10\\uff11\\uff15-05-01"', '"+2015-05-01"',
    '" 2015-05-01"', '"2015-05-01 "', '"99999-01-01"', '"-0001-01-01"', '"0000-01-01"', '"2015-13-01"',
    '"2015-05-01T00:00:00"', '"2015-05-01Z"', '"20150501"', '"1e10"',
    "0", "1", "-1", "2147483648", "1.5", "null", "true", "[]", "{}", '["0"]', '{"a": "0"}',
]
#: Raw byte strings spliced in place of a string field's JSON text (not valid JSON text).
RAW_STRING_BYTES = [
    b'"\x00"', b'"\xff"', b'"\xc0\xaf"', b'"\xc3"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', b'"a\nb"',
    b'"\x7f"', b'"\xe2\x80\xae"', b"'0'", b'"\\x00"', b'"\\u00"',
]


def day(i: int) -> str:
    return (BASE_DAY + dt.timedelta(days=i)).isoformat()


def base_record(i: int, store: int = 1) -> dict:
    d = BASE_DAY + dt.timedelta(days=i)
    return {
        "schema_version": 1, "store": store, "date": d.isoformat(), "day_of_week": d.isoweekday(), "sales": 1000 + i,
        "customers": 100, "open": 1, "promo": 0, "state_holiday": "0", "school_holiday": 0,
    }


def with_fragment(row: dict, name: str, fragment: bytes) -> bytes:
    """The JSON text of ``row`` with field ``name``'s value replaced by ``fragment`` (raw bytes)."""
    parts = []
    for key, value in row.items():
        text = fragment if key == name else json.dumps(value).encode()
        parts.append(json.dumps(key).encode() + b": " + text)
    return b"{" + b", ".join(parts) + b"}"


def field_cases(start: int) -> list[tuple[str, bytes | None, bytes]]:
    """(label, key, value) per field and boundary fragment; records ``start``, ``start + 1``..."""
    out = []
    i = start
    for name, kind in FIELDS.items():
        fragments = INT_FRAGMENTS if kind == "int" else STR_FRAGMENTS
        for frag in fragments:
            out.append((f"{name}={frag[:40]}", b"1", with_fragment(base_record(i), name, frag.encode())))
            i += 1
    return out


def raw_cases(start: int) -> list[tuple[str, bytes | None, bytes]]:
    """Invalid bytes inside the string fields, and raw bytes in place of integer fields."""
    out = []
    i = start
    for name, kind in FIELDS.items():
        raws = RAW_STRING_BYTES if kind == "str" else [b"\x00", b"\xff", b"1\x00", b"0\xc3"]
        for raw in raws:
            out.append((f"{name}=raw {raw[:20]!r}", b"1", with_fragment(base_record(i), name, raw)))
            i += 1
    return out


def structural_cases(start: int, max_message_bytes: int) -> list[tuple[str, bytes | None, bytes | None]]:
    """Non-objects, nesting, duplicate keys, encodings, NUL bytes, huge documents, odd Kafka keys."""
    i = start
    out: list[tuple[str, bytes | None, bytes | None]] = []

    def nxt() -> dict:
        nonlocal i
        i += 1
        return base_record(i - 1)

    def dumps(row: dict) -> bytes:
        return json.dumps(row).encode()

    for label, value in [
        ("array", b"[]"), ("array of ints", b"[1, 2, 3]"), ("number", b"1"), ("negative", b"-1"),
        ("huge number", b"1e999"), ("string", b'"store"'), ("true", b"true"), ("null", b"null"),
        ("empty bytes", b""), ("space", b" "), ("newline", b"\n"), ("empty object", b"{}"),
        ("NUL", b"\x00"), ("NULs", b"\x00" * 300), ("0xff", b"\xff\xfe"), ("open brace", b"{"),
        ("close brace", b"}"), ("deep arrays", b"[" * 4000 + b"]" * 4000), ("deep objects", b'{"a":' * 2000 + b"1" + b"}" * 2000),
    ]:
        out.append((label, b"1", value))
    out.append(("null value", b"1", None))
    out.append(("array of record", b"1", b"[" + dumps(nxt()) + b"]"))
    out.append(("nested record", b"1", dumps({"record": nxt()})))
    out.append(("record + deep extra", b"1", dumps(nxt())[:-1] + b', "extra": ' + b"[" * 1500 + b"]" * 1500 + b"}"))
    out.append(("record + nested extra", b"1", dumps({**nxt(), "extra": {"a": {"b": {"c": [1, {"d": None}]}}}})))
    out.append(("record + unicode extra", b"1", dumps({**nxt(), "ünï": "\u202e\U0001f600\u0000"})))
    row = nxt()
    out.append(("duplicate store (last bad)", b"1", dumps(row)[:-1] + b', "store": "x"}'))
    row = nxt()
    out.append(("duplicate sales (last negative)", b"1", dumps(row)[:-1] + b', "sales": -1}'))
    row = nxt()
    out.append(("duplicate date (last int)", b"1", dumps(row)[:-1] + b', "date": 5}'))
    row = nxt()
    out.append(("duplicate identical", b"1", dumps(row)[:-1] + b', "sales": ' + str(row["sales"]).encode() + b"}"))
    out.append(("BOM", b"1", b"\xef\xbb\xbf" + dumps(nxt())))
    out.append(("UTF-16", b"1", json.dumps(nxt()).encode("utf-16")))
    out.append(("UTF-32", b"1", json.dumps(nxt()).encode("utf-32")))
    out.append(("latin-1 extra", b"1", dumps(nxt())[:-1] + b', "x": "\xe9"}'))
    out.append(("NUL after record", b"1", dumps(nxt()) + b"\x00"))
    out.append(("NUL inside record", b"1", dumps(nxt())[:-1] + b"\x00}"))
    out.append(("trailing garbage", b"1", dumps(nxt()) + b"x"))
    out.append(("two objects", b"1", dumps(nxt()) + dumps(nxt())))
    out.append(("comment", b"1", b"/* c */" + dumps(nxt())))
    out.append(("single quotes", b"1", dumps(nxt()).replace(b'"', b"'")))
    out.append(("unquoted keys", b"1", dumps(nxt()).replace(b'"store"', b"store")))
    out.append(("trailing comma", b"1", dumps(nxt())[:-1] + b",}"))
    row = nxt()
    padded = dumps(row)[:-1] + b', "pad": "'
    out.append(("exactly max bytes", b"1", padded + b"p" * (max_message_bytes - len(padded) - 2) + b'"}'))
    out.append(("max bytes + 1", b"1", padded + b"p" * (max_message_bytes - len(padded) - 1) + b'"}'))
    out.append(("1 MB", b"1", padded + b"p" * (1_000_000 - len(padded)) + b'"}'))
    out.append(("whitespace padded", b"1", b" " * 4000 + dumps(nxt()) + b"\n" * 3000))
    rng = random.Random(13)
    for n in (1, 7, 64, 500, 5000):
        out.append((f"random {n} bytes", b"1", bytes(rng.getrandbits(8) for _ in range(n))))
    # Hostile Kafka keys (the key is not validated; it is kept in the dead letter, cut like the payload).
    out.append(("no key", None, dumps(nxt())))
    out.append(("empty key", b"", dumps(nxt())))
    out.append(("binary key", b"\x00\xff" * 50, dumps(nxt())))
    out.append(("100 KB key, bad value", b"k" * 100_000, b"not json"))
    out.append(("100 KB key, good value", b"k" * 100_000, dumps(nxt())))
    return out


def hostile_records(max_message_bytes: int) -> list[tuple[str, bytes | None, bytes | None]]:
    """Every case: fields at their boundaries, raw bytes in fields, structure; plus 10 valid records."""
    valid = [(f"valid {i}", b"1", json.dumps(base_record(i)).encode()) for i in range(10)]
    fields = field_cases(10)
    raw = raw_cases(10 + len(fields))
    structure = structural_cases(10 + len(fields) + len(raw), max_message_bytes)
    return valid + fields + raw + structure
