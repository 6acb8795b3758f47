"""Secrets in URIs: used, never shown or kept.

A storage or tracking URI may carry a password (postgresql://user:PASSWORD@host/db,
s3://KEY:SECRET@bucket/runs, http://user:PASSWORD@host) or a secret query parameter
(?password=..., ?X-Amz-Signature=...). Everything tunelab prints or records goes through
`redact`: output, errors, tunelab.json, reports, progress lines, the lock's holder record.
"""
from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
# scheme://USER:PASSWORD@...: the password runs to the last '@' before any blank or quote (a secret
# key may hold an unencoded '/'), so a user name never holds ':' '/' or '@'.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s'\"@:]*):(?P<password>[^\s'\"]*)@")
_SECRET_QUERY = re.compile(r"(?P<name>[?&;][^=&#\s'\"]*?(?:password|passwd|pwd|secret|token|signature|credential"
                           r"|api_?key)[^=&#\s'\"]*=)(?P<value>[^&#\s'\"]*)", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` (a URI, a message, a command line) with every password and secret query value
    shown as ***; the user name, host, path and the rest stay readable."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}:{REDACTED if m['password'] else ''}@", text)
    return _SECRET_QUERY.sub(lambda m: m["name"] + (m["value"] and REDACTED), text)


def redact_all(value: Any) -> Any:
    """A JSON-like value (a record, a command line) with `redact` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_all(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_all(item) for item in value)
    return value


def split_password(uri: str) -> tuple[str, str | None]:
    """(the URI without the password in its user info, the password or None). A password shown as
    *** (a recorded URI) counts as none: it was never kept."""
    match = _USERINFO.match(uri)
    if match is None:
        return uri, None
    bare = f"{match['head']}@{uri[match.end():]}"
    password = match["password"]
    return bare, (password if password and password != REDACTED else None)
