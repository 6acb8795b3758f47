"""Where does each optimizer train? The classifier's default search space gives `lr` one range
per optimizer (search_spaces/classifier.py); this grid is the measurement behind those ranges.

Small CNN (the classifier's default) on the main job's target, digits 5-9 with 10 training
images per class, 30 epochs, default everything else; prints val/acc per optimizer and lr over
seeds. Chance is 0.2.

    .venv/bin/python benchmarks/lr_per_optimizer.py --seeds 2
"""
from __future__ import annotations

import argparse
import itertools

from tunelab.analysis.reproduce import confirm
from tunelab.core import metrics as M


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--optimizers", default="sgd,adam,adamw,rmsprop")
    parser.add_argument("--lrs", default="3e-1,1e-1,3e-2,1e-2,1e-3,1e-4")
    args = parser.parse_args()
    task = {"classes": "5-9", "train_per_class": 10, "epochs": 30}
    for optimizer, lr in itertools.product(args.optimizers.split(","), map(float, args.lrs.split(","))):
        accs = [confirm("classifier", {**task, "optimizer": optimizer, "lr": lr}, seed)[-1][M.VAL_ACC]
                for seed in range(args.seeds)]
        print(f"{optimizer:8s} lr {lr:<7g} val/acc " + " ".join(f"{a:.3f}" for a in accs), flush=True)


if __name__ == "__main__":
    main()
