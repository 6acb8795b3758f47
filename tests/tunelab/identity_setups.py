"""The fault matrix's identity cases (round 3, 2): `setup(folder)` functions that prepare files
quietly with tunelab's own engine (the row's one stderr line is all it may print), and scenarios
that start Ray through real `tunelab` processes."""
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_image_folder

ROOT = str(Path(__file__).resolve().parents[2])

TINY = {"model": "small_cnn", "width": 8, "image_size": 8, "epochs": 1}


def own_labels_checkpoint(folder: Path) -> None:
    """`tunelab train classifier --out {d}/own` on digits, every class: what a careless user passes
    as `pretrained=` for a fine-tuning run on the same labels."""
    from tunelab.trainables import METHOD_CLASSES, get_method
    from tunelab.trainables.config import build_config, to_dict
    from tunelab.trainables.engine import train
    from tunelab.trainables.reporting import LocalReporter

    config = build_config(METHOD_CLASSES["classifier"].config_class, TINY)
    train(get_method("classifier"), config, LocalReporter(folder / "own", to_dict(config), quiet=True))


def imagefolder_backbone(folder: Path) -> None:
    """A supervised backbone of `imagefolder:{d}/imgs` at {d}/imgs.pt, and a symlink {d}/imgs_alias."""
    from tunelab.trainables.pretrain import PretrainConfig, pretrain

    write_image_folder(folder / "imgs", {"cat": 6, "dog": 6, "owl": 6})
    (folder / "imgs_alias").symlink_to(folder / "imgs")
    pretrain(PretrainConfig(**TINY, task="supervised", dataset=f"imagefolder:{folder / 'imgs'}"),
             folder / "imgs.pt", quiet=True)


# ----------------------------------------------------------------------------- scenarios (start Ray)

def every_spelling_is_one_experiment(tmp_path: Path) -> None:
    """A real experiment, held by another writer: `resume` under every other spelling of it (`x`,
    `./x/`, a symlink, file://) is refused naming the holder, before Ray starts; `report` given all
    of those spellings counts its trials once. Nothing beside it or beside the alias is touched.
    tunelab runs in-process (the search on the shared test cluster, hence its file:// storage);
    the holder is another process."""
    import pytest

    from tests.in_process import tunelab
    from tunelab import cluster, driver

    made = tunelab("tune", "classifier", "--storage", (tmp_path / "runs").as_uri(), "--name", "x", "--num-samples",
                   "2", "--max-epochs", "1", "--search", "random", "--scheduler", "fifo", "--set", "image_size=8",
                   "--set", "width=8", cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "alias").symlink_to(tmp_path / "runs" / "x")
    (tmp_path / "elsewhere" / "canary.txt").write_text("precious")
    spellings = ["runs/x", "./runs/x/", "elsewhere/alias", f"file://{tmp_path}/runs/x",
                 f"file://{tmp_path}/elsewhere/alias/"]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from tunelab.experiment_lock import ExperimentLock\n"
        "lock = ExperimentLock(%r).acquire(); print('held', flush=True); time.sleep(600)"
    ) % (ROOT, str(tmp_path / "runs" / "x"))], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _snapshot(tmp_path)
        with pytest.MonkeyPatch.context() as patch:  # refused before Ray starts: it is not even joined
            patch.setattr(driver, "connect_ray", lambda address: pytest.fail("Ray must not start"))
            patch.setattr(cluster, "connect_ray", lambda address: pytest.fail("Ray must not start"))
            for spelling in spellings:
                refused = tunelab("resume", spelling, cwd=tmp_path, timeout=120)
                lines = refused.stderr.strip().splitlines()
                assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-3000:]
                assert f"is in use by pid {holder.pid}" in lines[0] and "runs/.x.lock" in lines[0], lines[0]
        assert _snapshot(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()
    report = tunelab("report", *spellings, "--out", "rep", "--json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = json.loads(report.stdout.strip().splitlines()[-1])["rows"]
    assert [row["trials"] for row in rows] == [2], rows
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["alias", "canary.txt"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}
