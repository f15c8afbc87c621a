"""Precision: which dtype each setting picks, and bf16 autocast giving the fp32 loss to bf16 accuracy."""

import pytest
import torch
import torch.nn.functional as F

from aiayn import ModelConfig, Transformer
from aiayn.runtime.precision import autocast, autocast_dtype, cpu_has_fast_bf16

CPU = torch.device("cpu")


def test_settings_pick_the_documented_dtype():
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    assert autocast_dtype("auto", CPU) is (torch.bfloat16 if cpu_has_fast_bf16() else None)
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype("fp8", CPU)


def test_bf16_autocast_loss_and_gradients_track_fp32():
    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny", dropout=0.0))
    src, tgt = torch.randint(3, 64, (4, 9)), torch.randint(3, 64, (4, 7))
    labels = torch.randint(3, 64, (4, 7))
    losses, grads = [], []
    for dtype in (None, torch.bfloat16):
        model.zero_grad()
        with autocast(CPU, dtype):
            logits = model(src, tgt)
        if dtype is not None:
            assert logits.dtype == torch.bfloat16  # the matmuls really ran in bf16
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), label_smoothing=0.1)
        loss.backward()
        losses.append(loss.item())
        grads.append(model.token_embedding.weight.grad.clone())
    assert losses[1] == pytest.approx(losses[0], rel=2e-2)
    cosine = F.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0)
    assert cosine > 0.99
