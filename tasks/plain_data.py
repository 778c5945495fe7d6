"""Plain data across a process boundary: values of exact builtin types only, so nothing with code crosses it.

The code scorer's checker process compares what a completion returned with the test's expected values. What comes back
is decoded from JSON into fresh builtin objects, so an object whose `__eq__` always answers True, an `int` subclass
or a NaN-like trick cannot reach the comparison: anything that is not exactly None, bool, int, float, complex, str,
bytes, list, tuple, dict, set or frozenset (subclasses included) is refused when it is encoded. Every such value
crosses exactly: ints past Python's limit on decimal text, strings with lone surrogates (which UTF-8 cannot hold).
Between the checker and the solution's process they travel length-prefixed over pipes (`write_message`).
"""

from __future__ import annotations

import json
import os
import struct

# Scalars JSON writes natively (floats keep NaN, inf and -0.0 through Python's json); every container is tagged,
# so a JSON array in the encoding is always ["tag", payload] and decoding is unambiguous.
NATIVE_TYPES = (type(None), bool, int, float, str)
SEQUENCE_TYPES = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}
# Longer ints cross as hex: decimal text (JSON's) stops at 4300 digits (`sys.get_int_max_str_digits`), 14284 bits.
MAX_DECIMAL_INT_BITS = 4096
# Lone surrogates ("\ud800") are valid in a str but not in UTF-8; "surrogatepass" carries each code point as it is,
# so a surrogate pair stays two characters, unlike JSON's "\ud83d\ude00" escapes, which decode to one.
TEXT_ERRORS = "surrogatepass"
# A message over a pipe: its length, then its bytes.
MESSAGE_HEADER = struct.Struct(">Q")
MAX_MESSAGE_BYTES = 64 * 2**20


class NotPlainData(TypeError):
    """A value that is not plain data of an exact builtin type."""


def to_plain(value: object) -> object:
    """`value` as a JSON-ready tree, refusing any type but the exact builtins listed in the module docstring."""
    kind = type(value)
    if kind is int and value.bit_length() > MAX_DECIMAL_INT_BITS:
        return ["int", format(value, "x")]
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


def from_plain(tree: object) -> object:
    """The value `to_plain` encoded, built from fresh builtin objects."""
    if type(tree) is not list:
        return tree
    tag, payload = tree
    if tag == "int":
        return int(payload, 16)
    if tag == "complex":
        return complex(*payload)
    if tag == "bytes":
        return bytes.fromhex(payload)
    if tag == "dict":
        return {from_plain(key): from_plain(item) for key, item in payload}
    return SEQUENCE_TYPES[tag](from_plain(item) for item in payload)


def encode(value: object) -> bytes:
    """`value` as UTF-8 JSON; NotPlainData (or RecursionError for a cycle) if it is not plain data."""
    return json.dumps(to_plain(value), ensure_ascii=False).encode("utf-8", TEXT_ERRORS)


def decode(data: bytes) -> object:
    """The value `encode` wrote."""
    return from_plain(json.loads(data.decode("utf-8", TEXT_ERRORS)))


def write_message(fd: int, data: bytes) -> None:
    """Send one message: its length, then its bytes."""
    view = memoryview(MESSAGE_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def read_exactly(fd: int, size: int) -> bytes | None:
    """`size` bytes from `fd`, or None if it closes first."""
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 2**20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> bytes | None:
    """One message, or None if the other side closed its end (or sent more than MAX_MESSAGE_BYTES)."""
    header = read_exactly(fd, MESSAGE_HEADER.size)
    if header is None or MESSAGE_HEADER.unpack(header)[0] > MAX_MESSAGE_BYTES:
        return None
    return read_exactly(fd, MESSAGE_HEADER.unpack(header)[0])
