"""Data, models, heads and regularisers, the shared engine, and one module per training method.

`METHODS` maps a method name to its Ray Tune trainable: a function of the config dict (and,
through `tune.with_parameters`, of the experiment's shared in-memory dataset).
"""
from __future__ import annotations

import gc
from typing import Any, Callable

import torch

# The method modules register their methods (`@register_method`) when imported; one line each,
# in the order `compare` runs them and the help lists them.
from trainables import classifier, finetune, arcface  # noqa: F401,I001  (registration, in this order)
from trainables import faults
from trainables.config import build_config
from trainables.engine import METHOD_REGISTRY, Method, train
from trainables.errors import ConfigError

METHOD_CLASSES: dict[str, type[Method]] = METHOD_REGISTRY


def get_method(name: str) -> Method:
    if name not in METHOD_CLASSES:
        raise ConfigError(f"method={name!r} is not known; choose from: {', '.join(METHOD_CLASSES)}")
    return METHOD_CLASSES[name]()


def make_trainable(name: str) -> Callable[..., None]:
    """The Ray Tune function trainable of a method (reports through tune.report)."""

    def trainable(config: dict[str, Any], data=None, checkpoint_interval_s: float = 0.0,
                  deadline: float | None = None) -> None:
        from trainables.tune_reporter import TuneReporter

        method = faults.wrap(get_method(name))
        train_config = build_config(method.config_class, config)
        reporter = TuneReporter(train_config.epochs, checkpoint_interval_s, deadline)
        try:
            train(method, train_config, reporter, data=data)
        except torch.OutOfMemoryError:
            # Give the memory back before Ray records the error, so neighbours sharing the GPU
            # are not starved while this trial's actor is torn down.
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise

    trainable.__name__ = name
    trainable.__qualname__ = name
    return trainable


METHODS: dict[str, Callable[..., None]] = {name: make_trainable(name) for name in METHOD_CLASSES}
