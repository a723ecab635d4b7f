"""Resources shared by every area: where the dumps are and where evalpipe keeps its data."""

from pathlib import Path

import dagster as dg

from evalpipe.core.config import Settings, load_settings
from evalpipe.storage.lake import Lake


class EvalpipeHome(dg.ConfigurableResource):
    """Paths from `evalpipe.core.config`; tests build one on `tmp_path`."""

    home: str
    dumps: str
    settle_seconds: float = 30.0
    suites_file: str | None = None
    snapshot_target: str = ""
    datasets: str = ""
    lmeval: str = ""
    wandb_project: str = ""
    wandb_entity: str = ""
    board_tasks: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> "EvalpipeHome":
        return cls(
            home=str(settings.home),
            dumps=str(settings.dumps),
            settle_seconds=settings.settle_seconds,
            suites_file=str(settings.suites_file) if settings.suites_file else None,
            snapshot_target=settings.snapshot_target,
            datasets=str(settings.datasets),
            lmeval=str(settings.lmeval),
            wandb_project=settings.wandb_project or "",
            wandb_entity=settings.wandb_entity or "",
            board_tasks=",".join(settings.board_tasks),
        )

    def settings(self) -> Settings:
        """The same settings back (through the one config reader), for domain code."""
        return load_settings(
            {
                "EVALPIPE_HOME": self.home,
                "EVALPIPE_DUMPS": self.dumps,
                "EVALPIPE_SETTLE_SECONDS": str(self.settle_seconds),
                "EVALPIPE_SNAPSHOT_TARGET": self.snapshot_target,
                "EVALPIPE_SUITES_FILE": self.suites_file or "",
                "EVALPIPE_DATASETS": self.datasets,
                "EVALPIPE_LMEVAL": self.lmeval,
                "EVALPIPE_WANDB_PROJECT": self.wandb_project,
                "EVALPIPE_WANDB_ENTITY": self.wandb_entity,
                "EVALPIPE_BOARD_TASKS": self.board_tasks,
            }
        )

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def dumps_path(self) -> Path:
        return Path(self.dumps)

    @property
    def lake(self) -> Lake:
        return Lake(self.home_path / "lake")

    @property
    def warehouse_path(self) -> Path:
        return self.home_path / "warehouse.duckdb"

    def run_dir(self, run_id: str) -> Path:
        return self.dumps_path / run_id
