"""What validating a VMEvalKit data root can find: one `Issue` per problem, with a fixed code.

Codes are the contract of `evalpipe validate` and of the `vm_manifest_issues` table; each has
one severity. Errors quarantine the data root; warnings only inform.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ERROR = "error"
WARNING = "warning"

CODES: dict[str, tuple[str, str]] = {
    "invalid_json": (ERROR, "a JSON file does not parse (line and column given) or is not UTF-8"),
    "missing_key": (
        ERROR,
        "a required key is absent (manifest pair, question metadata, evaluation)",
    ),
    "invalid_value": (
        ERROR,
        "a key holds the wrong type (an id that is not a string, pairs that are not a list, ...)",
    ),
    "missing_file": (
        ERROR,
        "a referenced image or prompt, a question folder the manifest "
        "lists, or `questions/` itself is absent",
    ),
    "path_escape": (
        ERROR,
        "a path is absolute, contains `..`, or is a symlink that resolves outside the data root",
    ),
    "duplicate_id": (ERROR, "two manifest pairs or two question folders share an id"),
    "id_mismatch": (
        ERROR,
        "folder name vs `id`, domain folder vs `domain`, id prefix vs "
        "`domain`, or an evaluation's `metadata.task_id` vs its folder",
    ),
    "manifest_mismatch": (
        ERROR,
        "a manifest pair differs from its folder's question_metadata.json",
    ),
    "count_mismatch": (
        ERROR,
        "`total_pairs`, `generation_info` counts or allocation vs the pairs that are there",
    ),
    "bad_image": (ERROR, "an image that is empty, not PNG/JPEG by signature, or truncated"),
    "prompt_mismatch": (
        ERROR,
        "prompt.txt is empty, not UTF-8, or differs from the metadata prompt",
    ),
    "invalid_score": (
        ERROR,
        "a score that is not a number in 0-5, or a scored evaluation without one",
    ),
    "missing_manifest": (
        WARNING,
        "questions/vmeval_dataset.json is absent: validated from the folders alone",
    ),
    "missing_metadata": (WARNING, "a question folder without question_metadata.json"),
    "orphan_folder": (WARNING, "a question folder the manifest does not list"),
    "orphan_output": (WARNING, "an output or evaluation for a task id the questions do not have"),
    "incomplete_output": (
        WARNING,
        "a run folder without video/, question/ or metadata.json "
        "(what upstream verify.py warns about)",
    ),
    "missing_folder": (WARNING, "outputs/ or evaluations/ is absent (as upstream verify.py warns)"),
    "superseded_run": (
        WARNING,
        "a task with several runs: the newest counts (by the run id's timestamp, then mtime)",
    ),
}


@dataclass(frozen=True)
class Issue:
    """One finding, as `evalpipe validate --format json` prints it; `path` is relative to the
    data root (posix), or `.` for the root itself."""

    dataset: str
    path: str
    code: str
    severity: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class IssueLog:
    """Collects the issues of one data root, with each code's fixed severity."""

    dataset: str
    issues: list[Issue] = field(default_factory=list)

    def add(self, path: str, code: str, message: str) -> Issue:
        issue = Issue(self.dataset, path or ".", code, CODES[code][0], message)
        self.issues.append(issue)
        return issue

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]
