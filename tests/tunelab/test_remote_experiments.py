"""An existing experiment on object storage is ours to protect as one on disk: `tune` onto it is
refused, `--overwrite` replaces only a tunelab experiment and deletes only what tunelab and Ray
wrote. Against moto's real S3 server on 127.0.0.1, without Ray."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import S3_SECRET
from tunelab.core.errors import ConfigError
from tunelab.core.storage import join_uri

pytestmark = pytest.mark.long  # a real S3 server

OLD_EXPERIMENT = Path(__file__).resolve().parents[1] / "data" / "experiment-0.1.0"
FOREIGN = {"notes.txt": b"mine", "classifier_a05b73bf/mine.txt": b"also mine", "other/thing.bin": b"\0",
           "classifier_0000abcd/params.json/inner.txt": b"below a name Ray uses for a file: mine"}


def _put(experiment: str, files: dict[str, bytes]) -> None:
    from tunelab.core.storage import remote_filesystem

    fs, root = remote_filesystem(experiment)
    for relative, data in files.items():
        with fs.open_output_stream(f"{root.rstrip('/')}/{relative}") as handle:
            handle.write(data)


def _listed(experiment: str) -> list[str]:
    from tunelab.remote_experiments import stored_files

    return stored_files(experiment)[2]


def _old_experiment_files() -> dict[str, bytes]:
    return {str(p.relative_to(OLD_EXPERIMENT)): p.read_bytes() for p in OLD_EXPERIMENT.rglob("*") if p.is_file()}


def _tune(storage: str, *extra: str) -> list[str]:
    return ["tune", "classifier", "--dataset", "digits", "--num-samples", "1", "--max-epochs", "1",
            "--storage", storage, "--name", "exp", *extra]


def test_tune_onto_an_existing_object_store_experiment_is_refused_before_ray_starts(s3_server, capsys,
                                                                                   ray_must_not_start):
    from tunelab.cli import main

    experiment = join_uri(s3_server, "exp")
    _put(experiment, _old_experiment_files())
    before = _listed(experiment)
    capsys.readouterr()

    code = main(_tune(s3_server))

    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "already exists; continue it with `tunelab resume 's3://AKID:***@bkt/runs/exp?" in lines[0]
    assert "--overwrite" in lines[0] and S3_SECRET not in lines[0]
    assert _listed(experiment) == before


def test_overwrite_refuses_a_prefix_that_is_not_a_tunelab_experiment(s3_server, capsys, ray_must_not_start):
    from tunelab.cli import main

    experiment = join_uri(s3_server, "exp")
    _put(experiment, FOREIGN)
    capsys.readouterr()

    code = main(_tune(s3_server, "--overwrite"))

    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "--overwrite refused" in lines[0] and "is not a tunelab experiment (no tunelab.json)" in lines[0]
    assert _listed(experiment) == sorted(FOREIGN)


def test_overwrite_deletes_only_what_tunelab_and_ray_wrote(s3_server, capsys):
    from tunelab.experiments import prepare_folder

    experiment = join_uri(s3_server, "exp")
    _put(experiment, {**_old_experiment_files(), **FOREIGN})
    assert "classifier_a05b73bf/checkpoint_000000/checkpoint.pt" in _listed(experiment)
    # beside it, named as an experiment's files: a sibling experiment, a prefix that starts alike,
    # and the storage itself
    neighbours = {name: _old_experiment_files() for name in ("exp2", "exp.bak")}
    for name, files in neighbours.items():
        _put(join_uri(s3_server, name), files)
    _put(s3_server, {"tunelab.json": b"mine", "experiment_state-x.json": b"mine"})
    storage_before = _listed(s3_server)

    prepare_folder(experiment, overwrite=True)

    assert _listed(experiment) == sorted(FOREIGN)
    assert [f for f in _listed(s3_server) if not f.startswith("exp/")] == \
        [f for f in storage_before if not f.startswith("exp/")]
    err = capsys.readouterr().err
    assert "kept 4 item(s) that tunelab did not write" in err and S3_SECRET not in err


def test_an_unreachable_store_is_refused_in_one_line():
    from tests.conftest import free_port
    from tunelab.remote_experiments import check_free

    nobody = free_port()  # nothing listens there
    with pytest.raises(ConfigError, match="cannot be reached") as refused:
        check_free(f"s3://AKID:pw@bkt/runs/exp?endpoint_override=127.0.0.1:{nobody}&scheme=http&region=us-east-1",
                   overwrite=False)
    assert "pw" not in str(refused.value) and len(str(refused.value).splitlines()) == 1


def test_a_missing_prefix_is_free(s3_server):
    from tunelab.remote_experiments import check_free

    check_free(join_uri(s3_server, "never-made"), overwrite=False)
    check_free(join_uri(s3_server, "never-made"), overwrite=True)
