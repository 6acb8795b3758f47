"""Data, models, heads and regularisers, the shared engine, and one module per training method.

`METHODS` maps a method name to its Ray Tune trainable: a function of the config dict (and,
through `tune.with_parameters`, of the experiment's shared in-memory dataset). It and
`METHOD_CLASSES` (name -> Method class) import torch and the method modules on first use; the
command line lists and checks methods from `tunelab.trainables.configs.METHOD_SPECS` without them.
"""
from __future__ import annotations

import gc
import importlib
from typing import Any, Callable

from tunelab.trainables.configs import METHOD_SPECS
from tunelab.core.errors import ConfigError


def method_names() -> list[str]:
    """Every method, in the order `compare` runs them and the help lists them."""
    return list(METHOD_SPECS)


def config_class(name: str):
    """The frozen config dataclass of method `name` (no torch import)."""
    if name not in METHOD_SPECS:
        raise ConfigError(f"method={name!r} is not known; choose from: {', '.join(METHOD_SPECS)}")
    return METHOD_SPECS[name].config_class


def _method_classes() -> dict[str, type]:
    """name -> Method class, in METHOD_SPECS order; importing a method module registers its class."""
    from tunelab.trainables.engine import METHOD_REGISTRY

    for spec in METHOD_SPECS.values():
        importlib.import_module(spec.module)
    return {name: METHOD_REGISTRY[name] for name in METHOD_SPECS}


def get_method(name: str):
    config_class(name)  # the one message for an unknown name
    return _method_classes()[name]()


def make_trainable(name: str) -> Callable[..., None]:
    """The Ray Tune function trainable of a method (reports through tune.report)."""

    def trainable(config: dict[str, Any], data=None, checkpoint_interval_s: float = 0.0,
                  deadline: float | None = None) -> None:
        import torch

        from tunelab.trainables import faults
        from tunelab.trainables.config import build_config
        from tunelab.trainables.engine import train
        from tunelab.trainables.tune_reporter import TuneReporter

        from tunelab.trainables.phases import mark, trial_id

        mark("trial_enter", trial=trial_id())  # the actor is up and has the trainable and its data
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
        finally:
            mark("trial_exit", trial=trial_id())

    trainable.__name__ = name
    trainable.__qualname__ = name
    return trainable


def __getattr__(attr: str) -> Any:  # PEP 562: the heavy tables are built on first use, then kept
    if attr == "METHOD_CLASSES":
        value = _method_classes()
    elif attr == "METHODS":
        value = {name: make_trainable(name) for name in METHOD_SPECS}
    else:
        raise AttributeError(f"module 'tunelab.trainables' has no attribute {attr!r}")
    globals()[attr] = value
    return value
