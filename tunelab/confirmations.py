"""compare's confirmation runs: every method's best config retrained with fresh seeds, as parallel
Ray tasks, each finished run kept at once (a killed compare does not run it again)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tunelab.compare_log import say
from tunelab.compare_state import add_confirmation, read_confirmations
from tunelab.core import metrics as M
from tunelab.core.errors import ConfigError


# One row per confirmation run: its last epoch's val/acc, its best val/acc (the search's epoch rule),
# and test measured at that best epoch (test/epoch).
CONFIRMATION_COLUMNS = ["method", "dataset", "seed", "trial_id", M.VAL_ACC, M.VAL_ACC_BEST, M.TEST_ACC,
                        M.TEST_ACC_TOP5, M.TEST_EPOCH, "epochs"]


def confirm_all(experiments: dict[str, dict], seeds: int, cpus: float, gpus: float,
                out: Path | None = None, replicate: int | None = None) -> pd.DataFrame:
    """Retrain every method's best config with `seeds` seeds, as parallel Ray tasks. With `out`,
    each finished run is kept there at once and the runs an earlier compare finished are not run again.
    With `replicate` (compare --replicates), the rows carry it and only that replicate's are returned."""
    import ray

    from tunelab.analysis.reproduce import best_record

    remote = ray.remote(num_cpus=cpus, num_gpus=gpus)(_confirm_task)
    rows = read_confirmations(out) if out is not None else []  # every replicate's: the file is rewritten whole
    finished = {(r.get("replicate"), r.get("method"), r.get("seed")) for r in rows}
    kept = sum(r.get("replicate") == replicate for r in rows)
    futures, keys = [], []
    for method, summary in experiments.items():
        try:
            record = best_record(summary["experiment"])
        except ConfigError as exc:
            say(f"{method}: no confirmation ({exc})")
            continue
        base = int(record["config"]["seed"])
        for i in range(seeds):
            if (replicate, method, base + i) in finished:
                continue
            futures.append(remote.remote(method, record["config"], base + i))
            keys.append((method, summary["dataset"], base + i, record["provenance"]["trial_id"]))
    if kept:
        say(f"{kept} confirmation run(s) finished in an earlier run, kept; {len(futures)} to run")
    for (method, dataset, seed, trial_id), final in zip(keys, _as_they_finish(futures)):
        row = {**({} if replicate is None else {"replicate": replicate}),
               "method": method, "dataset": dataset, "seed": seed, "trial_id": trial_id,
               M.VAL_ACC: final.get(M.VAL_ACC), M.VAL_ACC_BEST: final.get(M.VAL_ACC_BEST),
               M.TEST_ACC: final.get(M.TEST_ACC), M.TEST_ACC_TOP5: final.get(M.TEST_ACC_TOP5),
               M.TEST_EPOCH: final.get(M.TEST_EPOCH), "epochs": final.get(M.EPOCH)}
        if out is not None:
            add_confirmation(out, rows, row)
        else:
            rows.append(row)
    rows = [r for r in rows if r.get("replicate") == replicate]
    rows.sort(key=lambda r: (list(experiments).index(r["method"]) if r["method"] in experiments else len(experiments),
                             r["seed"]))
    return pd.DataFrame(rows, columns=(["replicate"] if replicate is not None else []) + CONFIRMATION_COLUMNS)


def _as_they_finish(futures: list) -> Any:
    """Each future's result in order, fetched as soon as it and those before it are done. The wait is
    in short steps, so Ctrl-C/SIGTERM are seen at once; then the unfinished tasks are cancelled
    (their worker processes ended) before the interrupt goes on."""
    import ray

    pending = list(futures)
    try:
        for future in futures:
            while not ray.wait([future], timeout=0.5)[0]:
                pass
            pending.remove(future)
            yield ray.get(future)
    except KeyboardInterrupt:
        for future in pending:
            try:
                ray.cancel(future, force=True)
            except Exception:  # already finished or the cluster is going: nothing left to stop
                pass
        raise


def _confirm_task(method: str, config: dict[str, Any], seed: int) -> dict[str, Any]:
    from tunelab.analysis.reproduce import confirm

    history = confirm(method, config, seed)
    return history[-1]
