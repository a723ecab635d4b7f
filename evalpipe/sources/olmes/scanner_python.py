"""The instance line scanner in pure Python, for installs where `pip` could not build the C one.

A drop-in for `_instance_scan.scan_rows` (its contract is in `_instance_scan.c`): the same lines
are converted or refused and the same bytes land in the same column buffers, so the tables do not
depend on which scanner ran. That matters because a refused line goes to the stdlib path, which
writes nested values back compactly, while a converted one keeps its source text: a scanner that
refused a different set of lines would store different text. The tests compare the two byte for
byte and the fuzz target does so on every input.

The stdlib does the reading: a line is decoded as strict UTF-8, the row object is walked key by key
with `re`, and each value is read by `json`'s C scanner, which says where the value ends, so a
nested value's source text is a slice of the line. What the C scanner refuses beyond invalid JSON
is refused here too: an escaped key in the row object, a key twice in any object, an object of
more than `MAX_KEYS` keys, nesting deeper than `MAX_DEPTH`, a text or key that UTF-8 cannot hold.
An integer literal too long for Python's `int` fails `json` itself.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Callable
from itertools import accumulate
from typing import Any

import numpy as np

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
MAX_DEPTH = 200  # `_instance_scan.c`'s MAX_DEPTH, counting the row object as 1
MAX_KEYS = 1024  # `_instance_scan.c`'s MAX_KEYS: an object with more keys is refused
K_INT, K_TEXT, K_JSON, K_TASK = range(4)

_OPEN = re.compile(r"[ \t\n\r]*\{[ \t\n\r]*")
_KEY = re.compile(r'"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*')  # an escaped key never matches
_NEXT = re.compile(r"[ \t\n\r]*(?:,[ \t\n\r]*|(\}))")
_SPACE = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(r"[\[\]{}]")

ScanOnce = Callable[[str, int], tuple[Any, int]]
Value = tuple[Any, int, int]
"""A wanted value as `json` reads it, and where its text starts and ends in the line."""
Cells = tuple[list[int], list[bytes | None], bytes | None]
"""A converted row: its ints, its text and JSON columns' UTF-8 (None is NULL), its task name."""
TextColumn = tuple[bytes, bytes, bytes | None, int]
Refused = tuple[int, int, int, int]
ScanResult = tuple[int, int, list[bytes], list[TextColumn], int, str | None, list[Refused]]
"""(lines, rows, int_columns, text_columns, mismatches, example, refused): see `scan_rows`."""


def _checked_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A nested object as `json` reads it; ValueError (the line is refused) for a key twice, too
    many keys or a key that UTF-8 cannot hold (a lone surrogate)."""
    value = dict(pairs)
    if len(value) != len(pairs) or len(pairs) > MAX_KEYS:
        raise ValueError("a duplicate key, or too many keys")
    keys = "".join(value)
    if not keys.isascii():
        keys.encode()  # UnicodeEncodeError is a ValueError
    return value


def _row_values(text: str, fields: dict[str, int], scan_once: ScanOnce) -> dict[int, Value] | None:
    """The wanted values of a row object by field, or None if the line is not an object the C
    scanner reads: malformed, an escaped key, a key twice, too many keys."""
    opening = _OPEN.match(text)
    if opening is None:
        return None
    at = opening.end()
    found: dict[int, Value] = {}
    keys: set[str] = set()
    if text.startswith("}", at):
        at += 1
    else:
        while True:
            key = _KEY.match(text, at)
            if key is None or key.group(1) in keys or len(keys) >= MAX_KEYS:
                return None
            keys.add(key.group(1))
            start = key.end()
            try:
                value, at = scan_once(text, start)
            except (StopIteration, ValueError, RecursionError):
                return None  # ValueError: malformed, or an integer too long for `int`
            field = fields.get(key.group(1))
            if field is not None:
                found[field] = (value, start, at)
            after = _NEXT.match(text, at)
            if after is None:
                return None
            at = after.end()
            if after.group(1):
                break
    return found if _SPACE.match(text, at).end() == len(text) else None


def _too_deep(raw: bytes, text: str) -> bool:
    """Containers nested deeper than the C scanner follows; brackets are counted outside strings
    only when there are enough of them to reach that depth."""
    if raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH:
        return False
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest > MAX_DEPTH


def _row_cells(
    raw: bytes, kinds: list[int], fields: dict[str, int], scan_once: ScanOnce
) -> Cells | None:
    """The row's cells, or None where the C scanner refuses the line."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    found = _row_values(text, fields, scan_once)
    if found is None or _too_deep(raw, text):
        return None
    ints: list[int] = []
    texts: list[bytes | None] = []
    task = None
    for field, kind in enumerate(kinds):
        value, start, end = found.get(field, (None, 0, 0))
        kind_of = type(value)
        if kind == K_INT:
            if kind_of is not int or not INT64_MIN <= value <= INT64_MAX:
                return None
            ints.append(value)
        elif value is None:
            if kind != K_TASK:
                texts.append(None)
        elif kind == K_JSON:
            texts.append(text[start:end].encode())
        elif kind_of is int and kind == K_TEXT:
            texts.append(str(value).encode())
        elif kind_of is str:
            try:
                encoded = value.encode()
            except UnicodeEncodeError:
                return None  # a lone surrogate: the stdlib path reports it
            if kind == K_TASK:
                task = encoded
            else:
                texts.append(encoded)
        else:
            return None  # a float, bool or container where text is wanted
    return ints, texts, task


def _text_column(cells: list[bytes | None]) -> TextColumn:
    """(offsets, data, validity or None, null count), as the C scanner returns a column."""
    offsets = array("i", accumulate((0 if c is None else len(c) for c in cells), initial=0))
    nulls = cells.count(None)
    valid = np.fromiter((c is not None for c in cells), bool, len(cells))
    validity = np.packbits(valid, bitorder="little").tobytes() if nulls else None
    return offsets.tobytes(), b"".join(c for c in cells if c is not None), validity, nulls


def scan_rows(
    data: bytes,
    ints: tuple[str, ...],
    texts: tuple[str, ...],
    jsons: tuple[str, ...],
    task_key: str | None,
    task_name: str,
) -> ScanResult:
    """The rows of every line of `data`, exactly as `_instance_scan.scan_rows` returns them:
    int64 buffers, text columns as (offsets, data, validity or None, null count), the rows whose
    `task_key` names another task than `task_name` (a count and the first name), and the
    refused lines as (start, end, line number, converted rows before it)."""
    if len(data) >= (1 << 31) - 1:
        raise ValueError("scan at most 2 GiB at a time (32-bit Arrow offsets)")
    expected = task_name.encode()
    spec = [(n, K_INT) for n in ints] + [(n, K_TEXT) for n in texts] + [(n, K_JSON) for n in jsons]
    spec += [(task_key, K_TASK)] if task_key is not None else []
    kinds = [kind for _, kind in spec]
    fields: dict[str, int] = {}
    for field, (name, _) in enumerate(spec):
        name.encode()  # as in the C scanner, a name UTF-8 cannot hold is an error
        fields.setdefault(name, field)  # a repeated name: the first field gets the value
    # one per call: its key memo is not shared between threads
    scan_once = json.JSONDecoder(object_pairs_hook=_checked_object).scan_once
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()  # the empty rest after a final newline is no line
    int_cells: list[list[int]] = [[] for _ in ints]
    text_cells: list[list[bytes | None]] = [[] for _ in (*texts, *jsons)]
    refused: list[Refused] = []
    mismatches, example, rows, start = 0, None, 0, 0
    for number, raw in enumerate(lines, 1):
        end = start + len(raw)
        if raw.strip():
            cells = _row_cells(raw, kinds, fields, scan_once)
            if cells is None:
                refused.append((start, end, number, rows))
            else:
                for column, value in zip(int_cells, cells[0], strict=True):
                    column.append(value)
                for column, text in zip(text_cells, cells[1], strict=True):
                    column.append(text)
                if cells[2] is not None and cells[2] != expected:
                    mismatches += 1
                    example = cells[2].decode() if example is None else example
                rows += 1
        start = end + 1
    return (
        len(lines),
        rows,
        [array("q", column).tobytes() for column in int_cells],
        [_text_column(column) for column in text_cells],
        mismatches,
        example,
        refused,
    )
