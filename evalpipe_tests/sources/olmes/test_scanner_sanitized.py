"""The C scanner built with AddressSanitizer and UndefinedBehaviorSanitizer reads the seed corpus,
and every cut of its lines, without a report: an out-of-bounds read at the end of a buffer, an
overflowing shift or a misaligned load fails the suite, not a user's ingest."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import evalpipe.sources.olmes
from evalpipe_tests.sources.olmes.scan_check import CORPUS

SOURCE = Path(evalpipe.sources.olmes.__file__).with_name("_instance_scan.c")
ROOT = Path(__file__).parents[3]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
REPORTS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "UndefinedBehaviorSanitizer")


def build(gcc: str, out: Path) -> Path:
    """The scanner as a sanitized extension module in `out`."""
    module = out / f"_instance_scan{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    command = [gcc, *SANITIZE, "-g", "-O1", "-shared", "-fPIC", f"-I{include}", str(SOURCE)]
    subprocess.run([*command, "-o", str(module)], check=True, timeout=120)
    return module


def runtime(gcc: str, name: str) -> str:
    path = subprocess.run(
        [gcc, f"-print-file-name={name}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert os.path.isabs(path), (
        f"{gcc} has no {name}: install its sanitizer runtime (libasan, libubsan)"
    )
    return path


def test_the_sanitized_scanner_reads_the_corpus_without_a_report(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    assert gcc, (
        "this test builds the C scanner with sanitizers and needs gcc (Debian: apt-get install gcc)"
    )
    assert any(CORPUS.glob("*.jsonl")), f"no seed corpus in {CORPUS}"
    module = build(gcc, tmp_path)
    env = {
        **os.environ,
        "LD_PRELOAD": f"{runtime(gcc, 'libasan.so')} {runtime(gcc, 'libubsan.so')}",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:strict_string_checks=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        "PYTHONMALLOC": "malloc",  # every allocation seen by ASan, not hidden in pymalloc's pools
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        [sys.executable, "-m", "evalpipe_tests.sources.olmes.sanitized_run", str(module)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0 and not any(word in report for word in REPORTS), report[-6000:]
    assert "checked" in run.stdout, report[-6000:]
