"""Fine-tuning a pretrained backbone: plain (`finetune`), with a fixed random prior (`randreg`),
and with AdaRand's adaptive class-conditional prior (`adarand`). One code path: the three differ
only in the regulariser `reg_lambda * mse(g(x), z)` and in where z comes from.

Defaults follow the official AdaRand config (04_adarand/rn50.yaml): SGD lr 0.01, momentum 0.9,
Nesterov, no weight decay, multistep x0.1 at 30%/60%/80% of the epochs, batch 64, lambda 1.0,
alpha 0.5, rand_lr 1e-2 with the official prior schedule under prior_variant=official
(`prior_schedule`), new fc ~ N(0, 0.01). Three deliberate differences for CPU runs, each stated where
set: 15 epochs instead of 200, a width-16 ResNet-18 instead of a ResNet-50, and lr 0.1 instead of
0.01 (measured on digits from the offline backbone, 15 epochs: lr 0.01 -> val/acc 0.92 plain /
0.96 AdaRand, train/acc 0.94, underfit; lr 0.1 -> 1.00 / 0.99).
"""
from __future__ import annotations

import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from tunelab.core import metrics as M
from tunelab.trainables.adarand import (ClassConditionalPrior, class_feature_stats,
                                prior_loss, prior_lr_factor)
from tunelab.trainables.batches import Normalizer, iterate_batches
from tunelab.trainables.splits import DatasetBundle
from tunelab.trainables.configs import AdaRandConfig, FinetuneConfig, RandRegConfig
from tunelab.trainables.engine import Method, _steps_per_epoch, register_method
from tunelab.trainables.models import FeatureClassifier, build_model
from tunelab.trainables.pretrained import load_pretrained, replace_classifier

@torch.no_grad()
def pretrained_features(model: FeatureClassifier, data: DatasetBundle, device: torch.device, batch_size: int):
    """Yield (features, labels) of the training split, eval mode, no augmentation.

    Eval mode matters: in train mode every forward pass would rewrite BatchNorm's running
    statistics (the original AdaRand write-up's mistake) before fine-tuning even starts.
    """
    was_training = model.training
    model.eval()
    normalize = Normalizer(data.mean, data.std, device)
    try:
        for images, labels in iterate_batches(data.train, batch_size, device=device, shuffle=False):
            yield model.backbone(normalize(images)).float(), labels
    finally:
        model.train(was_training)


@register_method
class FineTune(Method):
    """Plain fine-tuning: pretrained backbone, new classifier, cross-entropy."""

    name = "finetune"
    config_class = FinetuneConfig
    reports = Method.reports + (M.TRAIN_FEAT_NORM,)

    def build_model(self, config: FinetuneConfig, data: DatasetBundle) -> nn.Module:
        model = build_model(config.model_options(), data.num_classes)
        self.pretrained_info = load_pretrained(model, config, stream=sys.stderr)
        replace_classifier(model, data.num_classes)
        return model

    def source_record(self, config: FinetuneConfig) -> dict:
        """This run's data, and the backbone's source it was fine-tuned from (checked along the chain)."""
        return {**super().source_record(config), "pretrained": getattr(self, "pretrained_info", None)}

    def param_groups(self, model: FeatureClassifier, config: FinetuneConfig) -> list[dict]:
        return [{"params": list(model.backbone.parameters())},
                {"params": list(model.fc.parameters()), "lr": config.lr * config.fc_lr_factor}]

    def reference(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """The z of the regulariser for this batch, or None (no regulariser)."""
        return None

    def training_loss(self, model, images, labels, config):
        logits, features = model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
        f = features.float()
        extras = {M.TRAIN_FEAT_NORM: f.detach().norm(dim=1).mean()}
        z = self.reference(f, labels)
        if z is not None:
            reg = F.mse_loss(f, z)  # mean over B*D, as the official code
            loss = loss + config.reg_lambda * reg
            extras[M.TRAIN_REG_LOSS] = reg.detach()
        return loss, logits, features, extras


@register_method
class RandReg(FineTune):
    """Fine-tuning towards class-agnostic random features z from a fixed prior."""

    name = "randreg"
    config_class = RandRegConfig
    reports = FineTune.reports + (M.TRAIN_REG_LOSS,)

    def setup(self, model, data, config: RandRegConfig, device) -> None:
        self.kind = config.prior
        if self.kind == "pretrained":
            marginal = ((f, torch.zeros_like(y)) for f, y in
                        pretrained_features(model, data, device, config.eval_batch_size))
            mu, sigma = class_feature_stats(marginal, 1)
            self.mu, self.sigma = mu[0].float(), sigma[0].float()

    def reference(self, features, labels):
        with torch.no_grad():
            if self.kind == "normal":
                return torch.randn_like(features)
            if self.kind == "uniform":
                return torch.rand_like(features)
            return self.mu + self.sigma * torch.randn_like(features)


@register_method
class AdaRand(FineTune):
    """Fine-tuning towards z ~ N(mu_y, sigma_y^2) whose means adapt every iteration."""

    name = "adarand"
    config_class = AdaRandConfig
    reports = FineTune.reports + (M.TRAIN_REG_LOSS, M.PRIOR_INTER_COS)

    def setup(self, model, data, config: AdaRandConfig, device) -> None:
        mu, sigma = class_feature_stats(pretrained_features(model, data, device, config.eval_batch_size),
                                        data.num_classes, data.class_names)
        self.prior = ClassConditionalPrior(mu.float(), sigma.float(), alpha=config.alpha).to(device)
        self.prior_optimizer = torch.optim.Adam([self.prior.mu], lr=config.rand_lr)
        self.variant = config.prior_variant
        self.schedule = config.prior_schedule
        self.rand_lr = config.rand_lr
        self.total_steps = config.epochs * _steps_per_epoch(len(data.train), config.batch_size)
        self.prior_step = 0

    def reference(self, features, labels):
        return self.prior.sample(labels)

    def after_step(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Running class means, then one Adam step on mu; the prior's lr follows its own schedule."""
        self.prior.update_running(features, labels)
        factor = prior_lr_factor(self.schedule, self.variant, self.prior_step / self.total_steps)
        for group in self.prior_optimizer.param_groups:
            group["lr"] = self.rand_lr * factor
        self.prior_optimizer.zero_grad(set_to_none=True)
        prior_loss(self.prior.mu, self.prior.running_mu, self.variant).backward()
        self.prior_optimizer.step()
        self.prior_step += 1

    def epoch_extras(self) -> dict[str, float]:
        return {M.PRIOR_INTER_COS: self.prior.inter_cos()}

    def state_dict(self) -> dict:
        return {"prior": self.prior.state_dict(), "prior_optimizer": self.prior_optimizer.state_dict(),
                "prior_step": self.prior_step}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.prior.load_state_dict(state["prior"])
            self.prior_optimizer.load_state_dict(state["prior_optimizer"])
            self.prior_step = int(state["prior_step"])
