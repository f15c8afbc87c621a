"""Shared fixtures: small models with fixed seeds, in eval mode unless a test trains them."""

import pytest
import torch

import aiayn


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_cfg() -> aiayn.ModelConfig:
    return aiayn.ModelConfig.preset("tiny", dropout=0.0)


def random_ids(batch: int, length: int, vocab: int = 64, low: int = 3) -> torch.Tensor:
    """Ids of real tokens (never pad/bos/eos)."""
    return torch.randint(low, vocab, (batch, length))
