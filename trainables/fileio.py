"""File I/O shared by every command: output paths checked before anything runs, atomic writes,
checkpoints loaded without running code, strict JSON lines.

Never through a planted symlink: a file tunelab writes is either written whole and renamed into
place (`atomic_write_bytes`: the rename replaces a link at the path, it never writes to the
link's target), or, when it must be opened in place (the experiment lock, a driver's log), opened
with O_NOFOLLOW (`open_no_follow`), which refuses a link instead of truncating what it points to.
"""
from __future__ import annotations

import errno
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from tunelab.core.errors import ConfigError
from tunelab.core.files import atomic_write_bytes, atomic_write_text  # noqa: F401 - their home before 0.4

CHECKPOINT_FILE = "checkpoint.pt"
NAME_MAX = 255  # bytes in one path component on every filesystem tunelab writes to


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
    if any(len(os.fsencode(part)) > NAME_MAX for part in out.parts):
        raise ConfigError(f"{flag} {text[:80]!r}... cannot be written: a name in it is longer than "
                          f"{NAME_MAX} bytes, the most a filesystem allows")
    if kind == "file" and out.is_dir():
        raise ConfigError(f"{flag} {text!r} is a folder; give a file path (e.g. {text.rstrip('/')}/best.yaml)")
    if kind == "folder" and out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {text!r} is a file; give a folder path (the file is kept as it is)")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {text!r} cannot be written: {str(parent)!r} is a file, not a folder")
            break
    check_writable_folder(out if kind == "folder" else out.parent, flag, text)
    return out


def refuse_link(path: str | os.PathLike, role: str) -> None:
    """Refuse, before anything is written, a symlink where tunelab keeps one of its own files."""
    if os.path.islink(path):
        raise ConfigError(f"{role} {str(path)!r} is a symbolic link (to {os.readlink(path)!r}); tunelab never "
                          "writes through one, so what it points to is left as it is: remove the link and "
                          "try again")


def open_no_follow(path: str | os.PathLike, role: str, truncate: bool = False) -> int:
    """A descriptor of the regular file at `path`, opened read-write and created if missing, with
    O_NOFOLLOW: a symlink (or a FIFO, a device) planted there is refused in one line, never
    followed. The caller owns the descriptor."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_TRUNC if truncate else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_link(path, role)
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{role} {str(path)!r} is not a regular file; tunelab writes only its own plain files "
                          "there: remove it and try again")
    os.set_blocking(fd, True)
    return fd


def check_writable_folder(folder: Path, flag: str, text: str) -> None:
    """`folder` exists as a writable folder, or can be made in its nearest existing one; nothing is
    written (os.access: a read-only mount or permission refuses here, not after the run)."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {text!r} cannot be written: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {text!r} cannot be written: no write permission on {str(existing)!r} "
                          "(read-only or another user's folder); choose a folder you can write")


def save_checkpoint(path: Path, state: dict) -> None:
    import torch  # here, not at the top: the command line uses this module's file helpers

    atomic_write_bytes(path, lambda handle: torch.save(state, handle))


def load_checkpoint_file(path: Path) -> dict:
    """Load a checkpoint with weights_only=True: tensors and plain containers, never code."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        raise ConfigError(f"checkpoint {str(path)!r} cannot be loaded: {str(exc).splitlines()[0]}") from None


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a one-object-a-line file that a kill may have cut short: a cut or
    undecodable line, or one that is not an object, is skipped; a missing file reads as empty."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


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
