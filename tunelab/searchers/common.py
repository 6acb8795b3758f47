"""What more than one searcher uses: the schedulers and TPE's count of random startup trials."""
from __future__ import annotations

from tunelab.search import make_scheduler, startup_trials as search_startup_trials
from tunelab.core import metrics as M
from tunelab.tune_options import TuneOptions


def startup_trials(opts: TuneOptions) -> int:
    """Random trials before TPE models the space: a quarter of the budget, between 2 and 10."""
    return opts.startup_trials or search_startup_trials(opts.num_samples)


def hyperband_or_plain_scheduler(opts: TuneOptions):
    """--scheduler asha: make_search's ASHA in Hyperband brackets (seeded); fifo: the plain one."""
    if opts.scheduler != "asha":
        return build_scheduler(opts)
    return make_scheduler(opts.metric, opts.mode, max_t=opts.max_epochs, grace_period=opts.grace_period,
                          reduction_factor=opts.reduction_factor, seed=opts.seed, time_attr=M.EPOCH)


def build_scheduler(opts: TuneOptions):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if opts.scheduler == "fifo":
        return FIFOScheduler()
    # metric and mode come from TuneConfig, which also records them for Ray's own readers
    return ASHAScheduler(time_attr=M.EPOCH, max_t=opts.max_epochs,
                         grace_period=min(opts.grace_period, opts.max_epochs),
                         reduction_factor=opts.reduction_factor)
