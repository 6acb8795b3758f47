"""How many labelled target images per class tell the fine-tuning methods apart?

Pretrains a supervised backbone on digits 0-4, then trains each method at its defaults (no
search) on digits 5-9 with N training images per class, over several seeds, and prints the test
accuracy per method and N: mean, std, and the difference of RandReg/AdaRand to plain fine-tuning
with its 95% interval (paired by seed). Used to choose the main job's `train_per_class`.

    .venv/bin/python benchmarks/transfer_shots.py --shots 5,10,20,50 --seeds 6 --epochs 6
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

from tunelab.analysis.reproduce import confirm
from tunelab.core import metrics as M
from tunelab.trainables.pretrain import PretrainConfig, pretrain


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", default="5,10,20,50")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--source-epochs", type=int, default=10)
    parser.add_argument("--methods", default="classifier,finetune,randreg,adarand")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    began = time.perf_counter()
    backbone = folder / "source.pt"
    source = pretrain(PretrainConfig(task="supervised", classes="0-4", epochs=args.source_epochs), backbone,
                      quiet=True)
    print(f"source backbone (digits 0-4, supervised): val/acc {source[M.VAL_ACC]:.3f} "
          f"in {time.perf_counter() - began:.0f} s", flush=True)
    for shots in [int(s) for s in args.shots.split(",")]:
        scores = {}
        for method in args.methods.split(","):
            values = {"classes": "5-9", "train_per_class": shots, "epochs": args.epochs}
            if method != "classifier" and method != "arcface":
                values["pretrained"] = str(backbone)
            t0 = time.perf_counter()
            scores[method] = np.array([confirm(method, values, seed)[-1][M.TEST_ACC] for seed in range(args.seeds)])
            print(f"N={shots:3d} {method:10s} test/acc {scores[method].mean():.4f} +- {scores[method].std(ddof=1):.4f}"
                  f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        for method in ("randreg", "adarand"):
            if method in scores and "finetune" in scores:
                d = scores[method] - scores["finetune"]
                half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
                print(f"N={shots:3d} {method} - finetune: {d.mean():+.4f} [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]")
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
