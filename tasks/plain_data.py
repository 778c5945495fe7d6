"""Plain data across a process boundary: values of exact builtin types only, so nothing with code crosses it.

The code scorer's checker process compares what a completion returned with the test's expected values. What comes back
is decoded from JSON into fresh builtin objects, so an object whose `__eq__` always answers True, an `int` subclass
or a NaN-like trick cannot reach the comparison: anything that is not exactly None, bool, int, float, complex, str,
bytes, list, tuple, dict, set or frozenset (subclasses included) is refused when it is encoded.
"""

from __future__ import annotations

import json
from typing import Any

# Scalars JSON writes natively (floats keep NaN, inf and -0.0 through Python's json); every container is tagged,
# so a JSON array in the encoding is always ["tag", payload] and decoding is unambiguous.
NATIVE_TYPES = (type(None), bool, int, float, str)
SEQUENCE_TYPES = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


class NotPlainData(TypeError):
    """A value that is not plain data of an exact builtin type."""


def to_plain(value: Any) -> Any:
    """`value` as a JSON-ready tree, refusing any type but the exact builtins listed in the module docstring."""
    kind = type(value)
    if kind in NATIVE_TYPES:
        return value
    if kind is complex:
        return ["complex", [value.real, value.imag]]
    if kind is bytes:
        return ["bytes", value.hex()]
    if kind is dict:
        return ["dict", [[to_plain(key), to_plain(item)] for key, item in value.items()]]
    for tag, sequence_type in SEQUENCE_TYPES.items():
        if kind is sequence_type:
            return [tag, [to_plain(item) for item in value]]
    raise NotPlainData(f"{kind.__module__}.{kind.__qualname__} is not plain data (exact builtin types only)")


def from_plain(tree: Any) -> Any:
    """The value `to_plain` encoded, built from fresh builtin objects."""
    if type(tree) is not list:
        return tree
    tag, payload = tree
    if tag == "complex":
        return complex(*payload)
    if tag == "bytes":
        return bytes.fromhex(payload)
    if tag == "dict":
        return {from_plain(key): from_plain(item) for key, item in payload}
    return SEQUENCE_TYPES[tag](from_plain(item) for item in payload)


def encode(value: Any) -> bytes:
    """`value` as UTF-8 JSON; NotPlainData (or RecursionError for a cycle) if it is not plain data."""
    return json.dumps(to_plain(value), ensure_ascii=False).encode("utf-8")


def decode(data: bytes) -> Any:
    """The value `encode` wrote."""
    return from_plain(json.loads(data.decode("utf-8")))
