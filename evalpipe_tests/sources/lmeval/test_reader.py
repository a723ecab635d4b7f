"""The lm-eval reader on real lm-eval output: runs found, figures as the JSON has them."""

import json
import shutil
from pathlib import Path

import pytest

from evalpipe.core.jsonl import DumpFormatError
from evalpipe.sources.lmeval.reader import (
    iter_sample_docs,
    model_args,
    read_results,
    results_path,
    scan_root,
)
from evalpipe_tests.lmeval_outputs import MODEL_DIR, results_files, run_ids, run_lm_eval


def test_each_results_file_is_one_run_with_only_its_own_samples(pristine_lmeval: Path) -> None:
    found = scan_root(pristine_lmeval)
    ids = run_ids(pristine_lmeval)
    assert [s.run_id for s in found.runs] == list(ids.values())
    assert found.skipped == []
    names = {s.run_id: [f.name for f in s.inventory.files] for s in found.runs}
    ts = ids["step100"].split("results_")[1]
    assert names[ids["step100"]] == [
        f"results_{ts}.json",
        f"samples_toy_colors_{ts}.jsonl",
        f"samples_toy_sums_{ts}.jsonl",
    ]
    assert names[ids["step300"]] == [Path(ids["step300"]).name + ".json"]
    assert all(s.inventory.complete and s.source == "lmeval" for s in found.runs)


def test_output_path_given_as_a_json_file_name_is_read_too(tmp_path: Path) -> None:
    """`lm_eval --output_path <dir>/evals.json` writes `evals_<ts>.json`, samples beside it."""
    root = tmp_path / "lmeval"
    run_lm_eval(tmp_path, root / "sweep" / "evals.json", {"step9": (["toy_colors"], True)})
    [scan] = scan_root(root).runs
    assert scan.run_id.startswith("sweep/evals_")
    names = [f.name for f in scan.inventory.files]
    assert names[0] == Path(scan.run_id).name + ".json" and names[1].startswith(
        "samples_toy_colors_"
    )
    run = read_results(results_path(root, scan.run_id), scan.inventory)
    assert [e.name for e in run.entries] == ["toy_colors"] and list(run.samples) == ["toy_colors"]
    assert run.model_identity() == ("acme/tiny-lm", "step9", None)


def test_tasks_groups_and_primary_metrics_follow_lm_evals_table(pristine_lmeval: Path) -> None:
    ids = run_ids(pristine_lmeval)
    run = read_results(results_path(pristine_lmeval, ids["step200"]))
    raw = json.loads(run.path.read_text())["results"]
    assert [e.name for e in run.tasks] == ["toy_colors", "toy_sums"]
    assert [g.name for g in run.groups] == ["toy_suite"]
    assert run.leaves("toy_suite") == ["toy_colors", "toy_sums"]
    colors, sums, suite = run.entries
    # lm-eval's table prints a task's `metric,filter` keys sorted: its first row is the primary.
    assert (colors.primary.key, colors.primary.value) == ("acc", raw["toy_colors"]["acc,none"])
    assert colors.primary.stderr == raw["toy_colors"]["acc_stderr,none"]
    assert sums.primary.key == "exact_match,raw"
    assert [m.key for m in sums.metrics] == ["exact_match,raw", "exact_match,strict-match"]
    assert suite.primary.value == raw["toy_suite"]["acc,none"]
    assert run.model_identity() == ("acme/tiny-lm", "step200", None)
    assert run.evaluated_at is not None


def test_samples_merge_every_filter_of_a_document(pristine_lmeval: Path) -> None:
    run = read_results(results_path(pristine_lmeval, run_ids(pristine_lmeval)["step100"]))
    assert sorted(run.samples) == ["toy_colors", "toy_sums"]
    lines = run.samples["toy_sums"].read_text().splitlines()
    docs = list(iter_sample_docs(run.samples["toy_sums"]))
    assert len(lines) == 2 * len(docs) == 10
    first = json.loads(lines[0])
    assert docs[0].doc_id == 0 and docs[0].target == first["target"] and docs[0].native_id == "s0"
    assert set(docs[0].filtered) == {"strict-match", "raw"}
    assert docs[0].metrics == {"exact_match,strict-match": 0.0, "exact_match,raw": 0.0}
    colors = list(iter_sample_docs(run.samples["toy_colors"]))
    assert set(colors[0].metrics) == {"acc", "acc_norm"}


def test_model_args_in_either_form_lm_eval_writes() -> None:
    assert model_args("pretrained=a/b,revision=step1") == {"pretrained": "a/b", "revision": "step1"}
    assert model_args({"pretrained": "a/b"}) == {"pretrained": "a/b"}
    assert model_args(None) == {}


def test_bad_input_names_file_and_line(pristine_lmeval: Path, tmp_path: Path) -> None:
    source = results_files(pristine_lmeval)[0]
    cut = tmp_path / MODEL_DIR / source.name
    cut.parent.mkdir()
    cut.write_text(source.read_text()[:200])
    with pytest.raises(DumpFormatError, match=rf"{cut.name}:\d+: malformed JSON"):
        read_results(cut)
    cut.write_text(json.dumps({"config": {}}))
    with pytest.raises(DumpFormatError, match="no 'results' object"):
        read_results(cut)

    samples = next(pristine_lmeval.glob(f"{MODEL_DIR}/samples_toy_colors_*.jsonl"))
    doubled = tmp_path / samples.name
    first = samples.read_text().splitlines()[0]
    doubled.write_text(f"{first}\n{first}\n")
    with pytest.raises(DumpFormatError, match=r":2: doc_id 0 appears twice for filter 'none'"):
        list(iter_sample_docs(doubled))


def test_results_in_hidden_or_symlinked_directories_are_skipped_and_reported(
    pristine_lmeval: Path, tmp_path: Path
) -> None:
    root = tmp_path / "lmeval"
    shutil.copytree(pristine_lmeval, root)
    some_run = next(root.rglob("results_*.json"))
    (root / ".trash").mkdir()
    shutil.copy(some_run, root / ".trash" / some_run.name)
    (root / "elsewhere").symlink_to(some_run.parent, target_is_directory=True)

    found = scan_root(root)
    assert [s.run_id for s in found.runs] == list(run_ids(pristine_lmeval).values())
    assert found.skipped == [
        f"{root / '.trash'}: hidden directory; skipped",
        f"{root / 'elsewhere'}: a symlinked directory; skipped (not followed)",
    ]
