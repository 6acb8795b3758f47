"""Trial statuses: tunelab's own (in trials.csv, the record's final statuses, summaries) and the
Ray Tune statuses tunelab reads. Both are `str` enums, so a member equals its value in a table."""
from __future__ import annotations

import enum


class _ValueEnum(str, enum.Enum):
    """Printed and formatted as its value, as a plain string would be."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class TrialStatus(_ValueEnum):
    """How a trial ended, as tunelab reports it."""

    FINISHED = "finished"  # trained every epoch of the search's max_epochs
    STOPPED = "stopped"  # ended early by ASHA at a rung
    DIVERGED = "diverged"  # a non-finite loss or metric ended it (reported, not an error)
    ERRORED = "errored"  # raised (its folder holds error.txt)
    INCOMPLETE = "incomplete"  # left running or pending by an interrupted driver; `tunelab resume` continues it
    OUT_OF_TIME = "out_of_time"  # cut, checkpointed, by the search's time budget; resumable like incomplete


class RayStatus(_ValueEnum):
    """Ray Tune's trial statuses (`ray.tune.experiment.Trial`), as found in its snapshots."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"


UNFINISHED_RAY_STATUSES = (RayStatus.RUNNING, RayStatus.PENDING, RayStatus.PAUSED)
FINISHED_RAY_STATUSES = (RayStatus.TERMINATED, RayStatus.ERROR)


def status_from(last_epoch: int, diverged: bool, errored: bool, max_epochs: int, ray_status: str = "") -> str:
    """The one status rule: finished | stopped (by ASHA) | diverged | errored | incomplete (and
    out_of_time, which the driver records instead of incomplete when the time budget ended the run).

    `errored` is whether the trial failed (or its folder holds an error.txt). A trial retried
    successfully keeps that file, so Ray's recorded status decides when it is known.
    `incomplete` is a trial the driver left running or pending (resumable).
    """
    if ray_status == RayStatus.ERROR or (errored and not ray_status):
        return TrialStatus.ERRORED.value
    if diverged:
        return TrialStatus.DIVERGED.value
    if last_epoch >= max_epochs:
        return TrialStatus.FINISHED.value
    if ray_status in UNFINISHED_RAY_STATUSES:
        return TrialStatus.INCOMPLETE.value
    return TrialStatus.STOPPED.value
