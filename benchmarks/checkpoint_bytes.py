"""Bytes of one trial checkpoint per model: the model's weights and the optimizer's state after a
step, as `trainables.engine.checkpoint_state` saves them (Adam keeps two moments a weight, so a
checkpoint is about three times the weights). With `--keep-checkpoints N` a trial keeps at most
N + 1 of them (its best N and its latest).

    python benchmarks/checkpoint_bytes.py
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = [("classifier", {}), ("classifier", {"model": "resnet18", "width": 64}),
          ("classifier", {"model": "alexnet_cifar"}), ("arcface", {})]


def checkpoint_bytes(method: str, values: dict, image_size: int = 32, classes: int = 10) -> tuple[int, int]:
    """(parameters, bytes of model + Adam state after one step) of the method's model."""
    import torch

    from tunelab.trainables.config import build_config
    from tunelab.trainables.configs import METHOD_SPECS
    from tunelab.trainables.models import build_model

    config = build_config(METHOD_SPECS[method].config_class, values)
    model = build_model(config.model_options(), classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = model(torch.randn(2, 3, image_size, image_size))
    (out[0] if isinstance(out, tuple) else out).float().sum().backward()
    optimizer.step()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    return sum(p.numel() for p in model.parameters()), buffer.tell()


def main() -> None:
    print("model (32 px, 10 classes)                         parameters   one checkpoint   a trial at most (N=2 / N=1)")
    for method, values in MODELS:
        config = build_config_label(method, values)
        parameters, size = checkpoint_bytes(method, values)
        mib = size / 2**20
        print(f"{config:50} {parameters / 1e6:8.2f} M {mib:12.1f} MiB {3 * mib:12.1f} / {2 * mib:.1f} MiB")


def build_config_label(method: str, values: dict) -> str:
    from tunelab.trainables.config import build_config
    from tunelab.trainables.configs import METHOD_SPECS

    config = build_config(METHOD_SPECS[method].config_class, values)
    label = f"{method} {config.model} width {config.width or 'default'}"
    return label + (" (backbone)" if method == "arcface" else "")  # the 512-d projection and head add about 0.07 M


if __name__ == "__main__":
    main()
