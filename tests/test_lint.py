"""The hand-kept lists of the import contracts (pyproject.toml) name every module they mean to:
a module added to tunelab/ without a line there would escape the layer check unnoticed."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"analysis", "search_spaces", "trainables", "core", "compat"}  # below the driver
DRIVER_LEVEL_PACKAGES = {"searchers", "trackers"}  # beside the driver's modules


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["type"]: contract for contract in config["contracts"]}


def test_the_driver_level_modules_forbidden_to_the_lower_packages_are_every_top_level_module():
    top_level = {f"tunelab.{p.stem}" for p in (ROOT / "tunelab").glob("*.py") if p.stem != "__init__"}
    top_level |= {f"tunelab.{name}" for name in DRIVER_LEVEL_PACKAGES}
    assert set(_contracts()["forbidden"]["forbidden_modules"]) == top_level


def test_the_lower_packages_are_every_subpackage():
    sources = set(_contracts()["forbidden"]["source_modules"])
    assert sources == {f"tunelab.{name}" for name in SUBPACKAGES}
    folders = {p.parent.name for p in (ROOT / "tunelab").glob("*/__init__.py")}
    folders |= {name for name in ("analysis", "search_spaces", "trainables") if (ROOT / name / "__init__.py").is_file()}
    assert folders == SUBPACKAGES | DRIVER_LEVEL_PACKAGES
