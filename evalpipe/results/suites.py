"""Registry of aggregate suites: which member tasks an aggregate record averages, and how.

oe-eval writes aggregate records (`core_9mcqa:rc::olmes:full`, `mmlu:mc::olmes`, ...) into
`metrics-all.jsonl` only. To check an aggregate against its members we must know the members;
oe-eval defines them in code (`TASK_SUITE_CONFIGS`), so we mirror the common ones here and let
users add their own from a JSON file (`EVALPIPE_SUITES_FILE`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Averaging = Literal["macro", "micro"]


@dataclass(frozen=True)
class Suite:
    """An aggregate task: `macro` averages member scores, `micro` weights them by instances."""

    name: str
    members: tuple[str, ...]
    averaging: Averaging


def _suite(name: str, members: Iterable[str], averaging: Averaging) -> Suite:
    return Suite(name=name, members=tuple(members), averaging=averaging)


CORE_9MCQA = (
    "arc_challenge",
    "arc_easy",
    "boolq",
    "csqa",
    "hellaswag",
    "openbookqa",
    "piqa",
    "socialiqa",
    "winogrande",
)
MMLU_SUBJECTS = [
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
]
BBH_SUBTASKS = [
    "boolean_expressions",
    "causal_judgement",
    "date_understanding",
    "disambiguation_qa",
    "dyck_languages",
    "formal_fallacies",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "multistep_arithmetic_two",
    "navigate",
    "object_counting",
    "penguins_in_a_table",
    "reasoning_about_colored_objects",
    "ruin_names",
    "salient_translation_error_detection",
    "snarks",
    "sports_understanding",
    "temporal_sequences",
    "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
    "web_of_lies",
    "word_sorting",
]
MINERVA_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)

BUILTIN_SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        _suite("core_9mcqa:rc::olmes:full", (f"{t}:rc::olmes:full" for t in CORE_9MCQA), "macro"),
        _suite("core_9mcqa:mc::olmes:full", (f"{t}:mc::olmes:full" for t in CORE_9MCQA), "macro"),
        _suite("mmlu:mc::olmes", (f"mmlu_{s}:mc::olmes" for s in MMLU_SUBJECTS), "macro"),
        _suite("mmlu:rc::olmes", (f"mmlu_{s}:rc::olmes" for s in MMLU_SUBJECTS), "macro"),
        _suite("bbh:cot::tulu", (f"bbh_{s}:cot::tulu" for s in BBH_SUBTASKS), "micro"),
        _suite(
            "minerva_math::tulu", (f"minerva_math_{s}::tulu" for s in MINERVA_SUBJECTS), "macro"
        ),
    )
}


def load_suites(extra_file: Path | None = None) -> dict[str, Suite]:
    """Built-in suites, updated by a user's JSON file `{name: {"members": [...], "averaging": ...}}`."""
    suites = dict(BUILTIN_SUITES)
    if extra_file is None:
        return suites
    try:
        raw = json.loads(extra_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{extra_file}: cannot read suite definitions: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"{extra_file}: expected a JSON object of suites, got {type(raw).__name__}"
        )
    for name, spec in raw.items():
        averaging = spec.get("averaging", "macro") if isinstance(spec, Mapping) else None
        members = spec.get("members") if isinstance(spec, Mapping) else None
        if averaging not in ("macro", "micro") or not isinstance(members, list) or not members:
            raise ValueError(
                f"{extra_file}: suite {name!r} needs a non-empty 'members' list and "
                "'averaging' of 'macro' or 'micro'"
            )
        suites[name] = _suite(name, (str(m) for m in members), averaging)
    return suites
