"""constraints.txt with the named packages pinned to the floors pyproject.toml declares for them
(`ray[tune]>=2.41` -> `ray==2.41`): what `make test-min` installs, so the floors stay tested.

    python tools/floor_constraints.py ray optuna > constraints-min.txt
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def floors() -> dict[str, str]:
    """Package name -> its declared lowest version, from pyproject.toml's dependencies."""
    found = {}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?>=([0-9][0-9A-Za-z.]*)", requirement.replace(" ", ""))
        if match:
            found[match.group(1).lower()] = match.group(3)
    return found


def main(names: list[str]) -> None:
    declared = floors()
    missing = [name for name in names if name not in declared]
    if missing:
        sys.exit(f"floor_constraints.py: no `>=` floor declared for {', '.join(missing)}; declared: {', '.join(declared)}")
    pinned = {name: declared[name] for name in names}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name = line.split("==")[0].strip().lower()
        print(f"{name}=={pinned.pop(name)}" if name in pinned else line)
    for name, version in pinned.items():
        print(f"{name}=={version}")


if __name__ == "__main__":
    main(sys.argv[1:])
