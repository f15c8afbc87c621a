"""Exact rewrites of a model into an equivalent one with other options, so that another runtime can hold it.

Each function returns a new model whose outputs equal the input model's for every input (up to the order of
floating-point sums): the options differ, the function computed does not. to_huggingface applies them when
a Hugging Face family fixes an option that the model has set otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..model.config import ModelConfig
from ..model.embeddings import sinusoidal_table
from ..model.models import Transformer, TransformerBase

# Where each tensor has a d_model axis that lives in the residual stream (the space every layer reads from and
# adds to), by the end of its name: the input axis (columns) or the output axis (rows).
_RESIDUAL_INPUT = ("token_embedding.weight", "lm_head.weight", "positions.learned.weight",
                   "positions.token_types.weight", "in_proj.weight", "linear1.weight", "mlm_dense.weight")
_RESIDUAL_OUTPUT = ("out_proj.weight", "out_proj.bias", "linear2.weight", "linear2.bias", "mlm_dense.weight",
                    "mlm_dense.bias", "norm.weight", "norm.bias")
# Tensors without a residual axis: per-head Q/K/V biases, the FFN's inner bias, vocabulary-sized biases.
_NO_RESIDUAL_AXIS = ("in_proj.bias", "linear1.bias", "mlm_bias", "final_logits_bias")


def _rebuilt(model: TransformerBase, cfg: ModelConfig, state: dict[str, Tensor]) -> TransformerBase:
    """A model of model's class with config cfg and weights state, in model's train/eval mode."""
    new = type(model)(cfg)
    new.load_state_dict(state)
    return new.train(model.training)


def _state(model: TransformerBase) -> dict[str, Tensor]:
    """A detached copy of the model's state dict (the rewrites never touch the original)."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def permute_model_dim(model: TransformerBase, order: Tensor) -> TransformerBase:
    """The model whose hidden vectors are the old ones' components in `order`: h_new = h_old[..., order].

    Exact: with P the permutation matrix, every weight that reads the residual stream becomes W P^T (columns
    permuted), every weight, bias and LayerNorm gain/bias that writes it becomes P W (rows permuted), and
    embedding tables are permuted like the vectors they hold. LayerNorm's mean and variance do not depend on
    the order of the components, residual additions and element-wise activations commute with P, and every
    read of a permuted output undoes it (W P^T P h = W h). So each sub-layer sees the same numbers in a
    different order, attention scores and logits are unchanged. A fixed sinusoid table is not a weight and
    stays as it is: with sinusoidal positions only an order that maps it onto another layout's table is
    exact (to_halves_layout).
    """
    d = model.cfg.d_model
    if sorted(order.tolist()) != list(range(d)):
        raise ValueError(f"order must be a permutation of range(d_model={d})")
    state = _state(model)
    for name, tensor in state.items():
        rows, columns = name.endswith(_RESIDUAL_OUTPUT), name.endswith(_RESIDUAL_INPUT)
        if not (rows or columns or name.endswith(_NO_RESIDUAL_AXIS)):
            raise AssertionError(f"permute_model_dim does not know the axes of {name}: please report this")
        if rows:
            tensor = tensor[order]
        if columns:
            tensor = tensor[:, order]
        state[name] = tensor.contiguous()
    return _rebuilt(model, model.cfg, state)


def to_halves_layout(model: TransformerBase) -> TransformerBase:
    """A model with interleaved sinusoids (§3.5) as one with Marian's layout (all sines, then all cosines).

    aiayn's table puts sin(pos * w_i) in column 2i and cos(pos * w_i) in column 2i+1; Marian's puts sin in
    column i and cos in column ceil(d/2)+i. Taking the even columns then the odd ones (order [0, 2, 4, ...,
    1, 3, 5, ...]) turns the first table into the second, so permute_model_dim with that order is exact.
    """
    cfg = model.cfg
    if cfg.positions != "sinusoidal" or cfg.sinusoid_layout != "interleaved":
        raise ValueError("to_halves_layout needs positions='sinusoidal' and sinusoid_layout='interleaved'")
    order = torch.cat([torch.arange(0, cfg.d_model, 2), torch.arange(1, cfg.d_model, 2)])  # (d_model,)
    permuted = permute_model_dim(model, order)
    return _rebuilt(model, cfg.replace(sinusoid_layout="halves"), permuted.state_dict())


def as_learned_positions(model: TransformerBase, offset: int = 0) -> TransformerBase:
    """The same positions as a learned table that position p reads at row p + offset (rows below: zeros).

    Exact: a fixed sinusoid table is a table like any other, and rows before `offset` are never read.
    """
    cfg = model.cfg
    state = _state(model)
    prefixes = ("src_positions.", "tgt_positions.") if isinstance(model, Transformer) else ("positions.",)
    for prefix in prefixes:
        old = sinusoidal_table(cfg.max_positions + cfg.position_offset, cfg.d_model, cfg.sinusoid_layout) \
            if cfg.positions == "sinusoidal" else state[f"{prefix}learned.weight"]  # (rows, d)
        table = old.new_zeros(cfg.max_positions + offset, cfg.d_model)  # (max_positions + offset, d)
        table[offset:] = old[cfg.position_offset:cfg.position_offset + cfg.max_positions]
        state[f"{prefix}learned.weight"] = table
    return _rebuilt(model, cfg.replace(positions="learned", position_offset=offset), state)


def fold_embedding_scale(model: TransformerBase) -> TransformerBase:
    """A model that scales token embeddings by sqrt(d_model) (§3.4) as one whose table holds them scaled.

    Exact: the input table becomes E * sqrt(d_model), the same product the model computes at every lookup.
    A tied output projection must keep E itself, so the tables are untied (lm_head holds E): the file
    grows by one vocabulary x d_model table.
    """
    cfg = model.cfg
    if not cfg.scale_embeddings:
        raise ValueError("fold_embedding_scale needs scale_embeddings=True")
    scale = math.sqrt(cfg.d_model)
    state = _state(model)
    if isinstance(model, Transformer):
        if cfg.tie_embeddings:
            table = state.pop("token_embedding.weight")
            state["src_token_embedding.weight"], state["tgt_token_embedding.weight"] = table, table.clone()
            state["lm_head.weight"] = table.clone()
        for name in ("src_token_embedding.weight", "tgt_token_embedding.weight"):
            state[name] = state[name] * scale
    else:
        if cfg.tie_embeddings:
            state["lm_head.weight"] = state["token_embedding.weight"].clone()
        state["token_embedding.weight"] = state["token_embedding.weight"] * scale
    return _rebuilt(model, cfg.replace(scale_embeddings=False, tie_embeddings=False), state)
