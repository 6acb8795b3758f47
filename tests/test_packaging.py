"""The distribution installs under its own name: a wheel built from this checkout holds `tunelab`
and its metadata only (`tunelab.trainables`, `tunelab.search_spaces`, `tunelab.analysis` inside it),
so nothing collides with another package called `analysis` or `trainables`."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_puts_only_tunelab_at_the_top_of_site_packages(tmp_path):
    source = tmp_path / "source"  # setuptools builds in the source tree: a copy, not the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("tunelab", "trainables", "search_spaces", "analysis"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            str(source), "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("tunelab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"tunelab", wheel.name.split("-py")[0] + ".dist-info"}
    packages = {str(Path(name).parent) for name in names if name.endswith("/__init__.py")}
    assert {"tunelab/trainables", "tunelab/search_spaces", "tunelab/analysis", "tunelab/compat"} <= packages
    # every module of the checkout's subpackage folders is in the wheel, under tunelab/
    for folder in ("trainables", "search_spaces", "analysis"):
        for module in (ROOT / folder).glob("*.py"):
            assert f"tunelab/{folder}/{module.name}" in names, module
