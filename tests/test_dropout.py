"""Dropout with cheap masks: the drop rate, the scaling, the gradient, eval mode."""

import pytest
import torch

from aiayn.model.dropout import Dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_keep_mask_rate(p):
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([1000, 1001]), p, torch.device("cpu"))
    assert mask.shape == (1000, 1001) and mask.dtype == torch.bool
    assert 1 - mask.float().mean().item() == pytest.approx(p, abs=0.002)


def test_dropout_scales_kept_values_and_gradients_use_the_same_mask():
    layer = Dropout(0.25).train()
    x = torch.randn(64, 128, requires_grad=True)
    y = layer(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.75)
    assert torch.allclose(x.detach().mean(), y.detach().mean(), atol=0.05)


def test_the_scale_is_one_over_the_kept_share_actually_used():
    """p = 0.1 drops with probability 6554/65536 = 0.1000061: the kept values are scaled by 1/(1 - that), so the
    expected output is the input exactly (1/(1 - 0.1) would leave a bias of 6.8e-6)."""
    layer = Dropout(0.1).train()
    x = torch.ones(32, 64, dtype=torch.float64)
    y = layer(x)
    dropped = 6554 / 65536
    assert y[y != 0].unique().tolist() == [1 / (1 - dropped)]
    assert 1 / (1 - dropped) != 1 / (1 - 0.1)


def test_eval_mode_and_zero_rate_are_identity():
    x = torch.randn(4, 5)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)
