"""Plain supervised classification: the shared engine with its default hooks."""
from __future__ import annotations

from trainables.configs import ClassifierConfig
from trainables.engine import Method, register_method


@register_method
class Classifier(Method):
    name = "classifier"
    config_class = ClassifierConfig
