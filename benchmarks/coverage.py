"""What compare's intervals and verdicts mean, measured by simulation with a known true difference.

Two subcommands:

    estimate  trains real runs on the main job's task and estimates the variance components of
              test accuracy; writes them (and every run) to a JSON file.
    simulate  reads that file and simulates many comparisons with known true differences; prints
              the coverage of the 95% intervals, the rate of false "resolved" verdicts, and power.

The model (one compare = R replicates, K methods and one baseline, S seeds per method and replicate):

    acc[m, r, s] = mu_m + u[r] + v[m, r] + e[m, r, s]

u[r]: the data draw (which training images, which validation split), shared by every method of a
replicate; v[m, r]: the method's own luck in that replicate (its interaction with the data draw,
plus which config its search found); e[m, r, s]: the training seed. Accuracies are rounded to the
test set's grid (k / test images) and clipped to [0, 1].

How each component is estimated (`estimate`):

- seed noise e, per method: the sample variance of the compare's own confirmation seeds
  (COMPARE/report/confirmations.csv: one data draw, one search, S = 25 seeds).
- data draw u and method-by-draw interaction v_data: each method's best config (from the compare's
  searches, fixed) retrained on other data draws (split_seed 1..R) with S seeds each, and a two-way
  random-effects ANOVA (methods x draws, seeds within cells), method of moments.
- search luck v_search cannot be measured cheaply (it takes a fresh search per replicate). Its
  stand-in: the test accuracy of the configs a search ranked 2nd and 3rd beside its winner (one
  data draw, S seeds each), one-way ANOVA between configs. A fresh search picks some such
  near-best config; how much their true accuracies differ is the scale of that luck. `simulate`
  prints a sensitivity table at 0x, 1x and 2x of its standard deviation.

The verdicts in `simulate` are computed by the functions compare itself uses: tunelab.analysis.stats.paired
(R > 1) or tunelab.analysis.stats.welch (R = 1) for the interval and p-value, tunelab.analysis.tables.resolve
(Holm, ALPHA) for "resolved", tunelab.analysis.stats.min_detectable_paired_diff / min_detectable_diff at
tunelab.analysis.tables.POWER. Results: benchmarks/coverage.md ("compare's intervals and verdicts, by
simulation").

    .venv/bin/python benchmarks/coverage.py estimate --compare compare/digits-20261203-083338 \\
        --split-seeds 1-6 --seeds 3 --out benchmarks/coverage_components.json
    .venv/bin/python benchmarks/coverage.py simulate --components benchmarks/coverage_components.json \\
        --comparisons 3000
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from tunelab.analysis import stats  # noqa: E402  (after the path fix above)
from tunelab.analysis.tables import ALPHA, POWER, resolve  # noqa: E402

FORMAT = 1


# ---------------------------------------------------------------------------------------------
# Estimators (method of moments). Plain numpy: no statsmodels.


def two_way_components(y: np.ndarray) -> dict[str, float]:
    """Variance components of a balanced two-way random-effects layout with replication.

    y has shape (M, R, S): M methods (fixed effects, any means), R data draws, S seeds in every
    cell. Model: y[m, r, s] = mu_m + u[r] + v[m, r] + e[m, r, s], with u ~ (0, var_u),
    v ~ (0, var_v), e ~ (0, var_e) independent. The ANOVA mean squares and their expectations:

        MS_seed   = sum (y - cell mean)^2 / (M R (S - 1))                  E = var_e
        MS_inter  = S sum (cell - method mean - draw mean + grand)^2
                    / ((M - 1)(R - 1))                                     E = var_e + S var_v
        MS_draw   = M S sum (draw mean - grand)^2 / (R - 1)                E = var_e + S var_v + M S var_u

    so var_e = MS_seed, var_v = (MS_inter - MS_seed) / S, var_u = (MS_draw - MS_inter) / (M S).
    These hold also when var_e differs between methods (var_e is then their mean), because the
    layout is balanced. Estimates below 0 are returned as they are (`*_raw`) and truncated at 0.
    """
    y = np.asarray(y, dtype=float)
    if y.ndim != 3 or min(y.shape[:2]) < 2 or y.shape[2] < 2:
        raise ValueError(f"need shape (methods >= 2, draws >= 2, seeds >= 2), got {y.shape}")
    m, r, s = y.shape
    cell = y.mean(axis=2)
    method_mean = cell.mean(axis=1, keepdims=True)
    draw_mean = cell.mean(axis=0, keepdims=True)
    grand = cell.mean()
    ms_seed = float(((y - cell[..., None]) ** 2).sum() / (m * r * (s - 1)))
    ms_inter = float(s * ((cell - method_mean - draw_mean + grand) ** 2).sum() / ((m - 1) * (r - 1)))
    ms_draw = float(m * s * ((draw_mean - grand) ** 2).sum() / (r - 1))
    var_v = (ms_inter - ms_seed) / s
    var_u = (ms_draw - ms_inter) / (m * s)
    df_seed, df_inter, df_draw = m * r * (s - 1), (m - 1) * (r - 1), r - 1
    return {"ms_seed": ms_seed, "ms_inter": ms_inter, "ms_draw": ms_draw,
            "df_seed": df_seed, "df_inter": df_inter, "df_draw": df_draw,
            "var_e": ms_seed, "var_v_raw": var_v, "var_u_raw": var_u,
            "var_v": max(var_v, 0.0), "var_u": max(var_u, 0.0),
            "var_v_se": ms_difference_se((ms_inter, df_inter), (ms_seed, df_seed)) / s,
            "var_u_se": ms_difference_se((ms_draw, df_draw), (ms_inter, df_inter)) / (m * s)}


def ms_difference_se(*mean_squares: tuple[float, float]) -> float:
    """The approximate standard error of a difference of independent mean squares (MS, df):
    var(MS) = 2 E[MS]^2 / df under normality, estimated with the observed MS."""
    return math.sqrt(sum(2 * ms ** 2 / df for ms, df in mean_squares))


def one_way_components(groups: np.ndarray) -> dict[str, float]:
    """Between- and within-group variance of a balanced one-way random-effects layout.

    groups has shape (k, S): k groups (here: configs), S values each. Model y[c, s] = mu + a[c] +
    e[c, s]; MS_within = sum (y - group mean)^2 / (k (S - 1)) estimates var_e, MS_between = S sum
    (group mean - grand)^2 / (k - 1) estimates var_e + S var_a, so var_a = (MS_between -
    MS_within) / S (truncated at 0; `var_between_raw` as computed).
    """
    y = np.asarray(groups, dtype=float)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
        raise ValueError(f"need shape (groups >= 2, values >= 2), got {y.shape}")
    k, s = y.shape
    means = y.mean(axis=1)
    ms_within = float(((y - means[:, None]) ** 2).sum() / (k * (s - 1)))
    ms_between = float(s * ((means - means.mean()) ** 2).sum() / (k - 1))
    raw = (ms_between - ms_within) / s
    return {"ms_between": ms_between, "ms_within": ms_within, "df_between": k - 1, "df_within": k * (s - 1),
            "var_between_raw": raw, "var_between": max(raw, 0.0),
            "var_between_se": ms_difference_se((ms_between, k - 1), (ms_within, k * (s - 1))) / s}


def pooled_one_way(layouts: list[np.ndarray]) -> dict[str, float]:
    """`one_way_components` over several layouts of the same shape (here: one per method), their
    sums of squares and degrees of freedom pooled: one between-config variance for all."""
    parts = [one_way_components(y) for y in layouts]
    s = np.asarray(layouts[0]).shape[1]
    df_b, df_w = sum(p["df_between"] for p in parts), sum(p["df_within"] for p in parts)
    ms_b = sum(p["ms_between"] * p["df_between"] for p in parts) / df_b
    ms_w = sum(p["ms_within"] * p["df_within"] for p in parts) / df_w
    raw = (ms_b - ms_w) / s
    return {"ms_between": ms_b, "ms_within": ms_w, "df_between": df_b, "df_within": df_w,
            "var_between_raw": raw, "var_between": max(raw, 0.0),
            "var_between_se": ms_difference_se((ms_b, df_b), (ms_w, df_w)) / s}


# ---------------------------------------------------------------------------------------------
# estimate: real runs


def parse_seeds(text: str) -> list[int]:
    """'1-6' or '1,2,5' -> a list of ints."""
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        out += list(range(int(low), int(high or low) + 1))
    return out


def ranked_configs(experiment: Path, top: int) -> list[tuple[str, dict[str, Any]]]:
    """The `top` best trials of a search by compare's rule (tunelab.analysis.load.rank_trials): (trial id, full config)."""
    from tunelab.analysis.load import load_experiment, read_record, trial_summary
    from tunelab.core.ranking import rank_trials
    from tunelab.analysis.tables import config_of
    from tunelab.trainables import get_method
    from tunelab.trainables.config import build_config, to_dict

    record = read_record(experiment)
    ranked = rank_trials(trial_summary(load_experiment(experiment), record["metric"], record["mode"]),
                         record["metric"], record["mode"])
    method = get_method(record["method"])
    return [(str(row["trial_id"]), to_dict(build_config(method.config_class, config_of(row))))
            for _, row in ranked.head(top).iterrows()]


def read_runs(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def estimate(args: argparse.Namespace) -> None:
    from tunelab.analysis.reproduce import confirm
    from tunelab.core import metrics as M

    compare = Path(args.compare)
    out = Path(args.out)
    progress = Path(str(out) + ".runs.jsonl")  # each finished run at once: a killed estimate continues
    summary = json.loads((compare / "compare.json").read_text())
    methods = args.methods.split(",") if args.methods else summary["options"]["methods"]
    table = pd.read_csv(compare / "report" / "comparison.csv")
    baseline = str(table["baseline"].dropna().iloc[0])
    if baseline not in methods or len(methods) < 2 or 0 in parse_seeds(args.split_seeds):
        raise SystemExit(f"coverage.py: --methods needs the baseline {baseline} and one more method, and "
                         "--split-seeds other draws than the search's own split_seed 0")
    confirmations = pd.read_csv(compare / "report" / "confirmations.csv")
    split_seeds, seeds = parse_seeds(args.split_seeds), list(range(args.seeds))
    configs = {m: ranked_configs(compare / "runs" / m, args.configs) for m in methods}

    # (part, method, split_seed, config rank, seed): the draws first, then the search stand-in
    plan = [("draw", m, r, 1, s) for r in split_seeds for m in methods for s in seeds]
    plan += [("search", m, 0, c, s) for m in methods for c in range(2, args.configs + 1)
             for s in range(args.config_seeds)]
    runs = read_runs(progress)
    if args.reuse:  # an earlier --out: its runs count as done (recompute the components without training)
        earlier = json.loads(Path(args.reuse).read_text())
        runs += [r for r in earlier["runs"] if (r["part"], r["method"], r["split_seed"], r["rank"], r["seed"]) in set(plan)]
    # The winner's seeds at split_seed 0 are the compare's own confirmation runs (retraining one
    # repeats its test/acc exactly on a CPU: tunelab.analysis.reproduce), taken from its table, not rerun.
    runs = [r for r in runs if r.get("from") != "confirmations"]
    for m in methods:
        for s in range(args.config_seeds):
            hit = confirmations[(confirmations["method"] == m) & (confirmations["seed"] == s)]
            if len(hit) != 1 or str(hit["trial_id"].iloc[0]) != configs[m][0][0]:
                raise SystemExit(f"coverage.py: {compare}/report/confirmations.csv has no single row of {m}'s "
                                 f"best trial {configs[m][0][0]} at seed {s}")
            runs.append({"part": "search", "method": m, "split_seed": 0, "rank": 1, "trial_id": str(hit["trial_id"].iloc[0]),
                         "seed": s, "test_acc": float(hit["test/acc"].iloc[0]), "val_acc_best": float(hit["val/acc_best"].iloc[0]),
                         "seconds": 0.0, "from": "confirmations"})
    done = {(r["part"], r["method"], r["split_seed"], r["rank"], r["seed"]) for r in runs}
    todo = [p for p in plan if p not in done]
    print(f"{len(plan)} runs planned ({len(plan) - len(todo)} done in an earlier run; "
          f"the winners at split_seed 0 from the confirmations): methods {','.join(methods)}; "
          f"draws: split_seed {split_seeds} x seeds {seeds}; search: the top {args.configs} configs x "
          f"{args.config_seeds} seeds at split_seed 0", flush=True)
    began = time.perf_counter()
    for i, (part, method, split_seed, rank, seed) in enumerate(todo):
        trial_id, config = configs[method][rank - 1]
        t0 = time.perf_counter()
        final = confirm(method, {**config, "split_seed": split_seed}, seed)[-1]
        row = {"part": part, "method": method, "split_seed": split_seed, "rank": rank, "trial_id": trial_id,
               "seed": seed, "test_acc": final.get(M.TEST_ACC), "val_acc_best": final.get(M.VAL_ACC_BEST),
               "seconds": round(time.perf_counter() - t0, 2)}
        runs.append(row)
        with progress.open("a") as f:
            f.write(json.dumps(row) + "\n")
        left = (time.perf_counter() - began) / (i + 1) * (len(todo) - i - 1)
        print(f"[{i + 1}/{len(todo)}] {part} {method} split_seed={split_seed} config#{rank} seed={seed}: "
              f"test/acc {row['test_acc']:.4f} ({row['seconds']:.1f} s; ~{left / 60:.0f} min left)", flush=True)
    wall = time.perf_counter() - began
    result = components_from(runs, confirmations, methods, baseline, split_seeds, seeds, args.configs,
                             args.config_seeds)
    result["source"] = {
        "compare": str(args.compare), "compare_commit": _compare_commit(compare), "commit": _git_head(),
        "command": "benchmarks/coverage.py " + " ".join(sys.argv[1:]),
        "task": {k: summary["options"][k] for k in ("dataset", "classes", "train_per_class", "source_classes",
                                                     "max_epochs", "num_samples", "seeds")},
        "test_images": _test_images(summary["options"]),
        "wall_s_this_run": round(wall, 1), "train_s_all_runs": round(sum(r["seconds"] for r in runs), 1),
    }
    if args.reuse:
        result["source"]["runs_from"] = {k: earlier.get("source", {}).get(k) for k in ("command", "commit", "wall_s_this_run")}
    result["runs"] = runs
    out.write_text(json.dumps(result, indent=1) + "\n")
    progress.unlink(missing_ok=True)  # every run is in OUT now
    print_components(result)
    print(f"wrote {out} (runs {len(runs)}, this run {wall:.0f} s)")


def components_from(runs: list[dict[str, Any]], confirmations: pd.DataFrame, methods: list[str], baseline: str,
                    split_seeds: list[int], seeds: list[int], configs: int, config_seeds: int) -> dict[str, Any]:
    """The components from the runs and the compare's confirmations (see the module docstring)."""
    frame = pd.DataFrame(runs)
    per_method = {}
    for m in methods:
        acc = stats.finite(confirmations.loc[confirmations["method"] == m, "test/acc"])
        per_method[m] = {"mean": float(acc.mean()), "seed_sd": float(acc.std(ddof=1)), "n_seeds": int(len(acc)),
                         "residuals": [float(x) for x in acc - acc.mean()]}
    draws = frame[frame["part"] == "draw"]
    y = np.array([[[_one(draws, m, r, 1, s) for s in seeds] for r in split_seeds] for m in methods])
    two_way = two_way_components(y)
    # per method, the per-draw difference to the baseline: var = 2 var_v + (var_e,m + var_e,b) / S
    cell = y.mean(axis=2)
    b = methods.index(baseline)
    diffs = {m: {"per_draw": [float(x) for x in cell[i] - cell[b]], "sd": float(np.std(cell[i] - cell[b], ddof=1))}
             for i, m in enumerate(methods) if i != b}
    search = frame[frame["part"] == "search"]
    layouts = [np.array([[_one(search, m, 0, c, s) for s in range(config_seeds)] for c in range(1, configs + 1)])
               for m in methods]
    one_way = pooled_one_way(layouts)
    return {
        "format": FORMAT, "baseline": baseline, "methods": per_method,
        "seed_sd_draw_runs": {m: float(np.sqrt(((y[i] - y[i].mean(axis=1, keepdims=True)) ** 2).sum()
                                               / (len(split_seeds) * (len(seeds) - 1)))) for i, m in enumerate(methods)},
        "data_draw": {"split_seeds": split_seeds, "seeds": seeds, **two_way,
                      "sd_u": math.sqrt(two_way["var_u"]), "sd_v_data": math.sqrt(two_way["var_v"]),
                      "cell_means": {m: [float(x) for x in cell[i]] for i, m in enumerate(methods)},
                      "diff_to_baseline": diffs},
        "search": {"configs": configs, "seeds": list(range(config_seeds)), "split_seed": 0, **one_way,
                   "sd_search": math.sqrt(one_way["var_between"]),
                   "per_method": {m: one_way_components(layouts[i]) for i, m in enumerate(methods)},
                   "config_means": {m: [float(x) for x in layouts[i].mean(axis=1)] for i, m in enumerate(methods)}},
    }


def _one(frame: pd.DataFrame, method: str, split_seed: int, rank: int, seed: int) -> float:
    hit = frame[(frame["method"] == method) & (frame["split_seed"] == split_seed) & (frame["rank"] == rank)
                & (frame["seed"] == seed)]
    if len(hit) != 1:
        raise ValueError(f"expected one run of {method} split_seed={split_seed} config#{rank} seed={seed}, got {len(hit)}")
    return float(hit["test_acc"].iloc[0])


def _test_images(options: dict[str, Any]) -> int:
    from tunelab.trainables.configs import DataOptions
    from tunelab.trainables.data import load_dataset

    bundle = load_dataset(DataOptions(dataset=options["dataset"], classes=options["classes"] or "",
                                      train_per_class=options["train_per_class"]))
    return len(bundle.test)


def _git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _compare_commit(compare: Path) -> str | None:
    from tunelab.analysis.load import read_record

    try:
        return read_record(next(p for p in sorted((compare / "runs").iterdir()) if p.is_dir())).get("git_commit")
    except Exception:  # provenance only
        return None


def print_components(c: dict[str, Any]) -> None:
    d, s = c["data_draw"], c["search"]
    print("seed noise (compare's confirmations, one draw, one search):")
    for m, v in c["methods"].items():
        print(f"  {m:10s} mean {v['mean']:.4f}  seed sd {v['seed_sd']:.4f}  (n = {v['n_seeds']}; "
              f"in the draw runs {c['seed_sd_draw_runs'][m]:.4f})")
    print(f"data draws (split_seed {d['split_seeds']}, seeds {d['seeds']}): sd_u {d['sd_u']:.4f} "
          f"(var {d['var_u_raw']:+.2e} +- {d['var_u_se']:.1e}, df {d['df_draw']}), sd_v_data {d['sd_v_data']:.4f} "
          f"(var {d['var_v_raw']:+.2e} +- {d['var_v_se']:.1e}, df {d['df_inter']}), seed sd pooled "
          f"{math.sqrt(d['var_e']):.4f} (df {d['df_seed']})")
    for m, x in d["diff_to_baseline"].items():
        print(f"  {m:10s} - {c['baseline']}: per-draw differences sd {x['sd']:.4f}: "
              + " ".join(f"{v:+.3f}" for v in x["per_draw"]))
    print(f"search stand-in (top {s['configs']} configs x {len(s['seeds'])} seeds): sd_search {s['sd_search']:.4f} "
          f"(var {s['var_between_raw']:+.2e} +- {s['var_between_se']:.1e}, df {s['df_between']} between / "
          f"{s['df_within']} within)")
    for m, x in s["config_means"].items():
        print(f"  {m:10s} config means " + " ".join(f"{v:.3f}" for v in x)
              + f"  (between-config var {s['per_method'][m]['var_between_raw']:+.2e})")


# ---------------------------------------------------------------------------------------------
# simulate


class Model:
    """The generative model of one compare, with the components of an `estimate` file.

    Methods are the file's methods; the baseline's mean is the file's (its confirmations' mean),
    every other method's mean is the baseline's plus the difference asked for. `search_scale`
    multiplies the search stand-in's standard deviation; v's variance is var_v_data + (scale *
    sd_search)^2. `noise` 'normal' draws seed noise N(0, seed sd of the method); 'empirical'
    resamples the method's own confirmation residuals (centred, scaled to the unbiased variance):
    their skew and outliers (a seed that learnt badly) kept.
    """

    def __init__(self, components: dict[str, Any], noise: str = "empirical", search_scale: float = 1.0):
        if noise not in ("normal", "empirical"):
            raise ValueError(f"noise={noise!r}; allowed: normal, empirical")
        self.baseline = components["baseline"]
        names = list(components["methods"])
        self.others = [m for m in names if m != self.baseline]
        self.methods = [self.baseline] + self.others  # index 0 is the baseline
        per = components["methods"]
        self.mean_b = float(per[self.baseline]["mean"])
        self.seed_sd = np.array([per[m]["seed_sd"] for m in self.methods])
        self.residuals = []
        for m in self.methods:
            r = np.asarray(per[m]["residuals"], dtype=float)
            r = r - r.mean()
            scale = per[m]["seed_sd"] / r.std(ddof=0) if r.std(ddof=0) > 0 else 0.0
            self.residuals.append(r * scale)
        self.sd_u = float(components["data_draw"]["sd_u"])
        self.sd_v = math.sqrt(components["data_draw"]["sd_v_data"] ** 2
                              + (search_scale * components["search"]["sd_search"]) ** 2)
        self.grid = int(components.get("source", {}).get("test_images") or 0)  # 0: no rounding
        self.noise = noise

    def draw(self, rng: np.random.Generator, n: int, replicates: int, seeds: int, diffs: np.ndarray) -> np.ndarray:
        """n compares' accuracies, shape (n, methods, replicates, seeds); diffs: the true mean
        difference of each method to the baseline (length = methods, baseline's 0)."""
        k = len(self.methods)
        mu = self.mean_b + np.asarray(diffs, dtype=float)
        u = rng.normal(0.0, self.sd_u, (n, 1, replicates, 1))
        v = rng.normal(0.0, self.sd_v, (n, k, replicates, 1))
        if self.noise == "normal":
            e = rng.normal(0.0, 1.0, (n, k, replicates, seeds)) * self.seed_sd[None, :, None, None]
        else:
            e = np.stack([rng.choice(self.residuals[i], (n, replicates, seeds)) for i in range(k)], axis=1)
        y = mu[None, :, None, None] + u + v + e
        if self.grid:
            y = np.round(y * self.grid) / self.grid  # accuracies are k / test images
        return np.clip(y, 0.0, 1.0)

    def truth(self, diffs: np.ndarray, n: int = 400_000, seed: int = 12345) -> np.ndarray:
        """The model's expected difference of each method to the baseline (rounding and clipping
        make it differ slightly from `diffs`): a large sample of single accuracies."""
        y = self.draw(np.random.default_rng(seed), n, 1, 1, diffs)[:, :, 0, 0].mean(axis=0)
        return y - y[0]

    def sd_of_replicate_difference(self, seeds: int) -> np.ndarray:
        """The sd of one replicate's mean difference (method - baseline) per method: u cancels;
        2 var_v + (var_e,m + var_e,b) / seeds (rounding to the grid not counted)."""
        return np.sqrt(2 * self.sd_v ** 2 + (self.seed_sd ** 2 + self.seed_sd[0] ** 2) / seeds)


def verdicts(y: np.ndarray) -> dict[str, np.ndarray]:
    """compare's verdicts on simulated accuracies y (n, methods, replicates, seeds), baseline at
    index 0: per comparison the difference, its 95% interval, p-value, Holm-adjusted p and
    "resolved". R > 1: the paired t over the replicates' mean accuracies (tunelab.analysis.stats.paired);
    R = 1: Welch over the seeds (tunelab.analysis.stats.welch); Holm and ALPHA by tunelab.analysis.tables.resolve."""
    n, k, replicates, _ = y.shape
    out = {name: np.full((n, k - 1), np.nan) for name in ("diff", "low", "high", "p", "p_holm")}
    out["resolved"] = np.zeros((n, k - 1), dtype=bool)
    means = y.mean(axis=3)
    for i in range(n):
        rows = []
        for j in range(1, k):
            test = (stats.welch(y[i, j, 0], y[i, 0, 0]) if replicates == 1
                    else stats.paired(means[i, j], means[i, 0]))
            rows.append({"diff_p_value": test.p_value, "test": test})
        resolve(rows)
        for j, row in enumerate(rows):
            t = row["test"]
            out["diff"][i, j], out["low"][i, j], out["high"][i, j], out["p"][i, j] = t.diff, t.low, t.high, t.p_value
            out["p_holm"][i, j] = row["diff_p_holm"]
            out["resolved"][i, j] = bool(row["diff_resolved"])
    return out


def rate(hits: np.ndarray) -> tuple[float, float]:
    """A rate and its standard error. hits (n,): binomial. hits (n, K), K comparisons of one
    simulated compare (correlated: they share the baseline): the s.e. from the n compares' own
    means (a cluster s.e.), at most the binomial s.e. with n."""
    hits = np.asarray(hits, dtype=float)
    if hits.ndim == 1:
        p = float(hits.mean())
        return p, math.sqrt(p * (1 - p) / len(hits))
    per = hits.mean(axis=1)
    return float(per.mean()), float(per.std(ddof=1) / math.sqrt(len(per))) if len(per) > 1 else math.nan


def simulate_cell(model: Model, rng: np.random.Generator, n: int, replicates: int, seeds: int,
                  diffs: np.ndarray) -> dict[str, Any]:
    """One design at one set of true differences: coverage, significance and verdict rates."""
    y = model.draw(rng, n, replicates, seeds, diffs)
    v = verdicts(y)
    truth = model.truth(diffs)[1:]
    right_sign = np.sign(v["diff"]) == np.sign(truth)  # a verdict on the wrong side is no detection
    return {
        "coverage": rate((v["low"] <= truth) & (truth <= v["high"])),
        "significant": rate(v["p"] < ALPHA),  # unadjusted two-sided test at ALPHA, either side
        "resolved": rate(v["resolved"]),  # compare's verdict: Holm over the K comparisons
        "any_resolved": rate(v["resolved"].any(axis=1)),  # family-wise
        "significant_right": rate((v["p"] < ALPHA) & right_sign),
        "resolved_right": rate(v["resolved"] & right_sign),
        "truth": truth, "verdicts": v, "y": y,
    }


def fmt(r: tuple[float, float]) -> str:
    return f"{100 * r[0]:5.1f}% +- {100 * r[1]:.1f}"


def goal(measured: tuple[float, float], low: float, high: float) -> str:
    """PASS or MISS by the measured rate; '~' where a goal's edge lies within 2 s.e. of it (more
    simulated compares could turn the verdict)."""
    value, se = measured
    close = min(abs(value - low), abs(value - high)) <= 2 * se
    return ("PASS" if low <= value <= high else "MISS") + ("~" if close else "")


def design_name(replicates: int, seeds: int) -> str:
    kind = "Welch over seeds (seed-only)" if replicates == 1 else "paired t over replicates"
    return f"R={replicates} S={seeds:<2d} {kind}"


def simulate(args: argparse.Namespace) -> None:
    components = json.loads(Path(args.components).read_text())
    rng = np.random.default_rng(args.seed)
    n = args.comparisons
    designs = [(1, args.single_seeds)] + [(r, args.seeds) for r in parse_seeds(args.replicates)]
    scales = [float(x) for x in args.search_scales.split(",")]
    noises = args.noise.split(",")
    began = time.perf_counter()
    model = Model(components, noises[0], 1.0)
    k = len(model.others)
    print(f"model: baseline {model.baseline} (mean {model.mean_b:.4f}), {k} methods against it: "
          f"{', '.join(model.others)}; sd_u {model.sd_u:.4f}, sd_v_data "
          f"{components['data_draw']['sd_v_data']:.4f}, sd_search {components['search']['sd_search']:.4f}, "
          f"seed sd {', '.join(f'{s:.4f}' for s in model.seed_sd)}; accuracies on a grid of "
          f"1/{model.grid} test images")
    print(f"{n} simulated compares per row (each: {k} comparisons with the baseline); +- is one standard error; "
          f"coverage and per-comparison rates pool the {k} comparisons (s.e. from the compares' means)")

    print("\n## Coverage of the 95% interval and false 'resolved' at true difference 0 "
          "(goals for R > 1: coverage 93-97%, false resolved <= 5% per comparison and family-wise; "
          "verdict: the three goals in that order, ~ = the goal's edge within 2 s.e.)")
    print(f"{'noise':9s} {'search':6s} {'design':43s} {'coverage':>14s} {'p<0.05':>14s} {'resolved (Holm)':>15s} "
          f"{'any resolved':>14s}  verdict")
    zero = np.zeros(k + 1)
    for noise in noises:
        for scale in scales:
            model = Model(components, noise, scale)
            for replicates, seeds in designs:
                c = simulate_cell(model, rng, n, replicates, seeds, zero)
                verdict = ("(seed-only: no goal)" if replicates == 1 else
                           " ".join([goal(c["coverage"], 0.93, 0.97), goal(c["resolved"], -math.inf, 0.05),
                                     goal(c["any_resolved"], -math.inf, 0.05)]))
                print(f"{noise:9s} {scale:4.1f}x  {design_name(replicates, seeds):43s} {fmt(c['coverage']):>14s} "
                      f"{fmt(c['significant']):>14s} {fmt(c['resolved']):>15s} {fmt(c['any_resolved']):>14s}  {verdict}",
                      flush=True)

    model = Model(components, args.power_noise, 1.0)
    print(f"\n## Power: every method {', '.join(f'{d:+.2f}' for d in args.power_diffs)} above the baseline "
          f"(noise {args.power_noise}, search 1.0x)")
    print("(a detection counts only on the right side: p < 0.05 or resolved with the difference's own sign)")
    print(f"{'true diff':9s} {'design':43s} {'p<0.05':>14s} {'resolved (Holm)':>15s} {'coverage':>14s}")
    for d in args.power_diffs:
        diffs = np.r_[0.0, np.full(k, d)]
        for replicates, seeds in designs:
            c = simulate_cell(model, rng, n, replicates, seeds, diffs)
            print(f"{d:+9.3f} {design_name(replicates, seeds):43s} {fmt(c['significant_right']):>14s} "
                  f"{fmt(c['resolved_right']):>15s} {fmt(c['coverage']):>14s}", flush=True)

    print(f"\n## min_detectable_paired_diff at {POWER:.0%} power against simulated power "
          f"(noise {args.power_noise}, search 1.0x; power = p < 0.05 on either side, the unadjusted two-sided test the "
          f"figure is stated for)")
    print(f"{'design':43s} {'true-sd MDD':>11s} {'power there':>14s} {'median reported MDD':>19s} "
          f"{'power there':>14s} {'reported MDD: 10%-90%':>21s}  80% within 3 s.e.? (true-sd, median reported)")
    for replicates, seeds in designs:
        # the difference detected with POWER were the spread known: the test's own noncentral t at
        # the model's sd (R = 1: Welch's figure at the model's seed sds, which is all it sees)
        if replicates == 1:
            true_mdd = [stats.min_detectable_diff(model.seed_sd[j] * _unit(seeds), model.seed_sd[0] * _unit(seeds),
                                                  POWER, ALPHA) for j in range(1, k + 1)]
        else:
            sd = model.sd_of_replicate_difference(seeds)[1:]
            true_mdd = [stats.detectable_diff(stats.Welch(0.0, float(x) / math.sqrt(replicates), replicates - 1.0,
                                                          0.0, 0.0, 1.0), POWER, ALPHA) for x in sd]
        true_mdd = np.asarray(true_mdd)
        at_true = simulate_cell(model, rng, n, replicates, seeds, np.r_[0.0, true_mdd])
        # what compare would print: the figure from each simulated compare's own spread
        probe = model.draw(rng, min(n, args.mdd_sample), replicates, seeds, np.zeros(k + 1))
        reported = np.array([[_reported_mdd(probe[i, j], probe[i, 0], replicates) for j in range(1, k + 1)]
                             for i in range(len(probe))])
        median = np.nanmedian(reported, axis=0)
        at_median = simulate_cell(model, rng, n, replicates, seeds, np.r_[0.0, median])
        lo, hi = np.nanpercentile(reported, [10, 90])
        print(f"{design_name(replicates, seeds):43s} {true_mdd.mean():11.4f} {fmt(at_true['significant']):>14s} "
              f"{median.mean():19.4f} {fmt(at_median['significant']):>14s} {f'{lo:.4f}-{hi:.4f}':>21s}  "
              f"{_near(at_true['significant'], POWER)}, {_near(at_median['significant'], POWER)}", flush=True)
    print(f"\n(MDD columns: the mean over the {k} methods of each one's own figure; each method simulated at its own.)")
    print(f"simulate: {time.perf_counter() - began:.0f} s")


def _near(measured: tuple[float, float], expected: float) -> str:
    return "yes" if abs(measured[0] - expected) <= 3 * measured[1] else "no"


def _unit(n: int) -> np.ndarray:
    """n values with mean 0 and sample sd exactly 1."""
    x = np.arange(n, dtype=float)
    x -= x.mean()
    return x / x.std(ddof=1)


def _reported_mdd(a: np.ndarray, b: np.ndarray, replicates: int) -> float:
    """compare's 80%-power figure for one comparison: a, b have shape (replicates, seeds)."""
    if replicates == 1:
        return stats.min_detectable_diff(a[0], b[0], POWER, ALPHA)
    return stats.min_detectable_paired_diff(a.mean(axis=1), b.mean(axis=1), POWER, ALPHA)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="train real runs; write the variance components")
    est.add_argument("--compare", required=True, help="a finished compare folder (report/, runs/, compare.json)")
    est.add_argument("--split-seeds", default="1-6", help="data draws to retrain on (split_seed 0 is the search's own)")
    est.add_argument("--seeds", type=int, default=3, help="training seeds per method and data draw")
    est.add_argument("--configs", type=int, default=3, help="search stand-in: the top N configs of each search")
    est.add_argument("--config-seeds", type=int, default=3, help="search stand-in: seeds per config")
    est.add_argument("--methods", default="", help="a subset of the compare's methods, baseline included (default: all)")
    est.add_argument("--reuse", default="", help="an earlier --out file whose runs are taken, not trained again")
    est.add_argument("--out", required=True)
    sim = sub.add_parser("simulate", help="simulate compares from the components; print coverage, errors, power")
    sim.add_argument("--components", required=True, help="an `estimate` --out file")
    sim.add_argument("--comparisons", type=int, default=3000, help="simulated compares per row (each: K comparisons)")
    sim.add_argument("--replicates", default="3,5,8", help="replicate counts R > 1 (the row R = 1 is always there)")
    sim.add_argument("--seeds", type=int, default=5, help="confirmation seeds per method and replicate when R > 1")
    sim.add_argument("--single-seeds", type=int, default=25, help="seeds of the R = 1 row (compare's default)")
    sim.add_argument("--search-scales", default="0,1,2", help="multiples of the search stand-in's sd")
    sim.add_argument("--noise", default="normal,empirical", help="seed-noise models for the coverage table")
    sim.add_argument("--power-noise", default="empirical", choices=["normal", "empirical"])
    sim.add_argument("--power-diffs", type=lambda t: [float(x) for x in t.split(",")], default=[0.03, 0.05])
    sim.add_argument("--mdd-sample", type=int, default=400, help="compares whose reported 80%%-power figure is computed")
    sim.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "estimate":
        estimate(args)
    else:
        if args.comparisons < 1 or args.seeds < 2 or args.single_seeds < 2:
            parser.error("--comparisons must be >= 1, --seeds and --single-seeds >= 2")
        simulate(args)


if __name__ == "__main__":
    main()
