"""Where a trainable's per-epoch metrics and checkpoints go.

The engine never calls Ray directly: it is handed a Reporter. `LocalReporter` prints and keeps
files in a folder (the `tunelab train` command, tests); the Tune reporter (in `tunelab.trainables.tune`)
forwards to `tune.report` / `tune.get_checkpoint`.
"""
from __future__ import annotations

import csv
import io
import os
import sys
from typing import Any, Callable, Protocol

from tunelab.core import metrics as M
from tunelab.core.errors import ConfigError
from tunelab.trainables.fileio import (CHECKPOINT_FILE, atomic_write_bytes, check_output_path, load_checkpoint_file,
                               save_checkpoint)

class Reporter(Protocol):
    def load_checkpoint(self) -> dict | None:
        """The state saved by the last report of this same trial, or None on a fresh start."""

    def report(self, metrics: dict[str, Any], state: Callable[[], dict]) -> None:
        """Record one epoch's metrics; call `state()` to get the checkpoint if one is kept."""


def format_metrics(metrics: dict[str, Any], total_epochs: int | None = None) -> str:
    """One concise line: epoch, then the metrics that matter, 4 significant digits."""
    order = [M.TRAIN_LOSS, M.TRAIN_ACC, M.VAL_LOSS, M.VAL_ACC, M.VAL_ACC_BEST]
    names = order + sorted(k for k in metrics if k not in order and k not in (M.EPOCH,))
    epoch = metrics.get(M.EPOCH, "?")
    head = f"epoch {epoch}/{total_epochs}" if total_epochs else f"epoch {epoch}"
    parts = [head]
    for name in names:
        if name in metrics:
            value = metrics[name]
            parts.append(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}")
    return "  ".join(parts)


class LocalReporter:
    """Prints each epoch to stderr; with `out_dir`, keeps metrics.csv and the last checkpoint.

    A run pointed at a folder that holds a checkpoint of the same config resumes from it; a
    checkpoint of another config is refused rather than overwritten.
    """

    def __init__(self, out_dir: str | os.PathLike | None = None, config_dict: dict | None = None,
                 total_epochs: int | None = None, stream=None, quiet: bool = False):
        self.out_dir = check_output_path(out_dir, "--out", "folder") if out_dir is not None else None
        self.config_dict = config_dict or {}
        self.total_epochs = total_epochs
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.history: list[dict[str, Any]] = []

    def load_checkpoint(self) -> dict | None:
        if self.out_dir is None or not (self.out_dir / CHECKPOINT_FILE).exists():
            return None
        state = load_checkpoint_file(self.out_dir / CHECKPOINT_FILE)
        if state.get("config") != self.config_dict:
            raise ConfigError(f"--out {str(self.out_dir)!r} holds a run with another config; "
                              "choose another --out (results there are kept)")
        self.history = list(state.get("history", []))
        return state

    def report(self, metrics: dict[str, Any], state: Callable[[], dict]) -> None:
        if self.history and self.history[-1].get(M.EPOCH) == metrics.get(M.EPOCH):
            self.history[-1] = dict(metrics)  # a finished run resumed says its last epoch again: one row per epoch
        else:
            self.history.append(dict(metrics))
        if not self.quiet:
            print(format_metrics(metrics, self.total_epochs), file=self.stream, flush=True)
        if self.out_dir is None:
            return
        full = state()
        full["config"] = self.config_dict
        full["history"] = self.history
        save_checkpoint(self.out_dir / CHECKPOINT_FILE, full)
        self._write_history()

    def _write_history(self) -> None:
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]

        def write(handle):
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)
            handle.write(text.getvalue().encode("utf-8"))

        atomic_write_bytes(self.out_dir / "metrics.csv", write)
