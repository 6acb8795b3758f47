"""make test-min installs the floors pyproject.toml declares; tools/floor_constraints.py derives them."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "floor_constraints.py"


def test_the_named_packages_are_pinned_to_their_declared_floors_and_nothing_else_changes():
    out = subprocess.run([sys.executable, str(TOOL), "ray", "optuna"], capture_output=True, text=True, check=True)
    pinned = out.stdout.splitlines()
    original = (ROOT / "constraints.txt").read_text().splitlines()
    assert len(pinned) == len(original)
    changed = {a: b for a, b in zip(original, pinned) if a != b}
    assert sorted(changed.values()) == ["optuna==4.0", "ray==2.41"], changed
    assert all(a.split("==")[0] in ("ray", "optuna") for a in changed)


def test_a_package_without_a_declared_floor_is_refused_by_name():
    out = subprocess.run([sys.executable, str(TOOL), "ray", "nosuchpackage"], capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == ""
    assert "no `>=` floor declared for nosuchpackage" in out.stderr
