"""Real lm-evaluation-harness output for the tests, made once per session.

lm-eval (a dev dependency) runs its built-in `dummy` model, as `lm_eval run` does, on two
small tasks whose data are local JSON lines shipped in `lmeval_tasks/` (`dataset_path: json`):
a multiple-choice task (`acc`, `acc_norm`) and a generative one with two filters. Four
evaluations of one model, each a checkpoint (`revision`), land in one `--output_path`:

- `step100`: both tasks, with `--log_samples`;
- `step200`: the group `toy_suite` of both tasks, with `--log_samples`;
- `step300`: both tasks, without `--log_samples` (results file only);
- `step400`: the group again, with `--log_samples` (a second run to test the group on).

All four run in one Python process through lm-eval's own `simple_evaluate` and
`EvaluationTracker` (what its command line calls; the files are the same), offline: the data
are local and the Hugging Face caches point into the temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

TASKS = Path(__file__).parent / "lmeval_tasks"
MODEL_DIR = "acme__tiny-lm"
"""lm-eval's folder for `pretrained=acme/tiny-lm` (its `model_name_sanitized`)."""
EVALUATIONS = {
    "step100": (["toy_colors", "toy_sums"], True),
    "step200": (["toy_suite"], True),
    "step300": (["toy_colors", "toy_sums"], False),
    "step400": (["toy_suite"], True),
}

RUNNER = """
import json
import sys

from lm_eval import simple_evaluate
from lm_eval.loggers import EvaluationTracker
from lm_eval.tasks import TaskManager

# What `lm_eval run` does, minus indexing lm-eval's thousands of built-in task files (seconds
# per evaluation): the tasks are only ours (`--include_path .`).
tasks = TaskManager(include_path=".", include_defaults=False)
for argv in sys.argv[1:]:
    call = json.loads(argv)
    tracker = EvaluationTracker(output_path=call["output_path"])
    results = simple_evaluate(
        model="dummy",
        model_args=call["model_args"],
        tasks=call["tasks"],
        log_samples=call["log_samples"],
        evaluation_tracker=tracker,
        task_manager=tasks,
    )
    samples = results.pop("samples") if call["log_samples"] else None
    tracker.save_results_aggregated(results=results, samples=samples)
    for name in results["configs"] if samples else ():
        tracker.save_results_samples(task_name=name, samples=samples[name])
"""


def generate(work: Path) -> Path:
    """Run the evaluations; returns the output root (`<root>/acme__tiny-lm/...`)."""
    output = work / "lmeval"
    run_lm_eval(work, output, EVALUATIONS)
    return output


def run_lm_eval(work: Path, output_path: Path, evaluations: dict) -> None:
    """Run `evaluations` (revision → (tasks, log_samples)) into `output_path`, a directory or,
    as `lm_eval --output_path x.json` allows, a JSON file name."""
    tasks = work / "tasks"
    if not tasks.exists():
        shutil.copytree(TASKS, tasks)
    env = {
        **os.environ,
        "HF_HOME": str(work / "hf"),
        "HF_DATASETS_CACHE": str(work / "hf" / "datasets"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "LMEVAL_LOG_LEVEL": "WARNING",
    }
    calls = [
        json.dumps(
            {
                "model_args": f"pretrained=acme/tiny-lm,revision={revision}",
                "tasks": names,
                "log_samples": samples,
                "output_path": str(output_path),
            }
        )
        for revision, (names, samples) in evaluations.items()
    ]
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *calls],
        cwd=tasks,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"lm-eval failed ({done.returncode}):\n{done.stderr[-4000:]}")


def results_files(root: Path) -> list[Path]:
    """The results files, in evaluation order (their names carry the time)."""
    return sorted((root / MODEL_DIR).glob("results_*.json"))


def run_ids(root: Path) -> dict[str, str]:
    """Revision → evalpipe run id, for the generated evaluations (in `EVALUATIONS` order)."""
    return {
        revision: f"{MODEL_DIR}/{path.stem}"
        for revision, path in zip(EVALUATIONS, results_files(root), strict=True)
    }
