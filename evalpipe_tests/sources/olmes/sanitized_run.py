"""Run by `test_scanner_sanitized` in a Python whose C scanner was built with AddressSanitizer and
UndefinedBehaviorSanitizer: `python -m evalpipe_tests.sources.olmes.sanitized_run MODULE_FILE`.

Every corpus input is checked for the differential property, then every cut of every line is
scanned from a buffer that ends exactly where the data does (a numpy copy: Python's bytes carry
a hidden trailing NUL that would hide a one-byte over-read). A sanitizer report aborts the process.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np

from evalpipe.sources.olmes.instance_parse import SHAPES
from evalpipe.sources.olmes.scanner import ScanRows
from evalpipe_tests.sources.olmes.scan_check import check_chunk, corpus_inputs, scan_args


def load(module_file: str) -> ScanRows:
    spec = importlib.util.spec_from_file_location("_instance_scan", module_file)
    assert spec is not None and spec.loader is not None, module_file
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scan_rows


def cuts(line: bytes) -> list[int]:
    """Where to cut a line: everywhere in a short one, spread out and near the end in a long one."""
    n = len(line)
    return list(range(n + 1)) if n <= 1024 else sorted({*range(0, n, 37), *range(n - 64, n + 1)})


def main(module_file: str) -> None:
    scan_rows = load(module_file)
    inputs = corpus_inputs()
    for data in inputs:
        check_chunk(data, scan_rows)
    scans = 0
    for line in dict.fromkeys(line for data in inputs for line in data.split(b"\n")):
        for cut in cuts(line):
            exact = np.frombuffer(line[:cut], np.uint8).copy()
            for table in SHAPES:
                scan_rows(exact, *scan_args(table))
                scans += 1
    print(f"checked {len(inputs)} inputs, {scans} scans of cut lines")


if __name__ == "__main__":
    main(sys.argv[1])
