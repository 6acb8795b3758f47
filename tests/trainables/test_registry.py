"""One test over everything registered: every method trains and reports its metrics (also on the
CUDA code path, run on the CPU), every dataset loads. A new method or dataset is picked up here
without editing this file (a dataset needs a tiny fixture below, which the last test demands)."""
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import write_cifar10, write_cifar100, write_image_folder
from tunelab.trainables import METHOD_CLASSES
from tunelab.core import metrics as M
from tunelab.trainables.config import build_config, field_names
from tunelab.trainables.configs import DataOptions
from tunelab.trainables.data import dataset_names, load_dataset
from tunelab.trainables.engine import prepare, train
from tunelab.trainables.reporting import LocalReporter

TINY = dict(image_size=8, width=8, epochs=1, batch_size=128, eval_batch_size=512, device="cpu")


@pytest.fixture(scope="module")
def digits8():
    return load_dataset(DataOptions(dataset="digits", image_size=8))


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A random-init backbone file for every architecture a method defaults to (no pretraining needed)."""
    from tunelab.trainables.models import ModelOptions, build_model
    from tunelab.trainables.backbone_cache import BACKBONE_KIND

    folder = tmp_path_factory.mktemp("backbones")

    def path_for(model: str) -> str:
        path = folder / f"{model}.pt"
        if not path.exists():
            net = build_model(ModelOptions(name=model, width=TINY["width"]), 10)
            # never trained: its source record names no images the target could share
            torch.save({"kind": BACKBONE_KIND, "model_name": model, "backbone": net.backbone.state_dict(),
                        "source": {"dataset": "none (random init)", "task": "none"}}, path)
        return str(path)
    return path_for


def _config(name: str, backbone, **extra):
    cls = METHOD_CLASSES[name].config_class
    values = {**TINY, **extra}
    if "pretrained" in field_names(cls):
        values["pretrained"] = backbone(build_config(cls, {}).model)
    return build_config(cls, values)


def _run(name, data, backbone, gpu_path=None, **extra):
    method = METHOD_CLASSES[name]()
    reporter = LocalReporter(None, {}, quiet=True)
    train(method, _config(name, backbone, **extra), reporter, data=data, gpu_path=gpu_path)
    return method, reporter.history[-1]


@pytest.mark.parametrize("name", list(METHOD_CLASSES))
def test_every_method_trains_and_reports_its_metrics(name, digits8, backbone):
    method, metrics = _run(name, digits8, backbone)
    assert set(M.CONTRACT_METRICS) <= set(method.reports)
    missing = [m for m in method.reports if m not in metrics]
    assert not missing, f"{name} did not report {missing}"
    assert all(math.isfinite(metrics[m]) for m in method.reports), metrics
    assert not any(M.on_split(k, "test") for k in metrics), "test metrics appeared during training"


@pytest.mark.parametrize("name", list(METHOD_CLASSES))
def test_every_method_runs_the_cuda_code_path_on_the_cpu(name, digits8, backbone):
    # bf16 autocast and channels_last as on CUDA: dtype and layout bugs surface here without a GPU.
    run = prepare(METHOD_CLASSES[name](), _config(name, backbone), digits8, gpu_path=True)
    assert run.autocast
    convs = [m.weight for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    _, fast = _run(name, digits8, backbone, gpu_path=True)
    _, plain = _run(name, digits8, backbone, gpu_path=False)
    for metric in METHOD_CLASSES[name].reports:
        assert math.isfinite(fast[metric]), (metric, fast)
    # one epoch from the same seed: bf16 rounding moves the numbers a little, not a lot
    assert fast[M.TRAIN_LOSS] == pytest.approx(plain[M.TRAIN_LOSS], rel=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(METHOD_CLASSES))
def test_every_method_trains_compiled(name, digits8, backbone):
    _, metrics = _run(name, digits8, backbone, compile=True)
    assert all(math.isfinite(metrics[m]) for m in METHOD_CLASSES[name].reports)


def _tiny_dataset(kind: str, root: Path) -> DataOptions:
    if kind == "digits":
        return DataOptions(dataset="digits", image_size=8)
    if kind == "cifar10":
        write_cifar10(root / "cifar-10-batches-py")
        return DataOptions(dataset="cifar10", data_dir=str(root), image_size=8)
    if kind == "cifar100":
        write_cifar100(root / "cifar-100-python")
        return DataOptions(dataset="cifar100", data_dir=str(root), image_size=8)
    if kind == "imagefolder:PATH":
        write_image_folder(root / "folder", {"cat": 6, "dog": 6, "owl": 6})
        return DataOptions(dataset=f"imagefolder:{root / 'folder'}", image_size=8)
    pytest.fail(f"dataset {kind!r} is registered but has no tiny fixture in {__file__}")


@pytest.mark.parametrize("kind", dataset_names())
def test_every_dataset_loads_with_disjoint_stratified_splits(kind, tmp_path):
    bundle = load_dataset(_tiny_dataset(kind, tmp_path))
    assert bundle.num_classes >= 2 and bundle.image_size == 8
    for split in (bundle.train, bundle.val, bundle.test):
        assert len(split) > 0 and split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 8, 8)
        assert int(split.labels.min()) >= 0 and int(split.labels.max()) < bundle.num_classes
    assert len(bundle.mean) == 3 and all(s > 0 for s in bundle.std)


def test_the_catalog_the_command_line_checks_is_exactly_what_is_registered():
    """tunelab.trainables.catalog and METHOD_SPECS list names without importing torch; every listed name has
    its builder, loader or method class, and nothing is registered that they do not list."""
    from tunelab.trainables import catalog
    from tunelab.trainables.configs import METHOD_SPECS
    from tunelab.trainables.data import _LOADERS
    from tunelab.trainables.engine import METHOD_REGISTRY
    from tunelab.trainables.models import _REGISTRY

    assert sorted(_REGISTRY) == catalog.model_names()
    assert list(_LOADERS) == list(catalog.DATASETS)
    assert list(METHOD_CLASSES) == list(METHOD_SPECS) and set(METHOD_REGISTRY) == set(METHOD_SPECS)
    for name, spec in METHOD_SPECS.items():
        assert METHOD_CLASSES[name].config_class is spec.config_class
        assert METHOD_CLASSES[name].__module__ == spec.module


def test_a_builder_the_catalog_does_not_list_is_refused_when_registered():
    from tunelab.trainables.models import register_model

    with pytest.raises(KeyError, match="not listed in tunelab.trainables.catalog"):
        register_model("not_in_the_catalog")(lambda options, num_classes: None)
