"""Fault injection for tests: failures a test arms from outside, never through config keys.

Set TUNELAB_FAULTS_DIR to a folder and create empty token files named `KIND@EPOCH` or
`KIND@EPOCH.ANYTHING` in it. Each token fires once, in whichever training process claims it
first (claiming = deleting the file, which exactly one process can do), when that process
reaches the start of EPOCH (1-based). Kinds:

    raise  -> RuntimeError, as a crashing trial would
    oom    -> torch.OutOfMemoryError, as a trial that ran out of GPU memory would
    nan    -> the epoch's loss becomes NaN, as a diverging trial's would
    hold   -> the process waits before the epoch (up to HOLD_S), with a file `held.PID` in the
              folder while it does: a test can kill a driver while a trial is certainly mid-run

One more file is read and never claimed: `sleep`, holding a number of seconds every epoch of
every trial sleeps first. It makes tiny trials last as long as real ones relative to a worker
process's start-up (seconds), without using the CPU, as cluster tests need. `sleep.seed-N` does
the same for runs with seed N only (on top of `sleep`): runs that start together then end apart,
as a test of an interrupt between two confirmation seeds needs.

Without the variable (every normal run) this costs one environment lookup per epoch.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

FAULTS_ENV = "TUNELAB_FAULTS_DIR"
HOLD_S = 180.0


class InjectedFault(RuntimeError):
    """The error an armed `raise` token throws."""


def claim(kind: str, epoch: int) -> bool:
    """True if a `kind@epoch` token existed and this process took it."""
    folder = os.environ.get(FAULTS_ENV)
    if not folder:
        return False
    for token in sorted(Path(folder).glob(f"{kind}@{epoch}*")):
        if token.name != f"{kind}@{epoch}" and not token.name.startswith(f"{kind}@{epoch}."):
            continue
        try:
            token.unlink()
            return True
        except FileNotFoundError:
            continue  # another trial claimed it first
    return False


def before_epoch(epoch: int, seed: int | None = None) -> bool:
    """Raise an armed fault for this epoch; returns True when the epoch's loss must turn NaN."""
    folder = os.environ.get(FAULTS_ENV)
    if folder:
        for name in ("sleep", f"sleep.seed-{seed}"):
            if (pause := Path(folder) / name).is_file():
                time.sleep(float(pause.read_text() or 0))
    if claim("hold", epoch):
        hold(Path(folder))
    if claim("raise", epoch):
        raise InjectedFault(f"injected fault at epoch {epoch} ({FAULTS_ENV})")
    if claim("oom", epoch):
        raise torch.OutOfMemoryError(f"CUDA out of memory (injected at epoch {epoch}, {FAULTS_ENV})")
    return claim("nan", epoch)


def hold(folder: Path) -> None:
    """Wait HOLD_S seconds with `held.PID` in `folder` (a process killed meanwhile leaves it)."""
    marker = folder / f"held.{os.getpid()}"
    marker.touch()
    try:
        time.sleep(HOLD_S)
    finally:
        marker.unlink(missing_ok=True)


class FaultInjection:
    """A method with armed faults: the engine knows nothing of them.

    Delegates every hook to the wrapped method; `begin_epoch` claims this epoch's tokens and
    `training_loss` turns the loss NaN in an epoch a `nan` token was claimed for.
    """

    def __init__(self, method):
        self.method = method
        self.poisoned = False
        self.seed = None

    def __getattr__(self, name):
        return getattr(self.method, name)

    def setup(self, model, data, config, device) -> None:
        self.seed = config.seed  # for `sleep.seed-N`
        self.method.setup(model, data, config, device)

    def begin_epoch(self, epoch: int) -> None:
        self.method.begin_epoch(epoch)
        self.poisoned = before_epoch(epoch, self.seed)

    def training_loss(self, *args, **kwargs):
        loss, *rest = self.method.training_loss(*args, **kwargs)
        return (loss * float("nan") if self.poisoned else loss, *rest)


def wrap(method):
    """`method` with fault injection when TUNELAB_FAULTS_DIR is set (tests), else `method` itself."""
    return FaultInjection(method) if os.environ.get(FAULTS_ENV) else method
