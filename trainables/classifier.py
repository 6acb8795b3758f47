"""Plain supervised classification: the shared engine with its default hooks."""
from __future__ import annotations

from tunelab.trainables.configs import ClassifierConfig
from tunelab.trainables.engine import Method, register_method


@register_method
class Classifier(Method):
    name = "classifier"
    config_class = ClassifierConfig
