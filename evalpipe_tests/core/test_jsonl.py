"""Bad JSONL input is reported as `file:line: problem`, never skipped."""

from pathlib import Path

import pytest

from evalpipe.core.jsonl import DumpFormatError, count_lines, iter_jsonl


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_reads_values_with_line_numbers_and_raw_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", b'{"a": 1}\n\n{"b": "\xc3\xa9"}\n')
    rows = list(iter_jsonl(path))
    assert [(n, v) for n, _, v in rows] == [(1, {"a": 1}), (3, {"b": "é"})]
    assert rows[1][1] == b'{"b": "\xc3\xa9"}'


def test_malformed_line_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", b'{"a": 1}\n{"a": 2,,}\n{"a": 3}\n')
    with pytest.raises(DumpFormatError) as caught:
        list(iter_jsonl(path))
    assert caught.value.line == 2
    assert str(caught.value).startswith(f"{path}:2: malformed JSON at column 9")


def test_invalid_utf8_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "u.jsonl", b'{"a": 1}\n{"a": "\xff\xfe"}\n')
    with pytest.raises(DumpFormatError, match=r"u\.jsonl:2: invalid UTF-8 at byte 7"):
        list(iter_jsonl(path))


def test_truncated_last_line_is_an_error_not_dropped(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", b'{"a": 1}\n{"a": 2, "b": [1, 2')
    with pytest.raises(DumpFormatError, match=r"t\.jsonl:2: .*truncated last line"):
        list(iter_jsonl(path))


def test_complete_last_line_without_newline_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path / "n.jsonl", b'{"a": 1}\n{"a": 2}')
    assert [v for _, _, v in iter_jsonl(path)] == [{"a": 1}, {"a": 2}]


def test_lines_spanning_read_chunks_are_reassembled(tmp_path: Path) -> None:
    long_value = "x" * 3_000_000
    path = write(tmp_path / "big.jsonl", f'{{"v": "{long_value}"}}\n{{"v": 2}}\n'.encode())
    values = [v["v"] for _, _, v in iter_jsonl(path)]
    assert values == [long_value, 2]
    assert count_lines(path) == 2


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    directory = tmp_path / "metrics-all.jsonl"
    directory.mkdir()
    with pytest.raises(DumpFormatError, match=r"metrics-all\.jsonl: cannot open"):
        list(iter_jsonl(directory))
