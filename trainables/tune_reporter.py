"""The Reporter used inside a Ray Tune trial: `tune.report` with a checkpoint every epoch."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from ray import tune

from trainables.reporting import CHECKPOINT_FILE, load_checkpoint_file


class TuneReporter:
    def load_checkpoint(self) -> dict | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return load_checkpoint_file(Path(folder) / CHECKPOINT_FILE)

    def __init__(self):
        import ray

        # Which node ran each epoch: where to look when a cluster trial misbehaves.
        self.node_id = ray.get_runtime_context().get_node_id()

    def report(self, metrics: dict[str, Any], state: Callable[[], dict]) -> None:
        metrics = {**metrics, "node_id": self.node_id}
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state(), Path(folder) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
