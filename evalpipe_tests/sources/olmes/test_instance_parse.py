"""The instance parser: the scanner takes only lines it converts exactly as the stdlib `json`
would, refuses everything else (which the stdlib path then keeps or rejects with file:line), and
stores nested values as their source text. Each scanner test runs on the C scanner and on its
pure-Python fallback (the `scan_rows` fixture)."""

import json
import random
import sys

import pytest

from evalpipe.core.jsonl import DumpFormatError
from evalpipe.sources.olmes.instance_parse import (
    SHAPES,
    ChunkJob,
    _exact_cells,
    _scanned_batch,
    parse_chunk,
)
from evalpipe.sources.olmes.scanner import ScanRows

DIGITS = sys.get_int_max_str_digits()  # the longest integer literal Python's `int` reads
KEYS_TOO_MANY = ", ".join(f'"k{i}": {i}' for i in range(1025)).encode()  # MAX_KEYS + 1
TABLE = "requests"  # every kind of column: ints, texts, JSON text, the row's own task name
SHAPE = SHAPES[TABLE]
JOB = ChunkJob("dump/task-000-t-requests.jsonl", 0, 0, TABLE, "t", "run")
VALID = {
    "task_name": "t",
    "doc_id": 7,
    "idx": 0,
    "native_id": "q-7",
    "label": 2,
    "request_type": "loglikelihood",
    "doc": {"z": [1, -2.5e-3, True, None], "a": {"é": '数学 \\ " \n'}},
    "request": {"context": "Q: 2+2?", "continuation": " 4"},
}


def scan(line: bytes, scan_rows: ScanRows) -> dict | None:
    """The row the scanner makes of one line, or None if it refuses the line."""
    lines, rows, ints, texts, _, _, refused = scan_rows(
        line, SHAPE.ints, SHAPE.texts, SHAPE.jsons, "task_name", JOB.task_name
    )
    assert lines == 1
    if refused:
        assert rows == 0 and refused == [(0, len(line), 1, 0)]
        return None
    assert rows == 1
    return _scanned_batch(rows, ints, texts, JOB).to_pylist()[0]


def ordered(text: str | None):
    """A JSON text's value with key order made visible."""
    return None if text is None else json.loads(text, object_pairs_hook=list)


def exact(line: bytes) -> dict:
    """What the stdlib path makes of the line (raises DumpFormatError when it is bad)."""
    ints, texts, jsons, _ = _exact_cells(JOB.path, 1, line, False, SHAPE)
    return dict(zip((*SHAPE.ints, *SHAPE.texts, *SHAPE.jsons), ints + texts + jsons, strict=True))


def assert_same_as_stdlib(line: bytes, row: dict) -> None:
    expected = exact(line)
    for name in (*SHAPE.ints, *SHAPE.texts):
        assert row[name] == expected[name], (line, name)
    for name in SHAPE.jsons:  # compared as canonical text: NaN != NaN
        assert json.dumps(ordered(row[name])) == json.dumps(ordered(expected[name])), (line, name)


def line_of(**changes) -> bytes:
    return json.dumps({**VALID, **changes}, ensure_ascii=False).encode()


def test_a_valid_row_is_scanned_with_nested_values_as_their_source_text(
    scan_rows: ScanRows,
) -> None:
    line = b'{"doc_id": 7, "idx": 0, "native_id": "q\\u00e9", "label": -0, "doc": {"b": 1,  "a": [1e5, "\\ud83d\\ude00"]}}'
    row = scan(line, scan_rows)
    assert row is not None
    assert row["doc_id"] == 7 and row["native_id"] == "qé" and row["label"] == "0"
    assert row["doc"] == '{"b": 1,  "a": [1e5, "\\ud83d\\ude00"]}'  # byte for byte
    assert row["request"] is None and row["request_type"] is None
    assert_same_as_stdlib(line, row)


VALID_LINES = [
    line_of(),
    line_of(native_id="\U0001f600 \\u0041 数学", label=None),
    line_of(label=-(2**63), doc_id=2**63 - 1),
    line_of(label=10**30),  # beyond int64 as text: its digits
    b'{"doc_id": 1, "idx": 2, "label": -' + b"9" * DIGITS + b', "doc": [' + b"9" * DIGITS + b"]}",
    line_of(doc=[], request={}),
    line_of(doc={"nan": float("nan"), "inf": [float("inf"), float("-inf")]}),
    b'  {"doc_id":1,"idx":2}\r',
    b'{"doc_id": 1, "idx": 2, "native_id": "\\" \\\\ \\/ \\b \\f \\n \\r \\t"}',
    b'{"doc_id": 1, "idx": 2, "doc": {"k\\u0065y": 1, "kez": 2, "k\\n": 3, "k\\\\n": 4}}',
    b'{"doc_id": 1, "idx": 2, "doc": [{"a": 1}, {"a": 2}], "request": {"a": {"a": 1}}}',
]


@pytest.mark.parametrize("line", VALID_LINES)
def test_valid_rows_are_scanned_as_the_stdlib_reads_them(line: bytes, scan_rows: ScanRows) -> None:
    row = scan(line, scan_rows)
    assert row is not None
    assert_same_as_stdlib(line, row)


REFUSED_LINES = [
    (b'{"doc_id": 1, "idx": 0,}', "trailing comma"),
    (b'{"doc_id": 1, "idx": 0', "unterminated object"),
    (b'{"doc_id": 1, "idx": 0} x', "text after the object"),
    (b"[1, 2]", "not an object"),
    (b"{'doc_id': 1}", "single quotes"),
    (b'{"doc_id": 01, "idx": 0}', "leading zero"),
    (b'{"doc_id": 1, "idx": 0, "doc": 1.}', "bare decimal point"),
    (b'{"doc_id": 1, "idx": 0, "doc": .5}', "no integer part"),
    (b'{"doc_id": 1, "idx": 0, "doc": +1}', "plus sign"),
    (b'{"doc_id": 1, "idx": 0, "doc": 1e}', "empty exponent"),
    (b'{"doc_id": 1, "idx": 0, "doc": Nan}', "misspelt NaN"),
    (b'{"doc_id": 1, "idx": 0, "doc": -Inf}', "cut -Infinity"),
    (b'{"doc_id": 1, "idx": 0, "label": NaN}', "NaN as text"),
    (b'{"doc_id": 1, "idx": 0, "doc": tru}', "bad literal"),
    (b'{"doc_id": 1, "idx": 0, "doc": "a\tb"}', "raw control character"),
    (b'{"doc_id": 1, "idx": 0, "doc": "\\x41"}', "bad escape"),
    (b'{"doc_id": 1, "idx": 0, "doc": "\\u12"}', "short \\u escape"),
    (b'{"doc_id": 1, "idx": 0, "doc": "\xc0\xaf"}', "overlong UTF-8"),
    (b'{"doc_id": 1, "idx": 0, "doc": "\xed\xa0\x80"}', "UTF-8 encoded surrogate"),
    (b'{"doc_id": 1, "idx": 0, "doc": "\xf4\x90\x80\x80"}', "beyond U+10FFFF"),
    (b'{"doc_id": 1, "idx": 0, "doc": "\xe6\x95"}', "cut UTF-8 sequence"),
    (b'{"doc_id": 1, "idx": 0, "doc": "\xff"}', "invalid byte"),
    (b'{"doc_id": 1, "idx": 0, "native_id": "\\ud800"}', "lone surrogate as text"),
    (b'{"doc_id": 1, "idx": 0, "label": 1.5}', "float as text"),
    (b'{"doc_id": 1, "idx": 0, "label": true}', "bool as text"),
    (b'{"doc_id": 1, "idx": 0, "label": [1]}', "list as text"),
    (b'{"doc_id": 1.0, "idx": 0}', "float doc_id"),
    (b'{"doc_id": "1", "idx": 0}', "string doc_id"),
    (b'{"doc_id": null, "idx": 0}', "null doc_id"),
    (b'{"idx": 0}', "missing doc_id"),
    (b'{"doc_id": 9223372036854775808, "idx": 0}', "doc_id beyond int64"),
    (b'{"doc_id": 1, "doc_id": 2, "idx": 0}', "duplicate key"),
    (b'{"doc_id": 1, "idx": 0, "junk": 1, "junk": 2}', "duplicate unwanted key"),
    (b'{"doc_id": 1, "idx": 0, "doc": {"a": {"b": 1, "b": 2}}}', "duplicate nested key"),
    (b'{"doc_id": 1, "idx": 0, "doc": {"a": 1, "\\u0061": 2}}', "duplicate once unescaped"),
    (b'{"doc_id": 1, "idx": 0, "doc": {"\\ud800": 1}}', "lone surrogate key"),
    (b'{"doc_id": 1, "idx": 0, "doc": {' + KEYS_TOO_MANY + b"}}", "too many keys"),
    (b'{"doc\\u005fid": 1, "idx": 0}', "escaped key"),
    (b'{"doc_id": 1, "idx": 0, "task_name": 3}', "non-string task name"),
    (b'{"doc_id": 1, "idx": 0, "doc": ' + b"[" * 300 + b"]" * 300 + b"}", "deep nesting"),
    (b'{"doc_id": 1, "idx": 0, "doc": [' + b"9" * (DIGITS + 1) + b"]}", "too long for int"),
    (b'{"doc_id": 1, "idx": 0, "junk": -' + b"9" * (DIGITS + 1) + b"}", "too long for int"),
]


@pytest.mark.parametrize(("line", "why"), REFUSED_LINES)
def test_lines_the_scanner_cannot_vouch_for_are_refused(
    line: bytes, why: str, scan_rows: ScanRows
) -> None:
    assert scan(line, scan_rows) is None, why


def test_nan_and_infinities_in_nested_values_are_kept_as_written(scan_rows: ScanRows) -> None:
    """Python's json writes them (scores of failed instances); they stay the source's text."""
    line = b'{"doc_id": 1, "idx": 0, "doc": {"acc": NaN, "r": [Infinity, -Infinity]}}'
    row = scan(line, scan_rows)
    assert row is not None and row["doc"] == '{"acc": NaN, "r": [Infinity, -Infinity]}'


@pytest.mark.usefixtures("scanner")
def test_refused_lines_go_to_the_stdlib_path_in_order_and_bad_ones_name_their_line() -> None:
    lines = [
        line_of(doc_id=1),
        b'{"doc_id": 2, "idx": 0, "label": false}',  # refused, kept by the stdlib path
        b"   ",  # blank: skipped, counted
        line_of(doc_id=3, task_name="other"),
        b'{"doc_id": 4, "idx": 0, "label": true, "task_name": "other"}',
    ]
    result = parse_chunk(b"\n".join(lines) + b"\n", JOB)
    rows = [row for batch in result.batches for row in batch.to_pylist()]
    assert [r["doc_id"] for r in rows] == [1, 2, 3, 4]
    assert rows[1]["label"] == "false" and rows[3]["label"] == "true"
    assert result.lines == 5 and result.mismatches == 2 and result.mismatch_example == "other"

    bad = b"\n".join([*lines, b'{"doc_id": 6, "idx": 0,}'])
    with pytest.raises(DumpFormatError) as error:
        parse_chunk(bad, JOB)
    assert error.value.line == 6 and "truncated" in error.value.problem


def mutations(line: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Lines one to three byte edits away from `line`, biased towards JSON's syntax."""
    alphabet = b'{}[]",:\\-+.0123456789eEuntrfalNIy \t\x00\x1f\x7f\xc3\xa9\xed\xa0\xf0\x9f\xff'
    out = []
    for _ in range(count):
        data = bytearray(line)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            edit = rng.random()
            if edit < 0.4:
                data[at] = rng.choice(alphabet)
            elif edit < 0.7:
                data.insert(at, rng.choice(alphabet))
            else:
                del data[at]
        out.append(bytes(data.replace(b"\n", b" ")))
    return out


def test_every_line_the_scanner_takes_the_stdlib_reads_the_same(scan_rows: ScanRows) -> None:
    """Differential fuzzing: thousands of near-valid lines; whatever the scanner accepts must be
    valid JSON with the same values the stdlib path gives, key order included."""
    rng = random.Random(20261124)
    seeds = [line_of(), line_of(native_id=None, label="é", doc="x\\y"), b'{"doc_id":1,"idx":-2}']
    accepted = 0
    for seed in seeds:
        for line in mutations(seed, rng, 3000):
            row = scan(line, scan_rows)
            if row is None:
                continue
            accepted += 1
            try:
                assert_same_as_stdlib(line, row)
            except DumpFormatError as exc:
                pytest.fail(f"scanner accepted {line!r}, which the stdlib rejects: {exc}")
    assert accepted > 500  # mutations inside strings and numbers often stay valid


def test_refused_lines_are_listed_with_their_bytes_line_and_place(scan_rows: ScanRows) -> None:
    good, bad = line_of(doc_id=1), b'{"doc_id": 2, "idx": 0, "label": 1.5}'
    data = b"\n".join([bad, good, b"", bad, bad, good, bad])
    lines, rows, *_, refused = scan_rows(
        data, SHAPE.ints, SHAPE.texts, SHAPE.jsons, "task_name", "t"
    )
    assert (lines, rows) == (7, 2)
    assert [(line, before) for _, _, line, before in refused] == [(1, 0), (4, 1), (5, 1), (7, 2)]
    assert all(data[start:end] == bad for start, end, _, _ in refused)


@pytest.mark.usefixtures("scanner")
def test_an_integer_too_long_for_python_is_a_format_error_naming_its_line() -> None:
    """The stdlib cannot read it, so no scanner vouches for it and the run fails precisely."""
    data = line_of(doc_id=1) + b'\n{"doc_id": 2, "idx": 0, "doc": ' + b"1" * (DIGITS + 1) + b"}\n"
    with pytest.raises(DumpFormatError, match="unreadable JSON number") as error:
        parse_chunk(data, JOB)
    assert error.value.line == 2


@pytest.mark.usefixtures("scanner")
def test_a_duplicate_key_at_any_depth_is_a_format_error_naming_its_line() -> None:
    """The stdlib path refuses duplicate keys, so no scanner may take such a line."""
    data = line_of(doc_id=1) + b'\n{"doc_id": 2, "idx": 0, "doc": [{"q": 1, "\\u0071": 2}]}\n'
    with pytest.raises(DumpFormatError, match="duplicate key 'q'") as error:
        parse_chunk(data, JOB)
    assert error.value.line == 2


@pytest.mark.usefixtures("scanner")
def test_a_chunk_of_only_refused_lines_keeps_every_row_in_order() -> None:
    """Every line refused (float labels): each row comes out once, in order."""
    lines = [f'{{"doc_id": {i}, "idx": 0, "label": 0.5}}'.encode() for i in range(2000)]
    result = parse_chunk(b"\n".join(lines) + b"\n", JOB)
    rows = [row for batch in result.batches for row in batch.to_pylist()]
    assert [r["doc_id"] for r in rows] == list(range(2000)) and result.lines == 2000
