"""Coverage-guided fuzzing of the instance scanner with atheris: `make fuzz`, or
`python fuzz/fuzz_instance_scan.py [libFuzzer flags] [CORPUS_DIR ...]`.

Each input is a chunk of an instance file, checked by `scan_check.check_chunk` (in
evalpipe_tests): the C scanner and the pure-Python one return the same buffers byte for byte,
every line the C scanner converts the stdlib reads to the same values, and a chunk fails only
with a `DumpFormatError`. A failed check, a crash or a sanitizer report stops the run and leaves
the input in a `crash-*` file.

The coverage that guides the fuzzer is the C scanner's: this script compiles it with clang
(`-fsanitize=fuzzer-no-link`, plus ASan and UBSan) into a temporary directory and runs itself
again with atheris's ASan runtime preloaded. The Python side is not instrumented: that made each
input ~5x slower (~25 instead of ~140 a second here), and the C scanner's branches are the
fallback's too.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "evalpipe" / "sources" / "olmes" / "_instance_scan.c"
MODULE_VARIABLE = "EVALPIPE_FUZZ_MODULE"  # set for the second run: the instrumented module
FLAGS = ["-fsanitize=fuzzer-no-link,address,undefined", "-fno-sanitize-recover=undefined"]


def build(out: Path) -> Path:
    """The scanner built for coverage and with sanitizers, as a module file in `out`."""
    clang = shutil.which("clang")
    if clang is None:
        sys.exit(
            "fuzzing the C scanner needs clang to instrument it (Debian: apt-get install clang)"
        )
    module = out / f"_instance_scan{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    command = [clang, *FLAGS, "-g", "-O1", "-shared", "-fPIC", f"-I{include}", str(SOURCE)]
    subprocess.run([*command, "-o", str(module)], check=True)
    return module


def rerun_instrumented(argv: list[str]) -> int:
    """Build the instrumented scanner and fuzz it in a child with the sanitizer runtime first."""
    with tempfile.TemporaryDirectory(prefix="evalpipe-fuzz-") as out:
        env = {
            **os.environ,
            MODULE_VARIABLE: str(build(Path(out))),
            "LD_PRELOAD": str(Path(atheris.path()) / "asan_with_fuzzer.so"),
            "ASAN_OPTIONS": "detect_leaks=0",  # CPython's own leaks are not the scanner's
        }
        return subprocess.run([sys.executable, __file__, *argv], env=env).returncode


def fuzz(module_file: str, argv: list[str]) -> None:
    spec = importlib.util.spec_from_file_location("_instance_scan", module_file)
    assert spec is not None and spec.loader is not None, module_file
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.path.insert(0, str(ROOT))
    from evalpipe_tests.sources.olmes.scan_check import check_chunk

    def one_input(data: bytes) -> None:
        check_chunk(data, module.scan_rows)

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    if MODULE_VARIABLE in os.environ:
        fuzz(os.environ[MODULE_VARIABLE], sys.argv[1:])
    else:
        sys.exit(rerun_instrumented(sys.argv[1:]))
