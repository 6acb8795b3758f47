"""`--mlflow URI`: every trial as an MLflow run (tunelab.tracking, on Ray Tune's MLflow integration)."""
from __future__ import annotations

from typing import Any

from tunelab.options import option


class MLflowTracker:
    name = "mlflow"
    extra = "mlflow"
    folders_in_experiment: dict = {}  # its runs live in the tracking store, never in the experiment folder
    option = option(None, "log every trial as an MLflow run at this tracking URI (e.g. sqlite:///runs/mlflow.db); "
                          "needs pip install -e '.[mlflow]'", metavar="URI")

    def check(self, value: str) -> None:
        from tunelab.tracking import check_mlflow

        check_mlflow(value)

    def resolve(self, value: str) -> str:
        from tunelab.preflight import absolute_tracking_uri

        return absolute_tracking_uri(value)

    def callbacks(self, value: str, opts, record: dict[str, Any]) -> list:
        from tunelab.credentials import hand_over
        from tunelab.tracking import TunelabMLflowCallback

        return [TunelabMLflowCallback(hand_over(value), record)]

    def retire(self, value: str, name: str, experiment: str) -> None:
        from tunelab.tracking import retire_runs

        retire_runs(value, name, experiment)


TRACKER = MLflowTracker()
