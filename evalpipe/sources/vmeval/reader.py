"""Read and validate one VMEvalKit data root: questions, outputs, evaluations, and every issue.

One pass does both, so `evalpipe validate` and the ingest judge exactly the same files. Nothing
here raises on bad input: every malformed file becomes one `Issue` naming it (with line and
column for JSON), and the items it concerns are marked invalid so the tables keep only valid
rows. Files are opened only when they are regular files inside the data root (a FIFO would
hang a reader; a symlink may point anywhere).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalpipe.sources.vmeval.images import image_problem
from evalpipe.sources.vmeval.issues import IssueLog
from evalpipe.sources.vmeval.layout import EVALUATIONS, MANIFEST, OUTPUTS, QUESTIONS

METADATA = "question_metadata.json"
PROMPT = "prompt.txt"
REQUIRED_PAIR_KEYS = ("id", "domain", "prompt", "first_image_path", "final_image_path")
"""What upstream verify.py requires of a pair; `final_image_path` may be null but not absent."""
COMMON_KEYS = frozenset({*REQUIRED_PAIR_KEYS, "task_category", "difficulty", "created_at"})
SCORE_KEYS = ("solution_correctness_score", "goal_achieved_score")
UNSCORED_STATUSES = ("skipped", "failed")
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov")
RUN_TIMESTAMP = re.compile(r"_(\d{8}_\d{6})$")
MAX_JSON_BYTES = 256 * 1024 * 1024
MAX_PROMPT_BYTES = 1024 * 1024
AGGREGATE_SUFFIX = "_all_models.json"


@dataclass
class Question:
    id: str
    domain: str | None
    task_category: str | None
    difficulty: str | None
    prompt: str | None
    first_image_path: str | None
    final_image_path: str | None
    has_final_frame: bool
    created_at: datetime | None
    payload: dict[str, Any]
    folder: str
    valid: bool = True


@dataclass
class Output:
    experiment: str | None
    model: str
    domain: str
    question_id: str
    run_id: str | None
    status: str | None
    video_path: str | None
    duration_seconds: float | None
    started_at: datetime | None
    metadata: dict[str, Any] | None
    path: str
    order: tuple
    is_latest: bool = True
    valid: bool = True


@dataclass
class Evaluation:
    evaluator: str
    evaluator_name: str | None
    experiment: str | None
    model: str
    domain: str
    question_id: str
    score: float | None
    status: str | None
    annotator: str | None
    evaluated_at: datetime | None
    result: dict[str, Any]
    path: str
    valid: bool = True

    @property
    def success(self) -> bool | None:
        return None if self.score is None else self.score >= 4


@dataclass
class DataRoot:
    """Everything read from one data root and everything wrong with it."""

    dataset: str
    root: Path
    log: IssueLog
    has_manifest: bool = False
    questions: list[Question] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def superseded_runs(self) -> int:
        """Valid runs that a newer valid run of the same task replaces."""
        return sum(o.valid and not o.is_latest for o in self.outputs)


def read_data_root(root: Path, dataset: str) -> DataRoot:
    """Validate and read the data root at `root`, named `dataset` in every issue and row."""
    reader = _Reader(root, IssueLog(dataset))
    data = DataRoot(dataset, root, reader.log)
    reader.read_questions(data)
    known = {q.id for q in data.questions}
    reader.read_outputs(data, known)
    reader.read_evaluations(data, known)
    return data


def domain_of(question_id: str) -> str:
    """`mirror_clock_0001` → `mirror_clock`: ids split from the right (domains hold `_`)."""
    return question_id.rsplit("_", 1)[0]


def parse_time(value: Any) -> datetime | None:
    """An ISO timestamp as UTC. Upstream writes local naive time, sometimes labelled `Z`; it is
    kept as written (there is no zone to convert from)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class _Reader:
    def __init__(self, root: Path, log: IssueLog) -> None:
        self.root = root
        self.resolved = root.resolve()
        self.log = log
        self.pairs_by_id: dict[str, dict] = {}
        """The manifest's valid pairs by id (empty without a manifest)."""

    # --- files -------------------------------------------------------------------------

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def regular_file(self, path: Path) -> bool | None:
        """True for a regular file inside the data root, None when absent; False (with an
        issue) for a symlink that leaves the root or a special file."""
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.log.add(self.rel(path), "missing_file", f"cannot stat: {exc.strerror or exc}")
            return False
        if stat.S_ISLNK(st.st_mode):
            target = self.link_target(path)
            if target is None:
                return False
            try:
                st = target.stat()
            except FileNotFoundError:
                return None
            except OSError as exc:
                self.log.add(self.rel(path), "missing_file", f"cannot stat: {exc.strerror or exc}")
                return False
        if not stat.S_ISREG(st.st_mode):
            self.log.add(self.rel(path), "missing_file", "not a regular file; not read")
            return False
        return True

    def subdirs(self, directory: Path) -> list[Path]:
        """Subdirectories (symlinked ones only when they stay inside the root), sorted."""
        found = []
        for entry in self.entries(directory):
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_symlink() and self.link_target(path) is None:
                continue
            if entry.is_dir():
                found.append(path)
        return found

    def files(self, directory: Path) -> list[Path]:
        if not directory.is_dir():
            return []
        return [  # hidden files (editor swap files, macOS `._*` forks) are not results
            Path(e.path)
            for e in self.entries(directory)
            if not e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
        ]

    def entries(self, directory: Path) -> list[os.DirEntry]:
        """The directory's entries by name; an unlistable directory is one issue."""
        try:
            with os.scandir(directory) as listing:
                return sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            self.log.add(self.rel(directory), "missing_file", f"cannot list: {exc.strerror or exc}")
            return []

    def link_target(self, path: Path) -> Path | None:
        """Where a symlink leads, if that is inside the data root; else None with one issue
        (a link out of the root, or a loop)."""
        try:
            target = path.resolve()
        except (OSError, RuntimeError) as exc:
            self.log.add(self.rel(path), "path_escape", f"symlink cannot be resolved: {exc}")
            return None
        if not target.is_relative_to(self.resolved):
            self.log.add(
                self.rel(path), "path_escape", f"symlink resolves outside the data root: {target}"
            )
            return None
        return target

    def load_json(self, path: Path) -> tuple[bool, Any]:
        """(True, value) for a file that parses; otherwise one issue and (False, None)."""
        where = self.rel(path)
        try:
            if path.stat().st_size > MAX_JSON_BYTES:
                self.log.add(where, "invalid_json", f"larger than {MAX_JSON_BYTES} bytes; not read")
                return False, None
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            self.log.add(where, "invalid_json", f"not UTF-8 at byte {exc.start}")
            return False, None
        except OSError as exc:
            self.log.add(where, "invalid_json", f"cannot read: {exc.strerror or exc}")
            return False, None
        try:
            return True, json.loads(text)
        except json.JSONDecodeError as exc:
            self.log.add(where, "invalid_json", f"line {exc.lineno} column {exc.colno}: {exc.msg}")
        except RecursionError:
            self.log.add(where, "invalid_json", "nested too deeply")
        return False, None

    def load_object(self, path: Path) -> dict | None:
        ok, value = self.load_json(path)
        if not ok:
            return None
        if not isinstance(value, dict):
            self.log.add(
                self.rel(path),
                "invalid_value",
                f"top level is {type(value).__name__}, not an object",
            )
            return None
        return value

    def question_ref(self, value: Any, where: str, label: str) -> Path | None:
        """A path from question metadata (relative to questions/): the file if it is inside
        the data root and exists, else None with one issue."""
        if not isinstance(value, str) or not value:
            self.log.add(where, "invalid_value", f"{label} is {value!r}, not a path")
            return None
        parts = value.replace("\\", "/").split("/")
        if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value) or ".." in parts:
            self.log.add(where, "path_escape", f"{label} {value!r} is absolute or contains '..'")
            return None
        path = self.root / QUESTIONS / value
        present = self.regular_file(path)
        if present is None:
            self.log.add(where, "missing_file", f"{label} {value!r} does not exist")
        return path if present else None

    # --- questions -----------------------------------------------------------------------

    def read_questions(self, data: DataRoot) -> None:
        questions = self.root / QUESTIONS
        if not questions.is_dir() or questions.is_symlink():
            self.log.add(QUESTIONS, "missing_file", "the data root has no questions/ folder")
            return
        pairs = self.read_manifest(questions / MANIFEST, data)
        folders = self.question_folders(questions)
        by_id: dict[str, Question] = {}
        for question_id, folder in folders.items():
            errors = len(self.log.errors)
            pair = pairs.get(question_id)
            question = self.read_folder(folder, pair)
            if question is None:
                continue
            question.valid = len(self.log.errors) == errors and (pair is None or pair[1])
            by_id[question_id] = question
            if data.has_manifest and pair is None:
                self.log.add(
                    self.rel(folder), "orphan_folder", "question folder not listed in the manifest"
                )
        for question_id, (index, _) in pairs.items():
            if question_id not in folders:
                self.log.add(
                    f"{QUESTIONS}/{MANIFEST}",
                    "missing_file",
                    f"pairs[{index}] ({question_id}): no question folder {question_id}/",
                )
        data.questions = sorted(by_id.values(), key=lambda q: q.id)

    def read_manifest(self, path: Path, data: DataRoot) -> dict[str, tuple[int, bool]]:
        """The manifest's pairs by id, as (index, valid); checks keys, ids and counts."""
        where = self.rel(path)
        present = self.regular_file(path)
        if present is None:
            self.log.add(where, "missing_manifest", "no manifest: validated from the folders")
            return {}
        data.has_manifest = True
        manifest = self.load_object(path) if present else None
        if manifest is None:
            return {}
        if "pairs" not in manifest:
            self.log.add(where, "missing_key", "no 'pairs' list")
            return {}
        if not isinstance(manifest["pairs"], list):
            self.log.add(where, "invalid_value", "'pairs' is not a list")
            return {}
        pairs: dict[str, tuple[int, bool]] = {}
        seen: set[str] = set()
        domains: Counter[str] = Counter()
        for index, pair in enumerate(manifest["pairs"]):
            if not isinstance(pair, dict):
                self.log.add(where, "invalid_value", f"pairs[{index}] is not an object")
                continue
            label = f"pairs[{index}]" + (
                f" ({pair['id']})" if isinstance(pair.get("id"), str) else ""
            )
            errors = len(self.log.errors)
            for key in REQUIRED_PAIR_KEYS:
                if key not in pair:
                    self.log.add(where, "missing_key", f"{label}: no {key!r}")
            question_id = pair.get("id")
            if "id" in pair and not isinstance(question_id, str):
                self.log.add(where, "invalid_value", f"{label}: id is {question_id!r}")
                continue
            if question_id is None:
                continue
            if question_id in seen:
                self.log.add(where, "duplicate_id", f"{label}: id {question_id} listed twice")
                continue
            seen.add(question_id)
            if isinstance(pair.get("domain"), str):
                domains[pair["domain"]] += 1
                if domain_of(question_id) != pair["domain"]:
                    self.log.add(
                        where, "id_mismatch", f"{label}: domain {pair['domain']!r} vs its id"
                    )
            self.pairs_by_id[question_id] = pair
            pairs[question_id] = (index, len(self.log.errors) == errors)
        self.check_counts(where, manifest, len(manifest["pairs"]), domains)
        return pairs

    def check_counts(self, where: str, manifest: dict, n_pairs: int, domains: Counter) -> None:
        total = manifest.get("total_pairs")
        if total is not None and total != n_pairs:
            self.log.add(where, "count_mismatch", f"total_pairs is {total!r}, pairs has {n_pairs}")
        info = manifest.get("generation_info")
        if info is None:
            return
        if not isinstance(info, dict):
            self.log.add(where, "invalid_value", "generation_info is not an object")
            return
        actual = info.get("actual_pairs")
        if actual is not None and actual != n_pairs:
            self.log.add(
                where,
                "count_mismatch",
                f"generation_info.actual_pairs is {actual!r}, pairs has {n_pairs}",
            )
        allocation = info.get("allocation")
        if isinstance(allocation, dict):
            self.compare_domains(where, "generation_info.allocation", allocation, domains)
        elif allocation is not None:
            self.log.add(where, "invalid_value", "generation_info.allocation is not an object")
        described = info.get("domains")
        if isinstance(described, dict):
            counts = {d: v.get("count") if isinstance(v, dict) else v for d, v in described.items()}
            if any(c is not None for c in counts.values()):
                self.compare_domains(where, "generation_info.domains", counts, domains)
        elif described is not None:
            self.log.add(where, "invalid_value", "generation_info.domains is not an object")

    def compare_domains(self, where: str, label: str, stated: dict, domains: Counter) -> None:
        wrong = [
            f"{d}: {stated.get(d, 0)!r} vs {domains.get(d, 0)}"
            for d in sorted(set(stated) | set(domains), key=str)
            if stated.get(d, 0) != domains.get(d, 0)
        ]
        if wrong:
            self.log.add(
                where, "count_mismatch", f"{label} disagrees with the pairs ({'; '.join(wrong)})"
            )

    def question_folders(self, questions: Path) -> dict[str, Path]:
        """Question folders (`<domain>_task/<id>/`) by folder name; a name twice is an issue."""
        folders: dict[str, Path] = {}
        for domain_dir in self.subdirs(questions):
            for folder in self.subdirs(domain_dir):
                if folder.name in folders:
                    self.log.add(
                        self.rel(folder),
                        "duplicate_id",
                        f"question id {folder.name} also at {self.rel(folders[folder.name])}",
                    )
                    continue
                folders[folder.name] = folder
        return folders

    def read_folder(self, folder: Path, pair: tuple[int, bool] | None) -> Question | None:
        """One question folder, checked against its metadata, prompt, images and manifest pair."""
        where = self.rel(folder / METADATA)
        listed = self.pairs_by_id.get(folder.name) if pair else None
        present = self.regular_file(folder / METADATA)
        metadata = None
        if present is None:
            self.log.add(where, "missing_metadata", "no question_metadata.json in the folder")
        elif present:
            metadata = self.load_object(folder / METADATA)
            if metadata is not None:
                for key in REQUIRED_PAIR_KEYS:
                    if key not in metadata:
                        self.log.add(where, "missing_key", f"no {key!r}")
        source = metadata if metadata is not None else listed
        if source is None:
            return None
        if metadata is None:
            where = f"{QUESTIONS}/{MANIFEST}"
        question_id = source.get("id")
        domain = source.get("domain")
        if not isinstance(question_id, str):
            if "id" in source:
                self.log.add(where, "invalid_value", f"id is {question_id!r}")
            question_id = folder.name
        if question_id != folder.name:
            self.log.add(where, "id_mismatch", f"id {question_id!r} in folder {folder.name}/")
        if isinstance(domain, str):
            if folder.parent.name != f"{domain}_task":
                self.log.add(
                    where, "id_mismatch", f"domain {domain!r} in folder {folder.parent.name}/"
                )
            elif domain_of(question_id) != domain:
                self.log.add(where, "id_mismatch", f"domain {domain!r} vs id {question_id!r}")
        elif domain is not None:
            self.log.add(where, "invalid_value", f"domain is {domain!r}")
        if metadata is not None and listed is not None and metadata != listed:
            differ = sorted(
                k for k in set(metadata) | set(listed) if metadata.get(k) != listed.get(k)
            )
            self.log.add(
                where,
                "manifest_mismatch",
                f"differs from its manifest pair in {', '.join(differ[:5])}"
                + (f" and {len(differ) - 5} more" if len(differ) > 5 else ""),
            )
        prompt = source.get("prompt")
        if "prompt" in source and not isinstance(prompt, str):
            self.log.add(where, "invalid_value", f"prompt is {type(prompt).__name__}")
            prompt = None
        self.check_prompt(folder / PROMPT, prompt)
        self.check_image(source, "first_image_path", where)
        final = None
        if source.get("final_image_path") is not None:
            final = self.check_image(source, "final_image_path", where)
        return Question(
            id=question_id,
            domain=domain if isinstance(domain, str) else None,
            task_category=_text(source.get("task_category")),
            difficulty=_text(source.get("difficulty")),
            prompt=prompt,
            first_image_path=_text(source.get("first_image_path")),
            final_image_path=_text(source.get("final_image_path")),
            has_final_frame=final is not None,
            created_at=parse_time(source.get("created_at")),
            payload={k: v for k, v in source.items() if k not in COMMON_KEYS},
            folder=self.rel(folder),
        )

    def check_prompt(self, path: Path, prompt: str | None) -> None:
        where = self.rel(path)
        present = self.regular_file(path)
        if present is None:
            self.log.add(where, "missing_file", "no prompt.txt")
            return
        if not present:
            return
        try:
            if path.stat().st_size > MAX_PROMPT_BYTES:
                self.log.add(where, "prompt_mismatch", f"larger than {MAX_PROMPT_BYTES} bytes")
                return
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            self.log.add(where, "prompt_mismatch", f"not UTF-8 at byte {exc.start}")
            return
        except OSError as exc:
            self.log.add(where, "missing_file", f"cannot read: {exc.strerror or exc}")
            return
        if not text.strip():
            self.log.add(where, "prompt_mismatch", "empty prompt.txt")
        elif prompt is not None and text.strip() != prompt.strip():
            self.log.add(where, "prompt_mismatch", "differs from the metadata prompt")

    def check_image(self, source: dict, key: str, where: str) -> Path | None:
        if key not in source:
            return None
        path = self.question_ref(source[key], where, key)
        if path is None:
            return None
        problem = image_problem(path)
        if problem:
            self.log.add(self.rel(path), "bad_image", problem)
            return None
        return path

    # --- outputs -------------------------------------------------------------------------

    def task_dirs(self, top: Path, depths: tuple[int, ...]) -> list[tuple[list[str], Path]]:
        """`<...>/<domain>_task` folders at the given depths below `top`, with the folder names
        above them (experiment, model, ...)."""
        found: list[tuple[list[str], Path]] = []
        pending: list[tuple[list[str], Path]] = [([], top)]
        while pending:
            parents, directory = pending.pop()
            for sub in self.subdirs(directory):
                depth = len(parents) + 1
                if sub.name.endswith("_task") and depth in depths:
                    found.append((parents, sub))
                elif depth < max(depths):
                    pending.append(([*parents, sub.name], sub))
        return sorted(found, key=lambda item: item[1])

    def read_outputs(self, data: DataRoot, known: set[str]) -> None:
        top = self.root / OUTPUTS
        if not top.is_dir():
            self.log.add(OUTPUTS, "missing_folder", "no outputs/ folder")
            return
        for parents, task_dir in self.task_dirs(top, (2, 3)):
            experiment = parents[0] if len(parents) == 2 else None
            model, domain = parents[-1], task_dir.name.removesuffix("_task")
            for task in self.subdirs(task_dir):
                if task.name not in known:
                    self.log.add(
                        self.rel(task), "orphan_output", f"no question {task.name} in questions/"
                    )
                if (task / "video").is_dir():
                    runs = [(None, task)]
                else:
                    runs = [(run.name, run) for run in self.subdirs(task)]
                for run_id, run_dir in runs:
                    errors = len(self.log.errors)
                    output = self.read_run(run_dir, run_id, experiment, model, domain, task.name)
                    output.valid = len(self.log.errors) == errors
                    data.outputs.append(output)
        self.mark_latest(data)

    def read_run(
        self,
        run_dir: Path,
        run_id: str | None,
        experiment: str | None,
        model: str,
        domain: str,
        task_id: str,
    ) -> Output:
        metadata = None
        if run_id is not None:
            missing = [
                name
                for name in ("video", "question", "metadata.json")
                if not (run_dir / name).exists()
            ]
            if missing:
                self.log.add(self.rel(run_dir), "incomplete_output", f"no {', '.join(missing)}")
            if self.regular_file(run_dir / "metadata.json"):
                metadata = self.load_object(run_dir / "metadata.json")
        inference = metadata.get("inference") if metadata else None
        inference = inference if isinstance(inference, dict) else {}
        videos = [p for p in self.files(run_dir / "video") if p.suffix.lower() in VIDEO_SUFFIXES]
        if run_id is None and not videos:
            self.log.add(self.rel(run_dir), "incomplete_output", "no video in video/")
        video = next((p for p in videos if self.regular_file(p)), None)
        duration = inference.get("duration_seconds")
        stamp = RUN_TIMESTAMP.search(run_id or "")
        try:
            mtime = run_dir.stat().st_mtime_ns
        except OSError:
            mtime = 0
        return Output(
            experiment=experiment,
            model=model,
            domain=domain,
            question_id=task_id,
            run_id=run_id,
            status=_text(inference.get("status")),
            video_path=self.rel(video) if video else None,
            duration_seconds=float(duration) if _is_number(duration) else None,
            started_at=parse_time(inference.get("timestamp")),
            metadata=metadata,
            path=self.rel(run_dir),
            order=(stamp.group(1) if stamp else "", mtime),
        )

    def mark_latest(self, data: DataRoot) -> None:
        """Several runs of one task: the newest valid run (by the run id's timestamp, then
        mtime) counts; a run with an error never does."""
        groups: dict[tuple, list[Output]] = {}
        for output in data.outputs:
            output.is_latest = False
            if output.valid:
                key = (output.experiment, output.model, output.domain, output.question_id)
                groups.setdefault(key, []).append(output)
        for runs in groups.values():
            max(runs, key=lambda o: o.order).is_latest = True
        superseded = sum(len(runs) - 1 for runs in groups.values())
        if superseded:
            self.log.add(
                OUTPUTS,
                "superseded_run",
                f"{superseded} runs superseded by a newer run of the same task "
                "(kept in vm_outputs with is_latest false)",
            )

    # --- evaluations ---------------------------------------------------------------------

    def read_evaluations(self, data: DataRoot, known: set[str]) -> None:
        top = self.root / EVALUATIONS
        if not top.is_dir():
            self.log.add(EVALUATIONS, "missing_folder", "no evaluations/ folder")
            return
        for parents, task_dir in self.task_dirs(top, (3, 4)):
            evaluator_dir = parents[0] if len(parents) == 3 else None
            experiment, model = parents[-2], parents[-1]
            domain = task_dir.name.removesuffix("_task")
            for task in self.subdirs(task_dir):
                if task.name not in known:
                    self.log.add(
                        self.rel(task), "orphan_output", f"no question {task.name} in questions/"
                    )
                for path in self.files(task):
                    if path.suffix != ".json" or path.name.endswith(AGGREGATE_SUFFIX):
                        continue
                    errors = len(self.log.errors)
                    evaluation = self.read_evaluation(
                        path, evaluator_dir, experiment, model, domain, task.name
                    )
                    if evaluation is not None:
                        evaluation.valid = len(self.log.errors) == errors
                        data.evaluations.append(evaluation)

    def read_evaluation(
        self,
        path: Path,
        evaluator_dir: str | None,
        experiment: str,
        model: str,
        domain: str,
        task_id: str,
    ) -> Evaluation | None:
        where = self.rel(path)
        if not self.regular_file(path):
            return None
        document = self.load_object(path)
        if document is None:
            return None
        metadata = document.get("metadata", {})
        if not isinstance(metadata, dict):
            self.log.add(where, "invalid_value", "metadata is not an object")
            metadata = {}
        if "result" not in document:
            self.log.add(where, "missing_key", "no 'result'")
            return None
        result = document["result"]
        if not isinstance(result, dict):
            self.log.add(where, "invalid_value", "result is not an object")
            return None
        if "task_id" in metadata and metadata["task_id"] != task_id:
            self.log.add(
                where, "id_mismatch", f"metadata.task_id {metadata['task_id']!r} in {task_id}/"
            )
        status = _text(result.get("status"))
        score = self.score(result, status, where)
        return Evaluation(
            evaluator=evaluator_dir or path.stem,
            evaluator_name=_text(metadata.get("evaluator")) or path.stem,
            experiment=experiment,
            model=model,
            domain=domain,
            question_id=task_id,
            score=score,
            status=status,
            annotator=_text(metadata.get("annotator")),
            evaluated_at=parse_time(metadata.get("timestamp")),
            result=result,
            path=where,
        )

    def score(self, result: dict, status: str | None, where: str) -> float | None:
        key = next((k for k in SCORE_KEYS if k in result), None)
        if key is None:
            if status not in UNSCORED_STATUSES:
                self.log.add(
                    where, "invalid_score", f"status {status!r} but no {' or '.join(SCORE_KEYS)}"
                )
            return None
        value = result[key]
        if not _is_number(value) or not 0 <= value <= 5:
            self.log.add(where, "invalid_score", f"{key} is {value!r}, not a number in 0-5")
            return None
        return float(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
