"""Validating a data root: the real files' quirks pass, each injected fault is reported once
with its code and path, and no malformed shape makes the validator crash."""

import json
import os
import random
from pathlib import Path

import pytest

from evalpipe.sources.vmeval.reader import read_data_root
from evalpipe.sources.vmeval.samples import HOSTILE_FAULTS, HOSTILE_WARNINGS

CLEAN = "lab0/v1"
QUESTION = "questions/chess_task/chess_0000"
EVALUATION = "evaluations/gpt4o-eval/pilot/luma-ray-2/chess_task/chess_0000/GPT4OEvaluator.json"


def issues(root: Path, severity: str | None = None) -> list[tuple[str, str]]:
    data = read_data_root(root, root.name)
    return sorted(
        (i.code, i.path) for i in data.log.issues if severity is None or i.severity == severity
    )


def test_a_clean_root_with_every_real_quirk_has_no_error(datasets: Path) -> None:
    data = read_data_root(datasets / CLEAN, CLEAN)
    assert data.log.errors == []
    assert [i.code for i in data.log.warnings] == ["superseded_run"]
    by_id = {q.id: q for q in data.questions}
    assert len(by_id) == 15 and all(q.valid for q in data.questions)
    assert by_id["mirror_clock_0001"].domain == "mirror_clock"
    hf = by_id["arc_agi_2_0000"]
    assert hf.final_image_path is None and not hf.has_final_frame and hf.difficulty is None
    assert by_id["maze_0001"].payload["maze_size"] == [3, 3]
    assert None in by_id["sudoku_0000"].payload["sudoku_data"]["puzzle"]
    assert "38\u00b0" in by_id["chess_0000"].prompt
    layouts = {o.run_id is None for o in data.outputs}
    assert layouts == {True, False}, "both the flat and the run-folder layout are read"
    assert data.superseded_runs == 1
    statuses = {e.status for e in data.evaluations}
    assert {"skipped", "completed", None} <= statuses
    assert all(e.score is None for e in data.evaluations if e.status == "skipped")


def test_the_hostile_root_reports_each_injected_fault_and_no_other_error(datasets: Path) -> None:
    root = datasets / "hostile"
    assert issues(root, "error") == sorted((code, path) for code, path in HOSTILE_FAULTS.items())
    warnings = issues(root, "warning")
    for code, path in HOSTILE_WARNINGS.items():
        assert (code, path) in warnings


def test_invalid_json_names_line_and_column(datasets: Path) -> None:
    data = read_data_root(datasets / "hostile", "hostile")
    (issue,) = [i for i in data.log.issues if i.code == "invalid_json"]
    assert issue.message.startswith("line ") and " column " in issue.message


def test_a_root_without_a_manifest_is_validated_from_its_folders(datasets: Path) -> None:
    root = datasets / CLEAN
    (root / "questions" / "vmeval_dataset.json").unlink()
    data = read_data_root(root, CLEAN)
    assert data.log.errors == []
    assert ("missing_manifest", "questions/vmeval_dataset.json") in issues(root, "warning")
    assert len(data.questions) == 15


def test_a_folder_with_only_images_and_prompt_is_a_warning_not_a_crash(datasets: Path) -> None:
    root = datasets / CLEAN
    folder = root / "questions" / "tests_task" / "tests_0001"
    folder.mkdir(parents=True)
    (folder / "prompt.txt").write_text("a test")
    found = issues(root)
    assert ("missing_metadata", "questions/tests_task/tests_0001/question_metadata.json") in found
    assert ("orphan_folder", "questions/tests_task/tests_0001") not in found, "nothing to list"


def _write(path: Path, text: str | bytes) -> None:
    path.unlink(missing_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


META = f"{QUESTION}/question_metadata.json"
MANIFEST = "questions/vmeval_dataset.json"
MALFORMED = {
    "manifest is a list": (MANIFEST, "invalid_value", lambda p: _write(p, "[1, 2]")),
    "manifest is empty": (MANIFEST, "invalid_json", lambda p: _write(p, "")),
    "manifest not UTF-8": (MANIFEST, "invalid_json", lambda p: _write(p, b'{"a": "\xff"}')),
    "manifest nested too deeply": (MANIFEST, "invalid_json", lambda p: _write(p, "[" * 100000)),
    "pairs missing": (MANIFEST, "missing_key", lambda p: _edit_json(p, lambda v: v.pop("pairs"))),
    "pairs a dict": (
        MANIFEST,
        "invalid_value",
        lambda p: _edit_json(p, lambda v: v.update(pairs={})),
    ),
    "a pair is a string": (
        MANIFEST,
        "invalid_value",
        lambda p: _edit_json(p, lambda v: v["pairs"].append("chess_0000")),
    ),
    "a pair's id is a number": (
        MANIFEST,
        "invalid_value",
        lambda p: _edit_json(p, lambda v: v["pairs"].append({**v["pairs"][0], "id": 7})),
    ),
    "generation_info a list": (
        MANIFEST,
        "invalid_value",
        lambda p: _edit_json(p, lambda v: v.update(generation_info=[])),
    ),
    "total_pairs wrong": (
        MANIFEST,
        "count_mismatch",
        lambda p: _edit_json(p, lambda v: v.update(total_pairs=3)),
    ),
    "metadata is null": (META, "invalid_value", lambda p: _write(p, "null")),
    "metadata truncated": (META, "invalid_json", lambda p: _write(p, '{"id": "ch')),
    "metadata a FIFO": (META, "missing_file", lambda p: (p.unlink(), os.mkfifo(p))),
    "metadata image path absolute": (
        META,
        "path_escape",
        lambda p: _edit_json(p, lambda v: v.update(first_image_path="/etc/passwd")),
    ),
    "metadata image path with ..": (
        META,
        "path_escape",
        lambda p: _edit_json(p, lambda v: v.update(first_image_path="../../x.png")),
    ),
    "metadata image path a number": (
        META,
        "invalid_value",
        lambda p: _edit_json(p, lambda v: v.update(first_image_path=3)),
    ),
    "metadata id differs from folder": (
        META,
        "id_mismatch",
        lambda p: _edit_json(p, lambda v: v.update(id="chess_0042")),
    ),
    "metadata domain differs from folder": (
        META,
        "id_mismatch",
        lambda p: _edit_json(p, lambda v: v.update(domain="maze")),
    ),
    "image is a GIF": (
        f"{QUESTION}/first_frame.png",
        "bad_image",
        lambda p: _write(p, b"GIF89a" + b"\0" * 20),
    ),
    "image empty": (f"{QUESTION}/final_frame.png", "bad_image", lambda p: _write(p, b"")),
    "image a symlink outside": (
        f"{QUESTION}/final_frame.png",
        "path_escape",
        lambda p: (p.unlink(), os.symlink("/etc/hostname", p)),
    ),
    "prompt empty": (f"{QUESTION}/prompt.txt", "prompt_mismatch", lambda p: _write(p, "  ")),
    "prompt not UTF-8": (f"{QUESTION}/prompt.txt", "prompt_mismatch", lambda p: _write(p, b"\xff")),
    "prompt missing": (f"{QUESTION}/prompt.txt", "missing_file", lambda p: p.unlink()),
    "evaluation is a list": (EVALUATION, "invalid_value", lambda p: _write(p, "[]")),
    "evaluation result a string": (
        EVALUATION,
        "invalid_value",
        lambda p: _edit_json(p, lambda v: v.update(result="4")),
    ),
    "score is a string": (
        EVALUATION,
        "invalid_score",
        lambda p: _edit_json(p, lambda v: v.update(result={"solution_correctness_score": "4"})),
    ),
    "score is a boolean": (
        EVALUATION,
        "invalid_score",
        lambda p: _edit_json(p, lambda v: v.update(result={"solution_correctness_score": True})),
    ),
    "score is NaN": (
        EVALUATION,
        "invalid_score",
        lambda p: _write(p, '{"result": {"solution_correctness_score": NaN}}'),
    ),
    "score negative": (
        EVALUATION,
        "invalid_score",
        lambda p: _edit_json(p, lambda v: v.update(result={"goal_achieved_score": -1})),
    ),
    "completed without a score": (
        EVALUATION,
        "invalid_score",
        lambda p: _edit_json(p, lambda v: v.update(result={"status": "completed"})),
    ),
    "evaluation metadata a string": (
        EVALUATION,
        "invalid_value",
        lambda p: _edit_json(p, lambda v: v.update(metadata="x")),
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_each_malformed_shape_is_one_named_issue_never_a_crash(datasets: Path, case: str) -> None:
    rel, code, corrupt = MALFORMED[case]
    root = datasets / CLEAN
    corrupt(root / rel)
    data = read_data_root(root, CLEAN)
    assert (code, rel) in [(i.code, i.path) for i in data.log.errors], data.log.issues


def test_a_question_folder_that_is_a_file_or_a_symlinked_dir_outside_is_handled(
    datasets: Path, tmp_path: Path
) -> None:
    root = datasets / CLEAN
    (root / "questions" / "chess_task" / "stray.txt").write_text("not a folder")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "questions" / "maze_task" / "maze_0100")
    found = issues(root, "error")
    assert found == [("path_escape", "questions/maze_task/maze_0100")]


def test_missing_questions_folder_is_an_error(tmp_path: Path) -> None:
    assert issues(tmp_path) == [
        ("missing_file", "questions"),
        ("missing_folder", "evaluations"),
        ("missing_folder", "outputs"),
    ]


def test_a_symlink_loop_and_an_oversized_prompt_are_issues(datasets: Path) -> None:
    root = datasets / CLEAN
    folder = root / QUESTION
    (folder / "final_frame.png").unlink()
    os.symlink(folder / "loop.png", folder / "final_frame.png")
    os.symlink(folder / "final_frame.png", folder / "loop.png")
    (folder / "prompt.txt").write_bytes(b"x" * (2 * 1024 * 1024))
    found = issues(root, "error")
    assert ("path_escape", f"{QUESTION}/final_frame.png") in found
    assert ("prompt_mismatch", f"{QUESTION}/prompt.txt") in found


def test_the_newest_valid_run_counts_when_the_newest_is_broken(datasets: Path) -> None:
    root = datasets / CLEAN
    tasks = (root / "outputs" / "pilot" / "luma-ray-2").glob("*_task/*")
    (task,) = [t for t in tasks if len(list(t.iterdir())) == 2]  # the generator reruns one
    runs = sorted(task.iterdir())
    (runs[-1] / "metadata.json").write_text("{broken")
    data = read_data_root(root, CLEAN)
    of_task = {o.run_id: o for o in data.outputs if o.question_id == task.name and o.run_id}
    assert of_task[runs[0].name].is_latest and of_task[runs[0].name].valid
    assert not of_task[runs[-1].name].is_latest and not of_task[runs[-1].name].valid
    assert data.superseded_runs == 0


REPLACEMENTS = [
    b"",
    b"null",
    b"[]",
    b"7",
    b'"x"',
    b"{}",
    b'{"result": []}',
    b'{"pairs": 5}',
    b'{"id": null, "prompt": 3}',
    b"\xef\xbb\xbf{}",
    b'{"a": NaN}',
    b"{" * 5000,
]


def test_random_damage_to_any_json_file_never_crashes_the_validator(datasets: Path) -> None:
    """Seeded: truncations, byte flips and wrong-shaped values in random JSON files."""
    rng = random.Random(20251201)
    root = datasets / CLEAN
    files = sorted(root.rglob("*.json"))
    for _ in range(40):
        path = rng.choice(files)
        data = path.read_bytes()
        damage = rng.randrange(3)
        if damage == 0:
            data = data[: rng.randrange(len(data) + 1)]
        elif damage == 1:
            position = rng.randrange(len(data))
            data = data[:position] + bytes([rng.randrange(256)]) + data[position + 1 :]
        else:
            data = rng.choice(REPLACEMENTS)
        path.write_bytes(data)
        result = read_data_root(root, CLEAN)
        assert all(i.path and i.code and i.message for i in result.log.issues)


def test_hidden_files_beside_results_are_not_read(datasets: Path) -> None:
    root = datasets / CLEAN
    evaluation = root / EVALUATION
    (evaluation.parent / f"._{evaluation.name}").write_bytes(b"\x00\x05\x16\x07 mac fork")
    assert issues(root, "error") == []
