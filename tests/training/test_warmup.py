"""The EFM warm-up (training.efm.warmup_epochs): the focus strength and top-k ratio that
reach the loss rise from "off" to their configured values over the first EFM epochs."""

from __future__ import annotations

import pytest
import torch

from efm_seg.efm import EFMLoss
from efm_seg.training.config import EFMSchedule
from tests.training.test_trainer import (
    CLASSES,
    EFM_LOSS,
    EFM_MAP,
    IGNORE,
    make_asymmetric_store,
    make_config,
    make_trainer,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_asymmetric_store(tmp_path_factory.mktemp("warmup") / "store")


def test_strength_rises_linearly_over_the_warm_up_epochs():
    schedule = EFMSchedule(enabled=True, start_epoch=3, warmup_epochs=3)
    assert [schedule.strength(e) for e in range(1, 8)] == [0, 0, 0.25, 0.5, 0.75, 1, 1]
    assert EFMSchedule(enabled=True, start_epoch=3).strength(3) == 1.0  # no warm-up: the paper
    assert "3-epoch warm-up" in schedule.describe()


def test_the_warmed_up_values_reach_the_loss(store):
    config = make_config(
        {"map": EFM_MAP, "loss": EFM_LOSS},
        epochs=4,
        efm={"enabled": True, "source": "online", "start_epoch": 2, "every": 1,
             "warmup_epochs": 2},
    )  # fmt: skip
    trainer = make_trainer(store, config)
    criterion = trainer.criterion
    forward = criterion.forward
    calls = []

    def recorded(logits, masks, efm=None):
        loss = forward(logits, masks, efm)
        calls.append(
            (trainer.state.epoch + 1, criterion.alpha_f, criterion.topk_ratio,
             logits.detach().clone(), masks.clone(), efm, float(loss.detach()))
        )  # fmt: skip
        return loss

    criterion.forward = recorded
    trainer.fit()
    alpha_f, topk = EFM_LOSS["alpha_f"], EFM_LOSS["topk_ratio"]
    expected = {
        2: (alpha_f / 3, 1 - (1 - topk) / 3),
        3: (2 * alpha_f / 3, 1 - 2 * (1 - topk) / 3),
        4: (alpha_f, topk),
    }
    for epoch, (want_alpha, want_topk) in expected.items():
        seen = [(a, k) for e, a, k, *_ in calls if e == epoch]
        assert seen and all(s == pytest.approx((want_alpha, want_topk)) for s in seen), epoch
    # The loss computed is EFMLoss with those values, not the configured ones.
    epoch, a, k, logits, masks, efm, loss = next(c for c in calls if c[0] == 2)
    ramped = EFMLoss(
        len(CLASSES), ignore_index=IGNORE, **(EFM_LOSS | {"alpha_f": a, "topk_ratio": k})
    )
    full = EFMLoss(len(CLASSES), ignore_index=IGNORE, **EFM_LOSS)
    assert loss == pytest.approx(float(ramped(logits, masks, efm)), rel=1e-6)
    assert loss != pytest.approx(float(full(logits, masks, efm)), rel=1e-4)
    assert torch.is_tensor(efm)
