"""The one training engine every method shares: epoch loop, evaluation, reporting, checkpoints.

A method supplies only what differs by subclassing `Method` (model construction, loss terms,
what happens after an optimizer step, extra evaluation metrics, extra checkpoint state).
The loop keeps running sums on the device and syncs with the host once per epoch.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tunelab.core import metrics as M
from tunelab.trainables.configs import TrainConfig
from tunelab.trainables.batches import Augment, Normalizer, iterate_batches
from tunelab.trainables.data import load_dataset
from tunelab.trainables.splits import DatasetBundle
from tunelab.core.errors import ConfigError
from tunelab.trainables.identity import data_identity
from tunelab.trainables.models import build_model, check_model_fits
from tunelab.trainables.optim import LRSchedule, build_optimizer
from tunelab.trainables.phases import mark, trial_id
from tunelab.trainables.reporting import Reporter


class Method:
    """Hooks of a training method. The defaults are plain supervised classification.

    A method is a subclass with its own `name`, registered with `@register_method`; `reports` lists
    the metrics it reports every epoch beyond the CONTRACT set (checked for every registered method).
    """

    name = "classifier"
    config_class: type[TrainConfig] = TrainConfig
    reports: tuple[str, ...] = M.CONTRACT_METRICS

    def build_model(self, config: TrainConfig, data: DatasetBundle) -> nn.Module:
        return build_model(config.model_options(), data.num_classes)

    def param_groups(self, model: nn.Module, config: TrainConfig) -> list[dict]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def setup(self, model: nn.Module, data: DatasetBundle, config: TrainConfig, device: torch.device) -> None:
        """Work done once before training (e.g. AdaRand's prior from pretrained features)."""

    def training_loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, logits for train/acc, features, extra per-batch mean metrics)."""
        logits, features = model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
        return loss, logits, features, {}

    def after_step(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Called after each optimizer step with the batch's detached features."""

    def predict(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) at evaluation; never sees labels."""
        return model(images)

    def evaluation_extras(self, features: torch.Tensor, labels: torch.Tensor, split: str) -> dict[str, float]:
        """Metrics computed from a whole split's features (e.g. retrieval); `split` prefixes names."""
        return {}

    def begin_epoch(self, epoch: int) -> None:
        """Called before each epoch's first step (1-based epoch, also after a resume)."""

    def epoch_extras(self) -> dict[str, float]:
        """Metrics reported once per epoch that are not per-batch means (e.g. prior geometry)."""
        return {}

    def source_record(self, config: TrainConfig) -> dict:
        """What this run's checkpoints record as their source: the leak guard reads it when one is
        used as `pretrained=` (tunelab.trainables.pretrained). Trained on the labels, so `supervised`."""
        return data_identity(config, "supervised")

    def needs_eval_features(self) -> bool:
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


METHOD_REGISTRY: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Register a method under its own `name` (the name `tune`, `train` and `compare` take)."""
    name = cls.__dict__.get("name")
    if not name:
        raise TypeError(f"{cls.__name__} must set its own `name` to be registered")
    if name in METHOD_REGISTRY:
        raise KeyError(f"method {name!r} is registered twice ({METHOD_REGISTRY[name].__name__}, {cls.__name__})")
    from tunelab.trainables.configs import METHOD_SPECS

    if name not in METHOD_SPECS or METHOD_SPECS[name].config_class is not cls.config_class:
        raise KeyError(f"method {name!r} with {cls.config_class.__name__} is not listed in "
                       "tunelab.trainables.configs.METHOD_SPECS; add it there (the command line checks names from it)")
    METHOD_REGISTRY[name] = cls
    return cls


# ----------------------------------------------------------------------------- runtime setup

def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA GPU is visible; choose from: auto, cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def configure_backend(config: TrainConfig, device: torch.device) -> None:
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if config.gpu_memory_fraction > 0:
            # torch wants an index here: a bare torch.device("cuda") raised ValueError on a real GPU
            index = device.index if device.index is not None else torch.cuda.current_device()
            torch.cuda.set_per_process_memory_fraction(config.gpu_memory_fraction, index)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed per (trial seed, epoch): resuming needs no saved RNG state."""
    return (seed * 1_000_003 + epoch * 7919 + 12345) % 2**63


# ----------------------------------------------------------------------------- the loop

@dataclass
class TrainingRun:
    """Everything one run holds while training; built by `prepare`."""

    method: Method
    config: TrainConfig
    data: DatasetBundle
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    augment: Augment
    normalize: Normalizer
    autocast: bool
    train_model: nn.Module  # `model`, or its torch.compile'd twin


def prepare(method: Method, config: TrainConfig, data: DatasetBundle | None = None,
            gpu_path: bool | None = None) -> TrainingRun:
    """Everything a run needs, on its device. `gpu_path` (default: on CUDA) turns on what the CUDA
    path uses, bf16 autocast and channels_last as the config asks: tests force it on the CPU,
    where PyTorch supports both, so dtype and layout bugs surface without a GPU."""
    device = resolve_device(config.device)
    configure_backend(config, device)
    data = (data if data is not None else load_dataset(config.data_options())).to(device)
    check_model_fits(config.model_options(), data.image_size, data.num_classes)
    seed_everything(config.seed)
    model = method.build_model(config, data).to(device)
    on_cuda = device.type == "cuda" if gpu_path is None else gpu_path
    if on_cuda and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    method.setup(model, data, config, device)
    optimizer = build_optimizer(method.param_groups(model, config), config)
    steps = _steps_per_epoch(len(data.train), config.batch_size)
    padding = data.image_size // 8 if config.crop_padding < 0 else config.crop_padding
    hflip = data.default_hflip if config.hflip is None else config.hflip
    train_model = torch.compile(model) if config.compile else model
    return TrainingRun(method, config, data, device, model, optimizer, LRSchedule(optimizer, config, steps),
                       Augment(padding, hflip, config.vflip),
                       Normalizer(data.mean, data.std, device, on_cuda and config.channels_last),
                       autocast=on_cuda and config.bf16, train_model=train_model)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size if n >= batch_size else 1


def _drop_last(n: int, batch_size: int) -> bool:
    # Full batches only (BatchNorm cannot train on a batch of one), unless the split is smaller.
    return n >= batch_size


def train_one_epoch(run: TrainingRun, generator: torch.Generator) -> dict[str, float]:
    run.train_model.train()
    cfg, dev = run.config, run.device
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    extra_sums: dict[str, torch.Tensor] = {}
    seen = 0
    for images, labels in iterate_batches(run.data.train, cfg.batch_size, device=dev, shuffle=True,
                                          generator=generator, drop_last=_drop_last(len(run.data.train),
                                                                                    cfg.batch_size)):
        x = run.normalize(run.augment(images, generator))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=run.autocast):
            loss, logits, features, extras = run.method.training_loss(run.train_model, x, labels, cfg)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
        run.optimizer.step()
        run.schedule.step()
        run.method.after_step(features.detach().float(), labels)
        n = labels.shape[0]
        seen += n
        loss_sum += loss.detach().float() * n
        correct += (logits.detach().argmax(1) == labels).sum()
        for key, value in extras.items():
            extra_sums[key] = extra_sums.get(key, 0) + value.detach().float() * n
    keys = list(extra_sums)
    # One host sync per epoch, not one per step.
    values = torch.stack([loss_sum, correct.float()] + [extra_sums[k] for k in keys]).tolist()
    result = {M.TRAIN_LOSS: values[0] / seen, M.TRAIN_ACC: values[1] / seen}
    result.update({k: v / seen for k, v in zip(keys, values[2:])})
    result[M.TRAIN_LR] = run.schedule.current_lr()
    return result


@torch.no_grad()
def evaluate(run: TrainingRun, split_name: str) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy (and the method's extras) on one split; labels never enter the model."""
    split = getattr(run.data, split_name)
    run.model.eval()
    dev = run.device
    loss_sum = torch.zeros((), device=dev)
    top1 = torch.zeros((), device=dev)
    top5 = torch.zeros((), device=dev)
    k = min(5, run.data.num_classes)
    all_features, all_labels = [], []
    for images, labels in iterate_batches(split, run.config.eval_batch_size, device=dev, shuffle=False):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=run.autocast):
            logits, features = run.method.predict(run.model, run.normalize(images))
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        topk = logits.topk(k, dim=1).indices
        top1 += (topk[:, 0] == labels).sum()
        top5 += (topk == labels[:, None]).any(dim=1).sum()
        if run.method.needs_eval_features():
            all_features.append(features.float())
            all_labels.append(labels)
    n = len(split)
    loss, acc1, acc5 = (torch.stack([loss_sum, top1, top5]) / n).tolist()
    result = {M.split_metric(M.VAL_LOSS, split_name): loss, M.split_metric(M.VAL_ACC, split_name): acc1,
              M.split_metric(M.VAL_ACC_TOP5, split_name): acc5}
    if all_features:
        result.update(run.method.evaluation_extras(torch.cat(all_features), torch.cat(all_labels), split_name))
    return result


def checkpoint_state(run: TrainingRun, epoch: int, best: float, metrics: dict[str, float]) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "best_val_acc": best,
        "metrics": dict(metrics),  # what this epoch reported: said again if the run resumes from here having ended
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "method": run.method.state_dict(),
        "model_name": run.config.model,
        "source": run.method.source_record(run.config),
    }


def restore(run: TrainingRun, state: dict[str, Any]) -> tuple[int, float]:
    """Load a checkpoint of this same run; returns (epochs done, best val/acc so far)."""
    if state.get("model_name") not in (None, run.config.model):
        raise ConfigError(f"checkpoint is of model={state.get('model_name')!r}, not model={run.config.model!r}")
    try:
        run.model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ConfigError(f"checkpoint does not fit model={run.config.model!r}: "
                          f"{str(exc).splitlines()[0]}") from None
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["schedule"])
    run.method.load_state_dict(state.get("method", {}))
    return int(state["epoch"]), float(state["best_val_acc"])


def train(method: Method, config: TrainConfig, reporter: Reporter, data: DatasetBundle | None = None,
          evaluate_test: bool = False, gpu_path: bool | None = None) -> dict[str, float]:
    """Train `method` with `config`, reporting every epoch; returns the last epoch's metrics.

    Test metrics are computed only when `evaluate_test` (confirmation runs), never in a search,
    and measure the weights of the best val/acc epoch (the first, on ties: the epoch a search
    scores a trial by), reported with the last epoch together with that epoch (`test/epoch`).
    A loss that becomes NaN or inf stops the run at once with `diverged` = 1 in its last report.
    """
    threads = torch.get_num_threads()
    try:
        return _train(method, config, reporter, data, evaluate_test, gpu_path)
    finally:
        torch.set_num_threads(threads)  # `threads` applies to this run only, not to the caller


def _train(method: Method, config: TrainConfig, reporter: Reporter, data: DatasetBundle | None,
           evaluate_test: bool, gpu_path: bool | None) -> dict[str, float]:
    run = prepare(method, config, data, gpu_path)
    start, best = 0, -math.inf
    state = reporter.load_checkpoint()
    if state is not None:
        start, best = restore(run, state)
        ended = state.get("metrics")  # absent in checkpoints written before 0.2
        if ended is not None and (start >= config.epochs or ended.get(M.DIVERGED)):
            # Resumed from its last epoch's checkpoint (a driver killed after the run ended, before the
            # end was recorded): say that epoch again, training nothing, so Tune learns how it ended.
            reporter.report(dict(ended), lambda: state)
            return dict(ended)
    mark("train_begin", trial=trial_id())
    metrics: dict[str, float] = {}
    tested: dict[str, float] = {}  # test metrics of the best val epoch so far (confirmation runs)
    for epoch in range(start, config.epochs):
        began = time.perf_counter()
        seed = epoch_seed(config.seed, epoch)
        torch.manual_seed(seed)
        generator = torch.Generator(device=run.device).manual_seed(seed)
        run.method.begin_epoch(epoch + 1)
        metrics = {M.EPOCH: epoch + 1, **train_one_epoch(run, generator)}
        diverged = not math.isfinite(metrics[M.TRAIN_LOSS])
        metrics.update(evaluate(run, "val"))
        metrics.update(run.method.epoch_extras())
        improved = math.isfinite(metrics[M.VAL_ACC]) and metrics[M.VAL_ACC] > best
        best = metrics[M.VAL_ACC] if improved else best
        metrics[M.VAL_ACC_BEST] = best
        metrics[M.DIVERGED] = int(diverged)
        last = diverged or epoch + 1 == config.epochs
        if evaluate_test and (improved or (last and not tested)):
            tested = {**evaluate(run, "test"), M.TEST_EPOCH: epoch + 1}
        if evaluate_test and last:
            metrics.update(tested)
        metrics[M.EPOCH_SECONDS] = time.perf_counter() - began
        reporter.report(metrics, lambda e=epoch + 1, b=best, m=metrics: checkpoint_state(run, e, b, m))
        if diverged:
            break
    return metrics
