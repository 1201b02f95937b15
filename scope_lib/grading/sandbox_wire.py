"""The sandbox's wire, used on both sides of it: the host (scope_lib/grading/sandbox.py) and the two
processes inside (scope_lib/grading/sandbox_inside_supervisor.py, scope_lib/grading/sandbox_inside_runner.py).

Length-prefixed JSON frames over pipes with deadlines, the tagged plain-data encoding that
function-call tests send across the process boundary, and the rule that compares a program's
stdout with a test's expected output. Mounted read-only inside the sandbox: it imports only the
standard library.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

_HEADER = struct.Struct(">I")  # frame = 4-byte big-endian length + UTF-8 JSON
_CHUNK = 1 << 16


# =============================================================================================
# Both sides: length-prefixed JSON frames over pipes, with deadlines

class _PeerGone(Exception):
    """The other end closed the pipe (the process exited or was killed)."""


def _wait_fd(fd: int, for_write: bool, deadline: float | None) -> None:
    remaining = None if deadline is None else deadline - time.monotonic()
    if remaining is not None and remaining <= 0:
        raise TimeoutError
    ready = select.select([], [fd], [], remaining) if for_write else select.select([fd], [], [], remaining)
    if not (ready[1] if for_write else ready[0]):
        raise TimeoutError


def _write_frame(fd: int, obj, deadline: float | None = None) -> None:
    body = json.dumps(obj, separators=(",", ":")).encode()
    view = memoryview(_HEADER.pack(len(body)) + body)
    # Non-blocking, so a peer that stops reading costs us the deadline, never a hang.
    os.set_blocking(fd, False)
    while view:
        _wait_fd(fd, True, deadline)
        try:
            view = view[os.write(fd, view[:_CHUNK]):]
        except BlockingIOError:
            continue
        except BrokenPipeError as error:
            raise _PeerGone from error


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    os.set_blocking(fd, False)
    parts, have = [], 0
    while have < size:
        _wait_fd(fd, False, deadline)
        try:
            chunk = os.read(fd, min(_CHUNK, size - have))
        except BlockingIOError:
            continue
        if not chunk:
            raise _PeerGone
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts)


def _read_frame(fd: int, deadline: float | None, max_bytes: int):
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > max_bytes:
        raise ValueError(f"frame of {size} bytes exceeds the {max_bytes}-byte cap")
    return json.loads(_read_exact(fd, size, deadline))


# =============================================================================================
# Both sides: plain data across the process boundary
#
# Function-call tests pass arguments to the program and bring its return values back. Only
# plain values of exact built-in types cross (a subclass of int with a rigged __eq__ does not),
# tagged so that tuple/list, set/frozenset, int/float and NaN survive the JSON.

_MAX_DEPTH = 200


def _encode(value, depth: int = 0):
    if depth > _MAX_DEPTH:
        raise ValueError(f"value nested deeper than {_MAX_DEPTH}")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if -(1 << 53) < value < (1 << 53) else {"i": hex(value)}  # no digit limit on hex
    if kind is float:
        return {"f": value.hex()}
    if kind is list:
        return [_encode(item, depth + 1) for item in value]
    if kind is tuple:
        return {"t": [_encode(item, depth + 1) for item in value]}
    if kind is dict:
        return {"d": [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in value.items()]}
    if kind is set or kind is frozenset:
        return {"s" if kind is set else "fs": [_encode(item, depth + 1) for item in value]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is complex:
        return {"c": [value.real.hex(), value.imag.hex()]}
    raise TypeError(f"{kind.__module__}.{kind.__qualname__} is not plain data (int, float, str, bytes, "
                    "bool, None, complex, or a list/tuple/dict/set of those)")


def _decode(obj, depth: int = 0):
    if depth > _MAX_DEPTH:
        raise ValueError(f"value nested deeper than {_MAX_DEPTH}")
    kind = type(obj)
    if obj is None or kind in (bool, int, str):
        return obj
    if kind is list:
        return [_decode(item, depth + 1) for item in obj]
    if kind is dict and len(obj) == 1:
        (tag, body), = obj.items()
        if tag == "i" and type(body) is str:
            return int(body, 16)
        if tag == "f" and type(body) is str:
            return float.fromhex(body)
        if tag == "b" and type(body) is str:
            return bytes.fromhex(body)
        if tag == "c" and type(body) is list and len(body) == 2:
            return complex(float.fromhex(body[0]), float.fromhex(body[1]))
        if type(body) is list:
            if tag == "t":
                return tuple(_decode(item, depth + 1) for item in body)
            if tag == "d":
                return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in body}
            if tag == "s":
                return {_decode(item, depth + 1) for item in body}
            if tag == "fs":
                return frozenset(_decode(item, depth + 1) for item in body)
    raise ValueError(f"not an encoded plain value: {str(obj)[:80]}")


# =============================================================================================
# Both sides: how stdin/stdout answers are compared

def _as_decimals(tokens: list[str]):
    from decimal import Decimal, InvalidOperation

    try:
        numbers = [Decimal(token) for token in tokens]
    except (InvalidOperation, ValueError):
        return None
    # A signalling NaN raises in comparisons; no answer is one.
    return None if any(number.is_snan() for number in numbers) else numbers


def outputs_match(got: str, expected: str, float_tolerance: float | None = None) -> bool:
    """Whether a program's stdout answers a stdin/stdout test.

    LiveCodeBench's rule (`grade_stdio`), made whitespace-insensitive within a line: both texts
    are stripped and split into lines, the line counts must agree, and each pair of lines must
    have the same whitespace-separated tokens, or tokens that are all numbers of equal value
    (exact decimals: "1.50" == "1.5", "3" == "3.0"). With `float_tolerance` t, numbers also
    match when |a - b| <= t * max(1, |b|) (Codeforces problems that accept an error of 1e-6; TACO's
    own checker uses numpy's isclose, rtol 1e-5).
    """
    got_lines = [line.split() for line in got.strip().split("\n")]
    expected_lines = [line.split() for line in expected.strip().split("\n")]
    if len(got_lines) != len(expected_lines):
        return False
    for got_tokens, expected_tokens in zip(got_lines, expected_lines):
        if got_tokens == expected_tokens:
            continue
        if len(got_tokens) != len(expected_tokens):
            return False
        got_numbers, expected_numbers = _as_decimals(got_tokens), _as_decimals(expected_tokens)
        if got_numbers is None or expected_numbers is None:
            return False
        for a, b in zip(got_numbers, expected_numbers):
            if a == b:
                continue
            if float_tolerance is None or not (a.is_finite() and b.is_finite()):
                return False
            if abs(float(a) - float(b)) > float_tolerance * max(1.0, abs(float(b))):
                return False
    return True



def _first_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
