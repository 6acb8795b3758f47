"""Security at the edges: no code runs from files a user is handed, no shell built from input."""
import re
from pathlib import Path

import pytest
import torch

from tunelab.core.errors import ConfigError
from tunelab.trainables.fileio import load_checkpoint_file

ROOT = Path(__file__).resolve().parents[2]


class Payload:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_checkpoints_are_loaded_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "extra": Payload()}, path)
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_checkpoint_file(path)


def test_pretrained_file_with_code_is_refused_through_the_cli(tmp_path, capsys):
    from tunelab.cli import main

    path = tmp_path / "evil.pt"
    torch.save({"kind": "tunelab-backbone", "backbone": Payload()}, path)
    assert main(["train", "finetune", "--set", f"pretrained={path}"]) == 2
    err = capsys.readouterr()
    assert "cannot be loaded" in err.err and "this would have run" not in err.out


def test_no_shell_commands_and_only_safe_yaml_in_the_code():
    sources = [p for d in ("tunelab", "trainables", "search_spaces", "analysis") for p in (ROOT / d).rglob("*.py")]
    assert sources
    for path in sources:
        text = path.read_text()
        assert "shell=True" not in text, path
        assert not re.search(r"\bos\.system\(|\bos\.popen\(", text), path
        assert not re.search(r"yaml\.load\(|yaml\.unsafe_load|yaml\.full_load", text), path
        assert not re.search(r"weights_only\s*=\s*False", text), path


def test_local_ray_is_started_without_a_public_dashboard():
    import inspect

    from tunelab import driver

    source = inspect.getsource(driver.connect_ray)
    assert 'include_dashboard=False' in source and 'dashboard_host="127.0.0.1"' in source
    assert "RAY_AUTH_MODE" not in inspect.getsource(driver)  # Ray's token authentication stays on
