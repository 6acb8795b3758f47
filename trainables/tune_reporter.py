"""The Reporter used inside a Ray Tune trial: `tune.report` every epoch, a checkpoint now and then."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from ray import tune

from tunelab.core import metrics as M
from tunelab.trainables.fileio import CHECKPOINT_FILE, load_checkpoint_file
from tunelab.trainables.phases import mark, trial_id


PARK_S = 120.0  # the longest a trial waits for the stop after its checkpoint at the deadline


class TuneReporter:
    """Reports every epoch's metrics; attaches a checkpoint when `checkpoint_interval_s` has passed
    since the last one (0: every epoch) and always at the last epoch.

    Each checkpoint costs the trial a `torch.save`, the storage a copy, and the driver an
    experiment snapshot; with epochs of a second that is a large share of the run, while a trial
    lost between checkpoints only redoes at most the interval's epochs.
    """

    def __init__(self, total_epochs: int, checkpoint_interval_s: float = 0.0, deadline: float | None = None):
        import ray

        self.total_epochs = total_epochs
        self.interval = checkpoint_interval_s
        # The search's time budget ends at this Unix time (tunelab/budget.py): every report after it
        # checkpoints, so the graceful stop that follows loses no epoch.
        self.deadline = deadline
        self.last_checkpoint = time.monotonic()
        # Which node ran each epoch: where to look when a cluster trial misbehaves.
        self.node_id = ray.get_runtime_context().get_node_id()

    def load_checkpoint(self) -> dict | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return load_checkpoint_file(Path(folder) / CHECKPOINT_FILE)

    def checkpoint_due(self, epoch: int) -> bool:
        return (epoch >= self.total_epochs or time.monotonic() - self.last_checkpoint >= self.interval
                or self.past_deadline())

    def report(self, metrics: dict[str, Any], state: Callable[[], dict]) -> None:
        metrics = {**metrics, "node_id": self.node_id}
        began = time.time()
        if not self.checkpoint_due(int(metrics[M.EPOCH])):
            tune.report(metrics)
            mark("report", trial=trial_id(), epoch=metrics[M.EPOCH], began=began, checkpoint=False,
                 epoch_s=metrics.get(M.EPOCH_SECONDS))
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state(), Path(folder) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        self.last_checkpoint = time.monotonic()
        mark("report", trial=trial_id(), epoch=metrics[M.EPOCH], began=began, checkpoint=True,
             epoch_s=metrics.get(M.EPOCH_SECONDS))
        if self.past_deadline() and int(metrics[M.EPOCH]) < self.total_epochs:
            self.wait_for_stop()

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def wait_for_stop(self) -> None:
        """The time budget is spent and this epoch's checkpoint is reported: the driver stops the
        search as soon as every running trial has reported once more. Training on meanwhile would
        only make epochs that the resumed trial redoes from this checkpoint; wait instead (and go
        on after PARK_S, should no stop come: a driver whose clock runs behind this node's)."""
        end = time.monotonic() + PARK_S
        while time.monotonic() < end:
            time.sleep(0.1)
