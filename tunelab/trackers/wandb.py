"""`--wandb PROJECT`: every trial as a W&B run (tunelab.tracking_wandb, on Ray Tune's W&B integration)."""
from __future__ import annotations

from typing import Any

from tunelab.options import option


class WandbTracker:
    name = "wandb"
    extra = "wandb"
    # Offline runs go to EXPERIMENT/wandb/: the run folders and the log links W&B writes there.
    folders_in_experiment: dict = {"wandb": ("offline-run-*", "run-*", "latest-run", "debug.log",
                                             "debug-internal.log")}
    option = option(None, "log every trial as a W&B run in this project (WANDB_MODE=offline: under "
                          "EXPERIMENT/wandb/); needs pip install -e '.[wandb]'", metavar="PROJECT")

    def check(self, value: str) -> None:
        from tunelab.tracking_wandb import check_wandb

        check_wandb(value)

    def resolve(self, value: str) -> str:
        return value  # a project name means the same from any folder

    def callbacks(self, value: str, opts, record: dict[str, Any]) -> list:
        from tunelab.core.storage import local_path
        from tunelab.tracking_wandb import TunelabWandbCallback

        folder = local_path(record["experiment"])  # offline runs beside the experiment's own files
        return [TunelabWandbCallback(value, record, str(folder) if folder else None)]

    def retire(self, value: str, name: str, experiment: str) -> None:
        # Offline runs live in EXPERIMENT/wandb/, replaced with the experiment's own files; online
        # runs stay in their W&B project, grouped under the experiment's name and tagged with its status.
        return None


TRACKER = WandbTracker()
