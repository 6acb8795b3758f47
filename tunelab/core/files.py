"""Files written whole or not at all."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file, and never
    a write through a symlink at `path` (the rename replaces the link itself). The file gets the
    permissions a plain `open` would give it (the umask's), or keeps those of the file it replaces:
    the temporary file is private (0600), which made reports and records unreadable to the others
    sharing a storage."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
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


def _mode_for(path: Path) -> int:
    """The read/write/execute bits of the regular file at `path` (not of a link there; never its
    setuid, setgid or sticky bit), else what the umask leaves of 0666: as a plain write would."""
    try:
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode):
            return stat.S_IMODE(info.st_mode) & 0o777
    except OSError:
        pass
    umask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(umask)
    return 0o666 & ~umask
