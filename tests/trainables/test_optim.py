import math

import pytest
import torch

from tunelab.trainables.classifier import ClassifierConfig
from tunelab.trainables.optim import LRSchedule, build_optimizer, lr_factor


def _params():
    return [{"params": [torch.nn.Parameter(torch.zeros(3))]}]


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adagrad", torch.optim.Adagrad),
                                      ("rmsprop", torch.optim.RMSprop), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW)])
def test_optimizers_by_name_carry_lr_and_weight_decay(name, cls):
    opt = build_optimizer(_params(), ClassifierConfig(optimizer=name, lr=0.03, weight_decay=1e-3))
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.03 and opt.param_groups[0]["weight_decay"] == 1e-3


def test_sgd_momentum_and_nesterov():
    opt = build_optimizer(_params(), ClassifierConfig(optimizer="sgd", momentum=0.9, nesterov=True))
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["nesterov"] is True


def test_param_group_lr_overrides_the_default():
    groups = _params() + [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.5}]
    opt = build_optimizer(groups, ClassifierConfig(lr=0.01))
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.5]


@pytest.mark.parametrize("kwargs,progress,expected", [
    (dict(schedule="none"), 7.3, 1.0),
    (dict(schedule="step", step_size=3, gamma=0.5), 6.9, 0.25),
    (dict(schedule="multistep", milestones=(2, 5), gamma=0.1), 4.99, 0.1),
    (dict(schedule="multistep", milestones=(2, 5), gamma=0.1), 5.0, 0.01),
    (dict(schedule="exponential", gamma=0.9), 3.5, 0.9 ** 3),
    (dict(schedule="cosine", epochs=10), 5.0, 0.5),
    (dict(schedule="cosine", epochs=10, min_lr_factor=0.2), 10.0, 0.2),
    (dict(schedule="cosine", epochs=10), 2.5, 0.5 * (1 + math.cos(math.pi * 0.25))),
    (dict(schedule="none", warmup_epochs=2), 0.5, 0.25),
])
def test_lr_factor(kwargs, progress, expected):
    assert lr_factor(ClassifierConfig(**kwargs), progress) == pytest.approx(expected)


def test_seed_002_one_step_decay_is_multistep():
    cfg = ClassifierConfig(schedule="multistep", milestones=(11,), gamma=0.1, epochs=15)
    factors = [lr_factor(cfg, e) for e in range(15)]
    assert factors[:11] == [1.0] * 11 and factors[11:] == pytest.approx([0.1] * 4)


def test_schedule_state_resumes_on_the_same_curve():
    cfg = ClassifierConfig(schedule="cosine", epochs=4, warmup_epochs=1)
    a = LRSchedule(build_optimizer(_params(), cfg), cfg, steps_per_epoch=5)
    lrs = []
    for _ in range(20):
        a.step()
        lrs.append(a.current_lr())
    b = LRSchedule(build_optimizer(_params(), cfg), cfg, steps_per_epoch=5)
    for _ in range(8):
        b.step()
    c = LRSchedule(build_optimizer(_params(), cfg), cfg, steps_per_epoch=5)
    c.load_state_dict(b.state_dict())
    resumed = []
    for _ in range(12):
        c.step()
        resumed.append(c.current_lr())
    assert resumed == lrs[8:]
