"""ArcFace metric learning: backbone -> embedding (n_feats) -> margin head -> cross-entropy.

Evaluation is leak-free: labels never enter the head. Predictions use the margin-free
`head.logits(embedding)`, and the embedding itself is scored by Recall@1 and MAP@R.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tunelab.core import metrics as M
from tunelab.trainables.splits import DatasetBundle
from tunelab.trainables.configs import ArcFaceConfig
from tunelab.trainables.engine import Method, register_method
from tunelab.trainables.heads import CosineHead, build_head
from tunelab.trainables.models import build_model
from tunelab.trainables.retrieval import retrieval_metrics


class EmbeddingNet(nn.Module):
    """backbone -> optional linear projection -> embedding; forward gives margin-free (logits, embedding)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, n_feats: int, head: CosineHead):
        super().__init__()
        self.backbone = backbone
        self.projection = nn.Linear(feature_dim, n_feats) if n_feats else nn.Identity()
        self.head = head
        self.feature_dim = n_feats or feature_dim

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embed(x)
        return self.head.logits(embedding), embedding


@register_method
class ArcFaceMethod(Method):
    name = "arcface"
    config_class = ArcFaceConfig
    reports = Method.reports + (M.VAL_RECALL_AT_1, M.VAL_MAP_AT_R)

    def build_model(self, config: ArcFaceConfig, data: DatasetBundle) -> nn.Module:
        base = build_model(config.model_options(), data.num_classes)
        dim = config.n_feats or base.feature_dim
        head = build_head(config.head, dim, data.num_classes, s=config.s, m=config.m,
                          easy_margin=config.easy_margin)
        return EmbeddingNet(base.backbone, base.feature_dim, config.n_feats, head)

    def param_groups(self, model: EmbeddingNet, config: ArcFaceConfig) -> list[dict]:
        head_params = list(model.head.parameters()) + list(model.projection.parameters())
        return [{"params": list(model.backbone.parameters())},
                {"params": head_params, "lr": config.lr * config.head_lr_factor}]

    def training_loss(self, model, images, labels, config):
        net = getattr(model, "_orig_mod", model)  # torch.compile's wrapper holds the EmbeddingNet here
        embedding = net.embed(images)
        logits = net.head(embedding.float(), labels)
        loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
        # train/acc from margin-free scores, the same rule evaluation uses
        return loss, net.head.logits(embedding.detach().float()), embedding, {}

    def needs_eval_features(self) -> bool:
        return True

    def evaluation_extras(self, features, labels, split):
        found = retrieval_metrics(features, labels)
        return {M.split_metric(M.VAL_RECALL_AT_1, split): found["recall@1"],
                M.split_metric(M.VAL_MAP_AT_R, split): found["map@r"]}

