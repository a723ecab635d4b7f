"""Deterministic sample OLMES / oe-eval dumps that carry every quirk of the real format.

Tests, the demo and the benchmarks all read these dumps, so each quirk listed in
`docs/formats/olmes.md` appears somewhere (which run holds which is decided by
`_plan_runs`):

- aggregate records first in `metrics-all.jsonl`, with `task_idx: null` and no per-task files;
- task names with colons in file names, `task-NNN` prefixes reused by a second invocation;
- exact duplicate lines in `metrics-all.jsonl`, a vestigial `metrics.jsonl` of bare strings;
- an old-format run (no per-task `-metrics.json` / `-config.json`) whose `metrics-all.jsonl`
  lacks a task variant that exists only as artifact files;
- `native_id` int, string (some non-ASCII) or null; `limit` beyond the signed 64-bit range;
  string `batch_size`; a task without `-requests.jsonl`; run directories at different depths.

Every number is consistent the way checks expect: `num_instances` equals the predictions rows,
a task's `primary_score` is the mean of its rows' primary metric, and an aggregate's
`primary_score` is `sum(x) / len(x)` of its present members' scores (macro suites).

Output depends only on the arguments (seeded `random.Random`, no clock), and files are written
row by row so that multi-GB runs take constant memory.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from evalpipe.results.suites import BUILTIN_SUITES, Suite

HUGE_LIMIT = 10_000_000_000_000_000_000  # oe-eval's "no limit"; does not fit an int64
DATE_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
RECORDED_DOCS = 3
DUMPS = ("2025-10-08_posttrain", "2025-11-03_posttrain")
MODELS = (  # (name, default revision, max_length, skill)
    ("meta-llama/Llama-3.1-8B", "main", 8192, 0.66),
    ("allenai/OLMo-2-1124-7B", "main", 4096, 0.62),
    ("Qwen/Qwen2.5-7B", "main", 32768, 0.70),
    ("allenai/OLMo-2-1124-13B", "stage1-step596057-tokens5001B", 4096, 0.68),
)
SAMPLE_SUITES = ("core_9mcqa:rc::olmes:full", "minerva_math::tulu", "mmlu:mc::olmes")
MC_ACCS = ("acc_raw", "acc_per_token", "acc_per_char")
TASK_CONFIG_KEYS = (
    "task_name", "task_core", "limit", "split", "num_shots", "fewshot_seed", "primary_metric",
    "random_subsample_seed", "context_kwargs", "generation_kwargs", "metric_kwargs",
    "native_id_field", "fewshot_source", "dataset_path", "dataset_name", "use_chat_format",
    "version", "revision", "compute_gold_bpb", "external_eval", "custom_kwargs",
    "skip_model_judges", "model_max_length", "metadata",
)  # fmt: skip
RECORD_KEYS = (
    "task_name", "task_hash", "model_hash", "model_config", "task_config", "compute_config",
    "processing_time", "current_date", "num_instances", "beaker_info", "metrics", "task_idx",
)  # fmt: skip
# core task -> (choices, native_id template ("" = int ids), split, dataset, subset, metric)
CORE_TASKS: dict[str, tuple[int, str, str, str, str | None, str]] = {
    "arc_challenge": (4, "Mercury_{x}", "test", "allenai/ai2_arc", "ARC-Challenge", "acc_per_char"),
    "arc_easy": (4, "MCAS_2000_4_{x}", "test", "allenai/ai2_arc", "ARC-Easy", "acc_per_char"),
    "boolq": (2, "", "validation", "super_glue", "boolq", "acc_raw"),
    "csqa": (5, "{x:x}e3c9a1d07b", "validation", "tau/commonsense_qa", None, "acc_per_char"),
    "hellaswag": (4, "", "validation", "Rowan/hellaswag", None, "acc_per_char"),
    "openbookqa": (4, "7-{x}", "test", "allenai/openbookqa", "main", "acc_per_char"),
    "piqa": (2, "", "validation", "ybisk/piqa", None, "acc_per_char"),
    "socialiqa": (3, "", "validation", "allenai/social_i_qa", None, "acc_per_char"),
    "winogrande": (2, "wg-{x}", "validation", "allenai/winogrande", "winogrande_xl", "acc_raw"),
}
# Artifact rows keep non-ASCII text as UTF-8; `metrics-all.jsonl` uses json.dumps' defaults.
_ENCODE_UTF8 = json.JSONEncoder(ensure_ascii=False).encode
NON_ASCII_IDS = ("数学", "Ärger")
SETUPS = (
    "A student places a metal spoon in a cup of hot water and waits five minutes.",
    "Plants on a sunny windowsill bend toward the glass over several days.",
    "A ball rolls down a wooden ramp and keeps going across the carpet.",
    "Two bar magnets are pushed together with their north poles facing each other.",
    "An ice cube is left on a kitchen counter on a warm afternoon.",
    "After a heavy storm, a farmer sees that soil has washed off the sloped field.",
    "A scientist records the temperature of a pond every morning for a month.",
    "Hikers notice that the air gets thinner as they climb toward the summit.",
    "A class compares how quickly sugar dissolves in cold and in hot tea.",
    "A cyclist brakes hard and the bicycle tires become warm to the touch.",
)
QUESTIONS = (
    "Which statement best explains what happens?",
    "What is the most likely cause of this observation?",
    "Which tool would be most useful to measure the change?",
    "What would most likely happen next?",
    "Which of these is an example of a physical change?",
    "Which property of the material matters most here?",
)
FOREIGN_QUESTIONS = (
    "Qu'est-ce que «l'énergie» cinétique d'un objet en mouvement ?",
    "Welche Größe misst ein Thermometer – die Wärme oder die Temperatur?",
    "温度が上がると、水の分子の動きはどうなりますか？",
    "¿Por qué el hielo flota sobre el agua líquida?",
)
ANSWERS = (
    "heat moves from the water into the spoon",
    "the plants respond to light",
    "friction slows the ball down",
    "the magnets push each other apart",
    "the ice melts into liquid water",
    "rainwater carries the loose soil away",
    "a thermometer",
    "a spring scale",
    "the air pressure is lower",
    "sugar particles move faster in hot water",
    "kinetic energy becomes thermal energy",
    "the mass of the object stays the same",
    "la chaleur «latente» de fusion",
    "温度 (die Temperatur)",
    "the volume of the gas increases",
    "gravity pulls the object toward Earth",
)
CONTINUATION_TAILS = (
    "",
    " Checking: substituting back gives the original equation, so the value is right.",
    " 答案是这个数。Die Lösung ist eindeutig – voilà.",
)


@dataclass(frozen=True)
class Task:
    """One evaluated task: what its docs, requests and scores look like."""

    name: str
    core: str
    kind: str  # "rc" (choice text scored), "mc" (letters scored) or "gen" (generate_until)
    choices: int
    primary: str
    native: str  # str.format template of string native ids; "" means int ids
    split: str
    dataset_path: str
    dataset_name: str | None
    num_shots: int


@dataclass(frozen=True)
class RunPlan:
    """Where a run directory goes and which quirks it carries."""

    index: int
    rel_path: str
    model: str
    revision: str
    max_length: int
    skill: float
    start: datetime
    old_format: bool
    split_invocations: bool
    duplicates: bool
    drop_requests: bool
    beaker: bool


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _core_task(member: str) -> Task:
    core = member.split(":", 1)[0]
    choices, native, split, path, name, metric = CORE_TASKS[core]
    return Task(member, core, "rc", choices, metric, native, split, path, name, 5)


def _letter_variant(task: Task) -> Task:
    """The `:mc::` sibling of an `:rc::` task (same docs, answer letters scored)."""
    return replace(task, name=task.name.replace(":rc::", ":mc::", 1), kind="mc", primary="acc_raw")


def _minerva_task(member: str) -> Task:
    core = member.split(":", 1)[0]
    subject = core.removeprefix("minerva_math_")
    return Task(
        name=member,
        core=core,
        kind="gen",
        choices=1,
        primary="exact_match",
        native=f"{subject}/{{x}}.json",
        split="test",
        dataset_path="EleutherAI/hendrycks_math",
        dataset_name=subject,
        num_shots=4,
    )


def _mmlu_task(member: str) -> Task:
    core = member.split(":", 1)[0]
    subject = core.removeprefix("mmlu_")
    return Task(member, core, "mc", 4, "acc_raw", "", "test", "cais/mmlu", subject, 5)


TASK_MAKERS: dict[str, Callable[[str], Task]] = {
    "core_9mcqa:rc::olmes:full": _core_task,
    "minerva_math::tulu": _minerva_task,
    "mmlu:mc::olmes": _mmlu_task,
}


def _select_tasks(tasks: int) -> list[tuple[Suite, list[Task]]]:
    """The first `tasks` members of the sample suites, in order, grouped by suite."""
    groups: list[tuple[Suite, list[Task]]] = []
    remaining = tasks
    for suite_name in SAMPLE_SUITES:
        suite = BUILTIN_SUITES[suite_name]
        members = suite.members[: max(remaining, 0)]
        if members:
            groups.append((suite, [TASK_MAKERS[suite_name](m) for m in members]))
        remaining -= len(members)
    if remaining > 0:
        raise ValueError(f"tasks must be at most {tasks - remaining}, got {tasks}")
    return groups


def _plan_runs(runs: int, seed: int, dump_suffix: str = "") -> list[RunPlan]:
    """Spread runs over two dumps and give each quirk a home.

    Run 0 is old-format (runs >= 3); run 1 sits one directory deeper and has duplicate lines;
    the last run holds two invocations (reused prefixes), lacks one requests file and, when
    runs >= 4, re-runs run 0's model in the later dump.
    """
    rng = random.Random(seed)
    plans = []
    for i in range(runs):
        dump = (DUMPS[0] if i < runs // 2 else DUMPS[1]) + dump_suffix
        model, revision, max_length, skill = MODELS[i % len(MODELS)]
        if i >= len(MODELS):  # later checkpoints of the same models keep directories unique
            revision = f"step{10000 * (i // len(MODELS))}-tokens{42 * (i // len(MODELS))}B"
        if runs >= 4 and i == runs - 1:
            model, revision, max_length, skill = MODELS[0]
        run_name = f"{model.replace('/', '_')}__{revision}"
        nest = "_eval_results/extra" if runs >= 2 and i == 1 else "_eval_results"
        day = datetime.strptime(dump[:10], "%Y-%m-%d") - timedelta(days=3)
        plans.append(
            RunPlan(
                index=i,
                rel_path=f"{dump}/{nest}/{run_name}",
                model=model,
                revision=revision,
                max_length=max_length,
                skill=skill + rng.uniform(-0.04, 0.04),
                start=day + timedelta(seconds=rng.randrange(2 * 86400)),
                old_format=runs >= 3 and i == 0,
                split_invocations=i == runs - 1,
                duplicates=i == min(1, runs - 1),
                drop_requests=i == runs - 1,
                beaker=i % 2 == 1,
            )
        )
    return plans


def _model_config(run: RunPlan) -> dict[str, Any]:
    return {
        "model": run.model,
        "revision": run.revision,
        "trust_remote_code": None,
        "max_length": run.max_length,
        "model_path": None if run.revision == "main" else f"/weka/checkpoints/{run.model}",
        "model_type": "vllm",
        "chat_model": None,
        "metadata": {"alias": run.model.split("/")[1].lower()},
    }


def _task_config(task: Task, limit: int | None) -> dict[str, Any]:
    """The 24 keys of oe-eval's task_config, in its order; empty kwargs are null."""
    gen = task.kind == "gen"
    return {
        "task_name": task.core,
        "task_core": task.core,
        "limit": limit,
        "split": task.split,
        "num_shots": task.num_shots,
        "fewshot_seed": 1234,
        "primary_metric": task.primary,
        "random_subsample_seed": 1234,
        "context_kwargs": {"use_cot": True, "cot_style": "minerva"} if gen else None,
        "generation_kwargs": (
            {
                "max_gen_toks": 1024,
                "temperature": 0.0,
                "do_sample": False,
                "stop_sequences": ["Problem:", "\n\n\n"],
            }
            if gen
            else None
        ),
        "metric_kwargs": {"uncond_docid_offset": 1000000} if task.core == "csqa" else None,
        "native_id_field": "index" if task.native == "" else "id",
        "fewshot_source": None if gen else f"OLMES:{task.core}",
        "dataset_path": task.dataset_path,
        "dataset_name": task.dataset_name,
        "use_chat_format": gen,
        "version": 1 if gen else 0,
        "revision": None,
        "compute_gold_bpb": False,
        "external_eval": None,
        "custom_kwargs": None,
        "skip_model_judges": None,
        "model_max_length": None,
        "metadata": {"alias": task.name, "regimes": ["Tulu" if gen else "OLMES-v0.1"]},
    }


def _aggregate_config(suite: Suite, present: int) -> dict[str, Any]:
    """Same 24 keys as a task's config, mostly null; `primary_metric` names the averaging."""
    config: dict[str, Any] = dict.fromkeys(TASK_CONFIG_KEYS)
    config.update(
        task_name=suite.name,
        primary_metric=suite.averaging,
        metadata={"num_tasks": present, "description": f"Aggregate metric for {suite.name}"},
    )
    return config


def _compute_config(run: RunPlan) -> dict[str, Any]:
    return {
        "batch_size": "auto" if run.index % 2 else "4",
        "max_batch_size": 32,
        "output_dir": f"/results/{run.rel_path.rsplit('/', 1)[1]}",
        "num_recorded_inputs": RECORDED_DOCS,
        "save_raw_requests": True,
        "recompute_metrics": False,
    }


def _beaker_info(run: RunPlan, seed: int) -> dict[str, str]:
    if not run.beaker:
        return {}
    h = _md5(f"beaker:{seed}:{run.rel_path}")
    return {
        "BEAKER_EXPERIMENT_ID": "01J" + h[:23].upper(),
        "BEAKER_JOB_ID": "01J" + h[9:32].upper(),
        "BEAKER_NODE_HOSTNAME": f"jupiter-cs-aus-{int(h[:4], 16) % 300}.reviz.ai2.in",
        "BEAKER_USER_ID": "evalbot",
        "GIT_REF": hashlib.sha1(h.encode()).hexdigest(),
    }


def _native_id(task: Task, doc_id: int) -> int | str | None:
    """Ints (some null) or strings (some non-ASCII), per task, like real datasets."""
    x = 1000 + 37 * doc_id
    if task.native == "":
        return None if doc_id % 7 == 1 else x
    if doc_id % 5 == 1:
        return f"{NON_ASCII_IDS[doc_id % 2]}_{doc_id}"
    return task.native.format(x=x)


def _question(rng: random.Random, doc_id: int) -> str:
    if doc_id % 6 == 1:
        return FOREIGN_QUESTIONS[doc_id // 6 % len(FOREIGN_QUESTIONS)]
    first, second = rng.sample(SETUPS, 2)
    return f"{first} {second} {rng.choice(QUESTIONS)}"


def _mc_query(task: Task, question: str, choices: Sequence[str]) -> str:
    if task.kind == "rc":
        return f"Question: {question}\nAnswer:"
    lettered = "".join(f"\n {chr(65 + j)}. {c}" for j, c in enumerate(choices))
    return f"Question: {question}{lettered}\nAnswer:"


def _mc_continuations(task: Task, choices: Sequence[str]) -> list[str]:
    if task.kind == "rc":
        return [f" {c}" for c in choices]
    return [f" {chr(65 + j)}" for j in range(len(choices))]


def _fewshot_prefix(task: Task, rng: random.Random) -> str:
    """Fixed few-shot examples per task, as OLMES uses (a fixed `fewshot_seed`)."""
    shots = []
    for _ in range(task.num_shots):
        if task.kind == "gen":
            a, c = rng.randrange(2, 12), rng.randrange(1, 40)
            shots.append(
                f"Problem:\nSolve for $x$: ${a}x + 7 = {a * c + 7}$.\n\nSolution:\n"
                f"Subtract 7 from both sides to get ${a}x = {a * c}$, then divide by ${a}$. "
                f"Final Answer: The final answer is ${c}$. I hope it is correct.\n\n"
            )
        else:
            choices = rng.sample(ANSWERS, task.choices)
            shots.append(
                f"{_mc_query(task, _question(rng, 0), choices)}"
                f"{_mc_continuations(task, choices)[0]}\n\n"
            )
    return "".join(shots)


class _Scores:
    """Running sums of per-instance metrics; means are `sum / len`, as checks compute them."""

    def __init__(self, names: Sequence[str]) -> None:
        self.sums = dict.fromkeys(names, 0.0)
        self.count = 0

    def add(self, metrics: dict[str, Any]) -> None:
        self.count += 1
        for name in self.sums:
            self.sums[name] += metrics[name]

    def means(self, primary: str) -> dict[str, float]:
        out = {"primary_score": self.sums[primary] / self.count}
        out.update((name, total / self.count) for name, total in self.sums.items())
        return out


class _Row(NamedTuple):
    doc: dict[str, Any]
    native: int | str | None
    label: int | str
    requests: list[tuple[str, dict[str, Any], int]]  # (request_type, request, idx)
    outputs: list[dict[str, Any]]
    metrics: dict[str, Any]


def _mc_row(task: Task, rng: random.Random, doc_id: int, prefix: str, p: float) -> _Row:
    question = _question(rng, doc_id)
    choices = rng.sample(ANSWERS, task.choices)
    label = rng.randrange(task.choices)
    native = _native_id(task, doc_id)
    query = _mc_query(task, question, choices)
    doc = {"id": native, "question": question, "query": query, "choices": choices, "gold": label}
    context = prefix + query
    ctx_tokens = len(context) // 4
    requests = []
    outputs = []
    for j, cont in enumerate(_mc_continuations(task, choices)):
        requests.append(("loglikelihood", {"context": context, "continuation": cont}, j))
        n_chars = len(cont)
        n_tokens = max(1, n_chars // 4)
        logits = -rng.uniform(0.3, 30.0)
        outputs.append(
            {
                "sum_logits": logits,
                "num_tokens": n_tokens,
                "num_tokens_all": ctx_tokens + n_tokens,
                "is_greedy": j == label and logits > -2.0,
                "logits_per_token": logits / n_tokens,
                "logits_per_char": logits / n_chars,
                "logits_per_byte": logits / len(cont.encode("utf-8")),
                "num_chars": n_chars,
            }
        )
    hit = 1.0 if rng.random() < p else 0.0
    wrong = (label + 1 + doc_id % (task.choices - 1)) % task.choices
    metrics: dict[str, Any] = {"correct_choice": label}
    for name in MC_ACCS:
        metrics[name] = hit if name == task.primary or rng.random() < 0.85 else 1.0 - hit
    metrics["bits_per_byte_corr"] = rng.uniform(0.2, 1.6)
    for name in MC_ACCS:
        metrics[f"predicted_index_{name.removeprefix('acc_')}"] = label if metrics[name] else wrong
    metrics["no_answer"] = 0
    return _Row(doc, native, label, requests, outputs, metrics)


def _gen_row(task: Task, rng: random.Random, doc_id: int, prefix: str, p: float) -> _Row:
    a, b, c = rng.randrange(2, 20), rng.randrange(1, 99), rng.randrange(-50, 200)
    problem = f"Solve for $x$ in {task.dataset_name}: ${a}x + {b} = {a * c + b}$."
    answer = str(c)
    hit = 1.0 if rng.random() < p else 0.0
    given = answer if hit else str(c + rng.choice((-2, -1, 1, 3)))
    continuation = (
        f"Subtract ${b}$ from both sides to get ${a}x = {a * c}$. Dividing both sides by ${a}$ "
        f"gives $x = {given}$. Final Answer: The final answer is ${given}$. "
        f"I hope it is correct.{CONTINUATION_TAILS[doc_id % len(CONTINUATION_TAILS)]}"
    )
    doc = {
        "index": doc_id,
        "problem": problem,
        "level": f"Level {1 + doc_id % 5}",
        "type": (task.dataset_name or "").replace("_", " ").title(),
        "solution": f"We have $x = {answer}$, so the answer is $\\boxed{{{answer}}}$.",
        "answer": answer,
    }
    context = f"{prefix}Problem:\n{problem}\n\nSolution:"
    request = {
        "context": context,
        "stop_sequences": ["Problem:", "\n\n\n"],
        "generation_kwargs": {"max_gen_toks": 1024, "temperature": 0.0, "do_sample": False},
    }
    n_tokens = len(continuation) // 4
    output = {
        "continuation": continuation,
        "sum_logits": -rng.uniform(1.0, 40.0),
        "num_tokens": n_tokens,
        "num_tokens_all": len(context) // 4 + n_tokens,
    }
    flex = hit if rng.random() < 0.9 else 1.0
    metrics = {"exact_match": hit, "exact_match_flex": flex, "num_tokens": n_tokens}
    native = _native_id(task, doc_id)
    return _Row(doc, native, answer, [("generate_until", request, 0)], [output], metrics)


def _write_task_files(
    file_prefix: str,
    task: Task,
    rng: random.Random,
    instances: int,
    p: float,
    hashes: tuple[str, str],
    with_requests: bool,
) -> dict[str, float]:
    """Stream predictions, requests and recorded inputs row by row; return task-level metrics."""
    encode = _ENCODE_UTF8
    make_row = _gen_row if task.kind == "gen" else _mc_row
    gen_scores = ("exact_match", "exact_match_flex")
    scores = _Scores(gen_scores if task.kind == "gen" else (*MC_ACCS, "bits_per_byte_corr"))
    prefix = _fewshot_prefix(task, rng)
    task_hash, model_hash = hashes
    with ExitStack() as stack:
        preds = stack.enter_context(open(f"{file_prefix}-predictions.jsonl", "w", encoding="utf-8"))
        recorded = stack.enter_context(
            open(f"{file_prefix}-recorded-inputs.jsonl", "w", encoding="utf-8")
        )
        reqs = (
            stack.enter_context(open(f"{file_prefix}-requests.jsonl", "w", encoding="utf-8"))
            if with_requests
            else None
        )
        for doc_id in range(instances):
            row = make_row(task, rng, doc_id, prefix, p)
            scores.add(row.metrics)
            pred = {
                "doc_id": doc_id,
                "native_id": row.native,
                "metrics": row.metrics,
                "model_output": row.outputs,
                "label": row.label,
                "task_hash": task_hash,
                "model_hash": model_hash,
            }
            preds.write(encode(pred) + "\n")
            ids = {"task_name": task.name, "doc_id": doc_id, "native_id": row.native}
            if reqs is not None:
                reqs.write(
                    "".join(
                        encode(
                            {"request_type": kind, "doc": row.doc, "request": request, "idx": idx}
                            | ids
                            | {"label": row.label}
                        )
                        + "\n"
                        for kind, request, idx in row.requests
                    )
                )
            if doc_id < RECORDED_DOCS:
                sent = [{"request_type": k, "request": r, "idx": i} for k, r, i in row.requests]
                record = {"doc": row.doc} | ids | {"label": row.label, "requests": sent}
                recorded.write(encode(record) + "\n")
    return scores.means(task.primary)


def _invocations(run: RunPlan, groups: list[tuple[Suite, list[Task]]]) -> list[list[Task]]:
    """Tasks per oe-eval invocation; each invocation numbers its `task-NNN` files from 0."""
    invocations: list[list[Task]] = []
    for n, (_, tasks) in enumerate(groups):
        members = list(tasks)
        if run.old_format and n == 0:
            members.append(_letter_variant(members[0]))
        if run.split_invocations and n == 0 and len(members) >= 2:
            half = len(members) // 2
            invocations += [members[:half], members[half:]]
        else:
            invocations.append(members)
    return invocations


def _aggregate(
    suite: Suite, members: list[dict[str, Any]], base: dict[str, Any], last_date: str
) -> dict[str, Any]:
    """An aggregate record over the suite members present in the run."""
    scores = [m["metrics"]["primary_score"] for m in members]
    sizes = [m["num_instances"] for m in members]
    macro = sum(scores) / len(scores)
    micro = sum(s * n for s, n in zip(scores, sizes, strict=True)) / sum(sizes)
    config = _aggregate_config(suite, len(members))
    return {
        "task_name": suite.name,
        "task_hash": _md5(json.dumps(config, sort_keys=True)),
        **base,
        "task_config": config,
        "processing_time": sum(m["processing_time"] for m in members),
        "current_date": last_date,
        "num_instances": sum(sizes),
        "metrics": {
            "primary_score": macro if suite.averaging == "macro" else micro,
            "primary_score_macro": macro,
            "primary_score_micro": micro,
        },
        "task_idx": None,
    }


def _line(record: dict[str, Any]) -> str:
    """A `metrics-all.jsonl` line: the twelve keys in oe-eval's order, default `json.dumps`."""
    return json.dumps({key: record[key] for key in RECORD_KEYS})


def _write_run(
    out: Path, run: RunPlan, groups: list[tuple[Suite, list[Task]]], instances: int, seed: int
) -> Path:
    run_dir = out / run.rel_path
    run_dir.mkdir(parents=True, exist_ok=True)
    model_config = _model_config(run)
    model_hash = _md5(json.dumps(model_config, sort_keys=True))
    base = {
        "model_hash": model_hash,
        "model_config": model_config,
        "compute_config": _compute_config(run),
        "beaker_info": _beaker_info(run, seed),
    }
    member_names = {task.name for _, tasks in groups for task in tasks}
    records: list[dict[str, Any]] = []
    clock = run.start
    position = 0
    for invocation in _invocations(run, groups):
        for idx, task in enumerate(invocation):
            rng = random.Random(f"{seed}/{run.rel_path}/{task.name}")
            limit = HUGE_LIMIT if idx == 0 else (instances if idx % 2 else None)
            config = _task_config(task, limit)
            task_hash = _md5(json.dumps(config, sort_keys=True))
            difficulty = rng.uniform(-0.25, 0.2) - (0.3 if task.kind == "gen" else 0.0)
            p = min(0.95, max(0.05, run.skill + difficulty))
            file_prefix = str(run_dir / f"task-{idx:03d}-{task.name}")
            with_requests = not (run.drop_requests and position == 1)
            metrics = _write_task_files(
                file_prefix, task, rng, instances, p, (task_hash, model_hash), with_requests
            )
            position += 1
            processing_time = rng.uniform(15.0, 900.0)
            clock += timedelta(seconds=processing_time)
            if task.name not in member_names:  # artifact-only variant of an old-format run
                continue
            record = {
                "task_name": task.name,
                "task_hash": task_hash,
                "task_config": config,
                "processing_time": processing_time,
                "current_date": clock.strftime(DATE_FORMAT),
                "num_instances": instances,
                "metrics": metrics,
                "task_idx": idx,
                **base,
            }
            records.append(record)
            if not run.old_format:
                Path(f"{file_prefix}-metrics.json").write_text(_line(record), encoding="utf-8")
                config_text = json.dumps(config, indent=2)
                Path(f"{file_prefix}-config.json").write_text(config_text, encoding="utf-8")
    by_name = {r["task_name"]: r for r in records}
    aggregates = [
        _aggregate(suite, [by_name[t.name] for t in tasks], base, clock.strftime(DATE_FORMAT))
        for suite, tasks in groups
    ]
    lines = [_line(r) for r in aggregates + records]
    if run.duplicates:  # a re-run appended into the same directory
        lines += lines[len(aggregates) : len(aggregates) + 2]
    (run_dir / "metrics-all.jsonl").write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    if not run.old_format:
        _write_summaries(run_dir, aggregates + records, model_config)
    return run_dir


def _write_summaries(run_dir: Path, records: list[dict[str, Any]], model_config: Any) -> None:
    """oe-eval's `metrics.json` summary and the vestigial `metrics.jsonl` of bare strings."""
    summary = {
        "all_primary_scores": [
            f"{r['task_name']}: {r['metrics']['primary_score']:.4f}" for r in records
        ],
        "tasks": [
            {
                "alias": r["task_name"],
                "task_idx": r["task_idx"],
                "num_instances": r["num_instances"],
            }
            | r["metrics"]
            for r in records
        ],
        "model_config": model_config,
    }
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    vestigial = "".join(f"{json.dumps(key)}\n" for _ in range(12) for key in summary)
    (run_dir / "metrics.jsonl").write_text(vestigial, encoding="utf-8")


def generate_dumps(
    out: Path,
    runs: int = 4,
    tasks: int = 8,
    instances: int = 20,
    seed: int = 0,
    dump_suffix: str = "",
) -> list[Path]:
    """Write `runs` run directories under `out`; return them (sorted). `dump_suffix` is
    appended to the dump directory names (so to every run id): `python -m evalpipe.samples`
    passes `-seed<N>` for seeds other than 0, so batches of different seeds can share a root.

    Same arguments give byte-identical files. Existing files of the same names are
    overwritten, so generate into an empty directory. Row-level quirks (null and non-ASCII
    native ids, non-ASCII text) need `instances >= 7`.
    """
    if runs < 1 or tasks < 1 or instances < 1:
        raise ValueError(
            f"runs, tasks and instances must be >= 1, got {runs}, {tasks}, {instances}"
        )
    groups = _select_tasks(tasks)
    out = Path(out)
    plans = _plan_runs(runs, seed, dump_suffix)
    return sorted(_write_run(out, run, groups, instances, seed) for run in plans)


def run_dir_bytes(run_dir: Path) -> int:
    """Total size of the files of one (flat) run directory."""
    return sum(p.stat().st_size for p in run_dir.iterdir() if p.is_file())
