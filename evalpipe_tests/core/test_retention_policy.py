"""The retention policy file: safe defaults, and every mistake named by file, line and problem."""

from pathlib import Path

import pytest

from evalpipe.core.config import load_retention_policy
from evalpipe.core.retention_policy import PolicyError, RetentionPolicy, parse_policy


def test_without_a_file_the_defaults_delete_nothing_local_and_keep_a_year(tmp_path: Path) -> None:
    policy = load_retention_policy({"EVALPIPE_HOME": str(tmp_path)})
    assert policy.archive.delete_local is False
    assert policy.archive.after_days == 30
    assert policy.archive.target == (tmp_path / "archive").as_uri()
    assert (policy.snapshots.keep_last, policy.snapshots.keep_monthly) == (7, 12)
    assert policy.objects.grace_hours == 72
    assert (policy.dagster.runs_older_than_days, policy.dagster.keep_last_per_job) == (90, 20)
    assert policy.lake.partial_hours == 1
    assert policy.origin == "embedded defaults"


def test_a_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "retention.toml"
    path.write_text(
        '[archive]\ndelete_local = true\ntarget = "s3://bucket/archive"\n'
        '[snapshots]\nkeep_last = 1\npinned = ["202501010000"]\n'
    )
    policy = load_retention_policy(
        {"EVALPIPE_HOME": str(tmp_path), "EVALPIPE_RETENTION_FILE": str(path)}
    )
    assert policy.archive.delete_local is True
    assert policy.archive.target == "s3://bucket/archive"
    assert policy.archive.after_days == 30
    assert policy.snapshots.keep_last == 1
    assert policy.snapshots.pinned == ("202501010000",)
    assert policy.snapshots.keep_daily == RetentionPolicy().snapshots.keep_daily
    assert policy.origin == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[archive]\ndelete_locale = true\n", "p.toml:2: unknown key 'delete_locale' in [archive]"),
        (
            "[archive]\nafter_days = 30\ndelete_local = 1\n",
            "p.toml:3: [archive] delete_local must be true or false",
        ),
        ("[objects]\ngrace_hours = 2\n", "p.toml:2: [objects] grace_hours must be at least 24"),
        ("[snapshots]\n\nkeep_last = -1\n", "p.toml:3: [snapshots] keep_last must not be negative"),
        (
            "[snapshots]\nkeep_last = 1.5\n",
            "p.toml:2: [snapshots] keep_last must be a whole number",
        ),
        (
            '[archive]\ntarget = "/tmp/x"\n',
            "p.toml:2: [archive] target must be file:///absolute/path or s3://",
        ),
        ("[archives]\n", "p.toml:1: unknown section [archives]"),
        ("[archive\n", "p.toml: not valid TOML"),
    ],
)
def test_a_mistake_is_an_error_naming_file_line_and_problem(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.toml")
    assert str(caught.value).startswith(message)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(PolicyError, match=f"{missing}: cannot read the retention policy"):
        load_retention_policy({"EVALPIPE_RETENTION_FILE": str(missing)})
