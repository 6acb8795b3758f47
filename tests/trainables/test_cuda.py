"""The CUDA path (bf16 autocast, channels_last, the per-trial memory cap) on a real GPU.

Skipped where no CUDA GPU is visible, which is CI; run on a GPU machine with
`pytest tests/trainables/test_cuda.py` (benchmarks/gpu.md gives the last run's machine and output).
The CPU suite already forces the same code paths on the CPU (engine.prepare's `gpu_path`); these
check what only a GPU shows: that each method's tensors really live on the device, that bf16 and
channels_last train as well as fp32, and that `gpu_memory_fraction` really caps the process.
"""
import dataclasses
import math

import pytest
import torch

from tunelab.trainables.arcface import ArcFaceConfig, ArcFaceMethod
from tunelab.trainables.classifier import Classifier, ClassifierConfig
from tunelab.trainables.configs import DataOptions
from tunelab.trainables.data import load_dataset
from tunelab.trainables.engine import prepare, train
from tunelab.trainables.finetune import AdaRand, AdaRandConfig, FineTune, FinetuneConfig, RandReg, RandRegConfig
from tunelab.trainables.pretrain import PretrainConfig, pretrain
from tunelab.trainables.reporting import LocalReporter

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU = dict(image_size=16, width=16, epochs=4, batch_size=128, device="cuda")


@pytest.fixture(scope="module")
def digits16():
    return load_dataset(DataOptions(dataset="digits", image_size=16))


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, digits16):
    path = tmp_path_factory.mktemp("pre") / "r18.pt"
    pretrain(PretrainConfig(**{**GPU, "epochs": 2}), path, quiet=True)
    return str(path)


def _history(method, config, data):
    reporter = LocalReporter(None, {}, quiet=True)
    train(method, config, reporter, data=data)
    return reporter.history


def _finite(row):
    return all(math.isfinite(v) for v in row.values() if isinstance(v, float))


def test_classifier_on_cuda_runs_in_bf16_and_channels_last_and_learns(digits16):
    run = prepare(Classifier(), ClassifierConfig(**GPU), digits16)
    assert run.autocast and run.device.type == "cuda"
    assert all(p.is_cuda for p in run.model.parameters())
    conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    history = _history(Classifier(), ClassifierConfig(**GPU), digits16)
    assert _finite(history[-1]) and history[-1]["val/acc"] > 0.8  # 10 classes: chance is 0.1


def test_bf16_channels_last_learns_as_well_as_fp32(digits16):
    fast = _history(Classifier(), ClassifierConfig(**GPU), digits16)[-1]["val/acc"]
    plain = _history(Classifier(), ClassifierConfig(**GPU, bf16=False, channels_last=False), digits16)[-1]["val/acc"]
    assert abs(fast - plain) < 0.05, (fast, plain)


@pytest.mark.parametrize("method,config_class", [(ArcFaceMethod(), ArcFaceConfig), (FineTune(), FinetuneConfig),
                                                 (RandReg(), RandRegConfig), (AdaRand(), AdaRandConfig)],
                         ids=["arcface", "finetune", "randreg", "adarand"])
def test_every_other_method_trains_on_cuda(digits16, backbone, method, config_class):
    extra = {"n_feats": 32} if config_class is ArcFaceConfig else {"pretrained": backbone}
    config = config_class(**{**GPU, "epochs": 2}, **extra)
    run = prepare(method, config, digits16)
    assert all(t.is_cuda for t in run.model.parameters())
    assert all(t.is_cuda for t in method_tensors(run.method))  # AdaRand's prior, RandReg's statistics
    history = _history(method, config, digits16)
    assert _finite(history[-1]) and history[-1]["val/acc"] > 0.2, history[-1]  # chance: 0.1


def method_tensors(method):
    return [v for v in vars(method).values() if isinstance(v, torch.Tensor)] + \
           [p for v in vars(method).values() if isinstance(v, torch.nn.Module) for p in v.parameters()]


def test_compiled_model_trains_on_cuda_as_the_eager_one_does(digits16):
    compiled = _history(Classifier(), ClassifierConfig(**GPU, compile=True), digits16)[-1]
    eager = _history(Classifier(), ClassifierConfig(**GPU), digits16)[-1]
    assert _finite(compiled) and compiled["val/acc"] > 0.8 and abs(compiled["val/acc"] - eager["val/acc"]) < 0.05


def test_gpu_memory_fraction_caps_what_the_process_may_allocate(digits16):
    total = torch.cuda.get_device_properties(0).total_memory
    prepare(Classifier(), ClassifierConfig(**GPU, gpu_memory_fraction=0.25), digits16)
    try:
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(int(total * 0.3), dtype=torch.uint8, device="cuda")
        block = torch.empty(int(total * 0.2), dtype=torch.uint8, device="cuda")  # under the cap: allowed
        del block
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


def test_same_seed_on_cuda_gives_close_metrics(digits16):
    """cudnn.benchmark picks kernels by timing, so two CUDA runs need not match to the bit (the
    manual, docs/how-to/clusters-and-gpus.md, says exact repetition is a CPU promise); they must
    still agree closely."""
    config = ClassifierConfig(**GPU)
    a = _history(Classifier(), config, digits16)[-1]
    b = _history(Classifier(), dataclasses.replace(config), digits16)[-1]
    print(f"cuda repeat: val/acc {a['val/acc']} vs {b['val/acc']}, train/loss {a['train/loss']} vs {b['train/loss']}")
    assert abs(a["val/acc"] - b["val/acc"]) < 0.03
