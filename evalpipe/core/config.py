"""The one place evalpipe reads its environment.

Every setting has an embedded default so that `make demo` works on a fresh clone with nothing set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from evalpipe.core.retention_policy import RetentionPolicy, load_policy_file

DEFAULT_HOME = "data"
DEFAULT_SETTLE_SECONDS = 30.0
SCANNERS = ("auto", "c", "python")
DEFAULT_SCANNER = "auto"
PG_SCHEME = "postgresql+psycopg2://"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; paths are absolute."""

    home: Path
    dumps: Path
    settle_seconds: float
    snapshot_target: str
    dagster_home: Path
    suites_file: Path | None
    datasets_root: Path | None = None
    """`EVALPIPE_DATASETS`: VMEvalKit data roots (default `$EVALPIPE_HOME/datasets`)."""

    @property
    def datasets(self) -> Path:
        return self.datasets_root or self.home / "datasets"

    lmeval_root: Path | None = None
    """`EVALPIPE_LMEVAL`, when set (see `lmeval`)."""
    wandb_project: str | None = None
    """`EVALPIPE_WANDB_PROJECT`: the W&B project healthy runs are logged to (none: no logging)."""
    wandb_entity: str | None = None
    """`EVALPIPE_WANDB_ENTITY`: the W&B team or user (default: the API key's own)."""
    board_tasks: tuple[str, ...] = ()
    """`EVALPIPE_BOARD_TASKS`: the overall leaderboard's declared task set, comma-separated
    task or suite names (a suite stands for its members); empty = every task on the board."""
    dagster_pg_url: str | None = None
    """`DAGSTER_PG_URL`: when set, the Dagster instance stores runs, event logs and schedules
    in this Postgres database (`evalpipe.defs.instance`); unset, in SQLite under DAGSTER_HOME."""

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def lmeval(self) -> Path:
        """Where lm-evaluation-harness `--output_path` results are watched (`EVALPIPE_LMEVAL`,
        default `$EVALPIPE_HOME/lmeval`)."""
        return self.lmeval_root or self.home / "lmeval"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read `EVALPIPE_*` variables, falling back to the documented defaults."""
    env = os.environ if env is None else env
    home = Path(env.get("EVALPIPE_HOME") or DEFAULT_HOME).expanduser().resolve()
    dumps = Path(env.get("EVALPIPE_DUMPS") or home / "dumps").expanduser().resolve()
    raw_settle = env.get("EVALPIPE_SETTLE_SECONDS") or str(DEFAULT_SETTLE_SECONDS)
    try:
        settle = float(raw_settle)
    except ValueError as exc:
        raise ValueError(
            f"EVALPIPE_SETTLE_SECONDS must be a number of seconds, got {raw_settle!r}"
        ) from exc
    if settle < 0:
        raise ValueError(f"EVALPIPE_SETTLE_SECONDS must not be negative, got {settle}")
    target = env.get("EVALPIPE_SNAPSHOT_TARGET") or (home / "snapshots").as_uri()
    dagster_home = Path(env.get("DAGSTER_HOME") or home / "dagster").expanduser().resolve()
    suites = env.get("EVALPIPE_SUITES_FILE")
    datasets = Path(env.get("EVALPIPE_DATASETS") or home / "datasets").expanduser().resolve()
    lmeval = env.get("EVALPIPE_LMEVAL")
    pg_url = env.get("DAGSTER_PG_URL") or None
    if pg_url and not pg_url.startswith(PG_SCHEME):
        raise ValueError(
            f"DAGSTER_PG_URL must start with {PG_SCHEME} (dagster-postgres talks to Postgres "
            "through psycopg2, and SQLAlchemy would pick another driver for a bare "
            f"postgresql://), got {pg_url.split('://')[0]}://..."
        )
    return Settings(
        home=home,
        dumps=dumps,
        settle_seconds=settle,
        snapshot_target=target,
        dagster_home=dagster_home,
        suites_file=Path(suites).expanduser().resolve() if suites else None,
        datasets_root=datasets,
        lmeval_root=Path(lmeval).expanduser().resolve() if lmeval else None,
        wandb_project=env.get("EVALPIPE_WANDB_PROJECT") or None,
        wandb_entity=env.get("EVALPIPE_WANDB_ENTITY") or None,
        dagster_pg_url=pg_url,
        board_tasks=tuple(
            t.strip() for t in (env.get("EVALPIPE_BOARD_TASKS") or "").split(",") if t.strip()
        ),
    )


class ScannerUnavailable(ImportError):
    """`EVALPIPE_SCANNER` insists on a scanner this install does not have."""


def load_scanner_choice(env: Mapping[str, str] | None = None) -> str:
    """`EVALPIPE_SCANNER`: which instance-line scanner to use. `auto` (the default) takes the C
    extension when `pip install` could build it, else the pure-Python one; `c` insists on the
    extension (an install that could not build it fails at import, not silently slower);
    `python` forces the pure-Python scanner, to test the path an install without a C compiler
    takes. Read once, when `evalpipe.sources.olmes.scanner` is imported."""
    env = os.environ if env is None else env
    choice = (env.get("EVALPIPE_SCANNER") or DEFAULT_SCANNER).strip().lower()
    if choice not in SCANNERS:
        raise ValueError(f"EVALPIPE_SCANNER must be one of {', '.join(SCANNERS)}, got {choice!r}")
    return choice


def load_retention_policy(env: Mapping[str, str] | None = None) -> RetentionPolicy:
    """The retention policy from `EVALPIPE_RETENTION_FILE` (TOML, see
    `evalpipe.core.retention_policy`), or the embedded safe defaults when it is unset. An empty
    `[archive] target` becomes `$EVALPIPE_HOME/archive` as a file:// URL."""
    env = os.environ if env is None else env
    path = env.get("EVALPIPE_RETENTION_FILE")
    policy = load_policy_file(Path(path).expanduser()) if path else RetentionPolicy()
    if not policy.archive.target:
        target = (load_settings(env).home / "archive").as_uri()
        policy = replace(policy, archive=replace(policy.archive, target=target))
    return policy
