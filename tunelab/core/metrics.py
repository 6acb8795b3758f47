"""Metric names (a fixed contract: trackers and users read them), shared by trainables, search spaces, scheduler and analysis."""

EPOCH = "epoch"
TRAIN_LOSS = "train/loss"
TRAIN_ACC = "train/acc"
VAL_LOSS = "val/loss"
VAL_ACC = "val/acc"
VAL_ACC_TOP5 = "val/acc_top5"
VAL_ACC_BEST = "val/acc_best"
# ArcFace
VAL_RECALL_AT_1 = "val/recall@1"
VAL_MAP_AT_R = "val/map@r"
# AdaRand
TRAIN_REG_LOSS = "train/reg_loss"
TRAIN_FEAT_NORM = "train/feat_norm"
PRIOR_INTER_COS = "prior/inter_cos"
# Not in the CONTRACT set, reported by the engine for diagnostics.
TRAIN_LR = "train/lr"
EPOCH_SECONDS = "time/epoch_s"
DIVERGED = "diverged"

CONTRACT_METRICS = (EPOCH, TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, VAL_ACC_TOP5, VAL_ACC_BEST)



def on_split(name: str, split: str) -> bool:
    """Whether metric `name` is measured on `split` ('val/acc' is on 'val')."""
    return name.startswith(split + "/")


def split_metric(name: str, split: str) -> str:
    """'val/acc' -> 'test/acc': the same metric on another split (confirmation runs)."""
    return f"{split}/{name.split('/', 1)[1]}"


# Confirmation runs only (reproduce, compare): the val metrics on the test split.
TEST_LOSS, TEST_ACC, TEST_ACC_TOP5 = (split_metric(m, "test") for m in (VAL_LOSS, VAL_ACC, VAL_ACC_TOP5))
# The epoch whose weights the test metrics measure: the run's best val/acc epoch, the rule by which
# a search scores each trial, so selection and confirmation read val the same way.
TEST_EPOCH = "test/epoch"

