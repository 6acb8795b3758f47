"""`--search optuna`: tunelab's own search, `tunelab.search.make_search` (multivariate TPE that
records ASHA's stops as PRUNED and ranks trials at a common rung, under ASHA in Hyperband
brackets). Its study may be kept in an Optuna storage."""
from __future__ import annotations

from tunelab.credentials import hand_over
from tunelab.search import make_search
from tunelab.searchers.common import build_scheduler, startup_trials
from tunelab.core import metrics as M


class TunelabTPE:
    name = "optuna"
    keeps_an_optuna_study = True

    def describe(self, opts) -> str:
        return f"optuna (first {startup_trials(opts)} random)"

    def build(self, opts, space, study_name):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        searcher, asha = make_search(space, opts.metric, opts.mode, max_t=opts.max_epochs,
                                     grace_period=opts.grace_period, reduction_factor=opts.reduction_factor,
                                     seed=opts.seed, time_attr=M.EPOCH, num_samples=opts.num_samples,
                                     n_startup_trials=startup_trials(opts), storage=hand_over(opts.optuna_storage),
                                     study_name=study_name, trial_dir_prefix=opts.method)
        return searcher, {}, asha if opts.scheduler == "asha" else build_scheduler(opts)

    def restored_param_space(self, opts, record, path):
        return None  # Ray restores the searcher, which samples itself

    def rebuild(self, search_alg, trials) -> bool:
        search_alg.rebuild(trials)
        return True

    def add_to_snapshot(self, search_alg, snapshot, trials) -> bool:
        search_alg.restore(str(snapshot), close_lost_trials=False)  # a lost trial may be one of `trials`
        search_alg.rebuild(trials)  # adds only what the snapshot lacks
        return True


SEARCHER = TunelabTPE()
