"""File I/O shared by every command: output paths checked before anything runs, atomic writes,
checkpoints loaded without running code, strict JSON lines."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from trainables.errors import ConfigError

CHECKPOINT_FILE = "checkpoint.pt"


def check_output_path(path: str | os.PathLike, flag: str, kind: str) -> Path:
    """Refuse an output path that cannot be written as `kind` ('file' or 'folder'), without writing:
    an empty path, a path under a file, a folder where a file goes or a file where a folder goes."""
    text = str(path)
    if not text.strip():
        raise ConfigError(f"{flag} '' is empty; give a {kind} path")
    if "\x00" in text:
        raise ConfigError(f"{flag} {text!r} holds a NUL character; give a plain {kind} path")
    if "://" in text:  # would become a local folder named 's3:' (only --storage takes URIs)
        raise ConfigError(f"{flag} {text!r} is a URI; {flag} takes a local {kind} path")
    out = Path(text).expanduser()
    if kind == "file" and out.is_dir():
        raise ConfigError(f"{flag} {text!r} is a folder; give a file path (e.g. {text.rstrip('/')}/best.yaml)")
    if kind == "folder" and out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {text!r} is a file; give a folder path (the file is kept as it is)")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {text!r} cannot be written: {str(parent)!r} is a file, not a folder")
            break
    return out


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda handle: handle.write(text.encode("utf-8")))


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write_bytes(path, lambda handle: torch.save(state, handle))


def load_checkpoint_file(path: Path) -> dict:
    """Load a checkpoint with weights_only=True: tensors and plain containers, never code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        raise ConfigError(f"checkpoint {str(path)!r} cannot be loaded: {str(exc).splitlines()[0]}") from None


def json_ready(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics with non-finite floats as None, so the JSON line is strict JSON."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=False, default=str)
