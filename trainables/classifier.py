"""Plain supervised classification: the shared engine with its default hooks."""
from __future__ import annotations

from dataclasses import dataclass

from trainables.engine import Method, TrainConfig, register_method


@dataclass(frozen=True)
class ClassifierConfig(TrainConfig):
    """All of TrainConfig; defaults train the small CNN on digits to >= 95% val/acc in seconds."""


@register_method
class Classifier(Method):
    name = "classifier"
    config_class = ClassifierConfig
