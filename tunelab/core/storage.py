"""Where an experiment is: a local folder, a `file://` URI or any URI pyarrow's filesystems open
(Ray's storage layer), and the helpers every command uses to tell them apart and read from them."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from tunelab.core.errors import ConfigError
from tunelab.core.redaction import redact


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def join_uri(location: str, *parts: str) -> str:
    """`location` (a path or URI) with `parts` appended to its path; a URI's query
    (s3://bucket/runs?endpoint_override=HOST:PORT&scheme=http) stays at the end."""
    base, question, query = str(location).partition("?")
    joined = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return joined + question + query


def local_path(location: str | Path) -> Path | None:
    """The local folder behind a plain path or a file:// URI; None for a remote URI (s3://, gs://, ...)."""
    text = str(location)
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    return None if is_uri(text) else Path(text)


def experiment_identity(location: str | Path) -> str:
    """What an experiment is, however it was spelled: the real absolute path of a local folder or
    `file://` URI (`x`, `./x/`, a symlink to x and file:///.../x are one experiment), or the normalised
    URI of an object store (scheme in lower case, no empty or `.` path segments, no trailing `/`,
    query parameters sorted). The lock, `report` and the other places that ask "same experiment?"
    compare these."""
    local = local_path(location)
    if local is not None:
        return os.path.realpath(local)
    parts = urlsplit(str(location))
    segments = [s for s in parts.path.split("/") if s not in ("", ".")]
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)), safe=":/,@")
    # written out rather than by urlunsplit, which drops the '//' of an empty authority
    # (local:///x -> local:/x, a URI pyarrow no longer reads)
    path = "/" + "/".join(segments) if segments else ""
    return f"{parts.scheme.lower()}://{parts.netloc}{path}" + (f"?{query}" if query else "")


def remote_filesystem(location: str, flag: str = ""):
    """(pyarrow filesystem, path inside it) of a remote URI; a URI pyarrow cannot resolve is bad input."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as exc:  # pyarrow raises ArrowInvalid, ValueError or OSError depending on the scheme
        shown = f"{flag} {redact(location)!r}".strip()
        raise ConfigError(f"{shown} is not a location pyarrow can open: {redact(str(exc).splitlines()[0])}; "
                          "e.g. s3://bucket/runs?endpoint_override=HOST:PORT&scheme=http&region=REGION "
                          "(query options: region, scheme, endpoint_override, allow_bucket_creation, "
                          "allow_bucket_deletion)") from None


def read_text(location: str | Path, name: str) -> str:
    """The text of file `name` inside the experiment at `location` (folder or URI)."""
    local = local_path(location)
    if local is not None:
        return (local / name).read_text(encoding="utf-8")
    fs, root = remote_filesystem(str(location))
    with fs.open_input_stream(f"{root.rstrip('/')}/{name}") as handle:
        return handle.read().decode("utf-8")
