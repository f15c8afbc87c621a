"""The three members of the family, assembled from the same layers: Transformer, EncoderLM, DecoderLM."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import services
from .config import ModelConfig
from .embeddings import InputEmbedding, make_token_embedding
from .layers import ACTIVATION_FUNCTIONS, LayerCache, Stack
from .masks import as_key_mask, cached_self_mask, causal_mask, decoder_self_mask, memory_key_mask


class Attentions(dict):
    """Attention weights by kind ("encoder_self", "decoder_self", "cross"): lists over layers of
    (B, H, T_query, T_key) tensors. `attentions[i]` gives layer i's {kind: weights}."""

    def __getitem__(self, key: Any) -> Any:
        """attentions["cross"] -> list over layers; attentions[2] -> {kind: weights} of layer 2."""
        if isinstance(key, int):
            return {kind: layers[key] for kind, layers in self.items() if -len(layers) <= key < len(layers)}
        return super().__getitem__(key)


@dataclass
class ModelOutput:
    """Logits (B, T, vocab) and, when asked for, the attention weights of every layer and kind."""

    logits: Tensor
    attentions: Attentions


def select_positions(hidden: Tensor, positions: Tensor, ids: Tensor, name: str) -> Tensor:
    """Rows of hidden (B, T, d) at `positions`: a (B, T) bool mask like ids, or (N,) flat indices -> (N, d)."""
    if positions.dtype == torch.bool and positions.shape == ids.shape:
        return hidden[positions]  # a data-dependent size: the GPU reports N back
    if positions.dtype in (torch.int64, torch.int32) and positions.dim() == 1:
        return hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
    raise ValueError(f"positions must be a bool tensor shaped like {name} {tuple(ids.shape)} or a 1-D tensor of "
                     f"flat indices into its {ids.numel()} positions, got {positions.dtype} {tuple(positions.shape)}")


class TransformerBase(nn.Module):
    """What every model shares: its config, ids checks, weight init, parameter counts, saving."""

    model_type = ""

    def __init__(self, cfg: ModelConfig) -> None:
        """Store the config."""
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"expected a ModelConfig, got {type(cfg).__name__}: use aiayn.ModelConfig(...)")
        self.cfg = cfg

    def _init_linear_weights(self) -> None:
        """Xavier-uniform for every Linear weight, zero biases (as in the reference tensor2tensor code)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def output_table(self) -> Tensor:
        """The (vocab, d_model) pre-softmax weights: the token table when tied (§3.4), else lm_head's."""
        return self.token_embedding.weight if self.cfg.tie_embeddings else self.lm_head.weight

    def num_parameters(self) -> int:
        """Count every weight, bias and LayerNorm parameter once (tied tables counted once)."""
        return sum(p.numel() for p in self.parameters())

    _ids_trusted = False  # True inside ids_from_own_tokenizer()

    @contextmanager
    def ids_from_own_tokenizer(self) -> Iterator[None]:
        """Inside, forward skips the range check of id values (one GPU read-back per call): for callers whose
        ids come from this model's own tokenizer, such as the trainer. Shapes and dtypes are still checked."""
        previous, self._ids_trusted = self._ids_trusted, True
        try:
            yield
        finally:
            self._ids_trusted = previous

    def check_ids(self, ids: Tensor, name: str) -> None:
        """Raise a clear TypeError/ValueError unless ids is a (B, T) integer tensor of valid token ids."""
        if not isinstance(ids, Tensor):
            raise TypeError(f"{name} must be a torch.LongTensor of token ids (B, T), got {type(ids).__name__}")
        if ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{name} must hold integer token ids (torch.long), got {ids.dtype}; use ids.long()")
        if ids.dim() != 2:
            raise ValueError(f"{name} must have shape (batch, length), got {tuple(ids.shape)}; "
                             f"add a batch dimension with ids.unsqueeze(0)")
        if ids.shape[1] == 0:
            raise ValueError(f"{name} is empty (length 0): give at least one token")
        # The value check reads the ids back (a GPU sync) and would break a compiled graph: compiled code
        # skips it (an id out of range then fails inside the embedding lookup instead), and so does code
        # inside ids_from_own_tokenizer() (the trainer, whose ids its tokenizer made).
        if ids.numel() and not torch.compiler.is_compiling() and not self._ids_trusted:
            low, high = torch.stack(torch.aminmax(ids)).tolist()  # one read-back
            if low < 0 or high >= self.cfg.vocab_size:
                raise ValueError(f"{name} holds ids outside [0, vocab_size={self.cfg.vocab_size}): "
                                 f"min {low}, max {high}; check the tokenizer matches the model")
        if ids.shape[1] > self.cfg.max_positions and self.cfg.positions != "rotary":  # rotary: no table to overflow
            raise ValueError(f"{name} has length {ids.shape[1]} > max_positions={self.cfg.max_positions}: "
                             f"truncate the input or build the model with a larger max_positions")

    def save(self, path: str | Path, tokenizer: Any = None) -> Path:
        """Write config.json + model.safetensors (+ tokenizer.json) into folder `path`, atomically."""
        return services.provided("save_model")(self, path, tokenizer)


class Transformer(TransformerBase):
    """The paper's encoder-decoder (Figure 1): model(src, tgt_in) -> next-token logits (B, T, vocab)."""

    model_type = "transformer"

    def __init__(self, cfg: ModelConfig) -> None:
        """Embeddings, N encoder layers, N decoder layers and the pre-softmax projection."""
        super().__init__(cfg)
        # --8<-- [start:transformer-parts]
        if cfg.tie_embeddings:  # one table for source, target and output, §3.4
            self.token_embedding = make_token_embedding(cfg)
        else:
            self.src_token_embedding = make_token_embedding(cfg)
            self.tgt_token_embedding = make_token_embedding(cfg)
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.src_positions = InputEmbedding(cfg)
        self.tgt_positions = InputEmbedding(cfg)
        self.encoder = Stack(cfg, cfg.n_encoder_layers, cross_attention=False)
        self.decoder = Stack(cfg, cfg.n_decoder_layers, cross_attention=True)
        # --8<-- [end:transformer-parts]
        _add_final_logits_bias(self, cfg)
        self._init_linear_weights()

    def _src_tokens(self) -> nn.Embedding:
        return self.token_embedding if self.cfg.tie_embeddings else self.src_token_embedding

    def _tgt_tokens(self) -> nn.Embedding:
        return self.token_embedding if self.cfg.tie_embeddings else self.tgt_token_embedding

    def output_logits(self, hidden: Tensor) -> Tensor:
        """Pre-softmax projection (B, T, d) -> (B, T, vocab); the shared table when tied (§3.4)."""
        return F.linear(hidden, self.output_table(), self.final_logits_bias)  # bias None unless final_logits_bias

    def encode(self, src: Tensor, src_mask: Tensor | None = None, need_weights: bool = False) -> Any:
        """Encoder output ("memory") (B, S, d_model); with need_weights also the per-layer weights."""
        self.check_ids(src, "src")
        return self._encode(src, src_mask, need_weights)

    def _encode(self, src: Tensor, src_mask: Tensor | None = None, need_weights: bool = False) -> Any:
        """encode() without the ids check (forward checked them already)."""
        key_mask = as_key_mask(src_mask, src, self.cfg.pad_id, self.cfg.n_heads)  # (B, 1, 1, S)
        x = self.src_positions(self._src_tokens()(src))
        memory, weights = self.encoder(x, key_mask, need_weights=need_weights)
        return (memory, weights) if need_weights else memory

    def decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor | None = None,
               tgt_mask: Tensor | None = None, caches: list[LayerCache] | None = None, start: int = 0,
               need_weights: bool = False, src: Tensor | None = None) -> Any:
        """Decoder logits (B, T, vocab) for decoder input tgt given memory (B, S, d).

        src_mask is the (B, S) keep-mask of the source (or pass `src` to derive it from pad_id); of a 3-D or
        4-D source mask, cross-attention uses the key-padding part (the keys no source query may attend are
        hidden). With `caches`, tgt holds only the new positions, which start at position `start`, and
        tgt_mask, when given, covers every position so far: a (B, start + T) keep-mask or a
        (B, 1|H, T, start + T) attention mask.
        """
        self.check_ids(tgt, "tgt")
        if src_mask is None and src is not None:
            src_mask = src != self.cfg.pad_id
        return self._decode(tgt, memory, src_mask, tgt_mask, caches, start, need_weights)

    def _decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None, caches: list[LayerCache] | None = None, start: int = 0,
                need_weights: bool = False, hidden_only: bool = False) -> Any:
        """decode() without the ids checks (callers validated the ids once).

        hidden_only returns the decoder output (B, T, d) before the pre-softmax projection.
        """
        memory_mask = memory_key_mask(src_mask)  # (B, 1|H, 1, S) or None
        if caches is not None:  # incremental: tgt are the last T of start+T positions
            self_mask = cached_self_mask(tgt_mask, tgt.shape[1], start, tgt.device, self.cfg.n_heads)
        else:
            if tgt_mask is None and self.cfg.bos_id == self.cfg.pad_id:  # Marian starts with its pad id:
                tgt_mask = (tgt != self.cfg.pad_id).index_fill(1, tgt.new_zeros(1), True)  # BOS is no pad
            self_mask = decoder_self_mask(tgt_mask, tgt, self.cfg.pad_id, self.cfg.n_heads)  # (B, 1, T, T)
        x = self.tgt_positions(self._tgt_tokens()(tgt), start)
        hidden, weights = self.decoder(x, self_mask, memory, memory_mask, caches, need_weights)
        if hidden_only:
            return hidden
        logits = self.output_logits(hidden)
        return (logits, weights) if need_weights else logits

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None, tgt_mask: Tensor | None = None,
                return_attention: bool = False, positions: Tensor | None = None) -> Tensor | ModelOutput:
        """Teacher forcing: tgt is BOS + target shifted right; returns logits (B, T, vocab) for each step.

        Masks (True = may attend) default from pad_id: src_mask (B, S) (a (B, S, S) or (B, 1|H, S, S) one
        masks the encoder as given, and cross-attention by its key-padding part); tgt_mask (B, T) is combined
        with the causal mask, a (T, T) or (B, T, T) one is used as given. `positions`, a (B, T) bool
        tensor, returns logits (N, vocab) only where it is True: training scores no padding, so it
        skips the pre-softmax projection there (the largest matmul of a small model). A (N,) integer
        tensor of flat indices into the B*T positions selects the same rows without reading the mask back
        from a GPU (the trainer's batches carry them: Batch.scored).
        """
        self.check_ids(src, "src")
        self.check_ids(tgt, "tgt")
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"src has batch size {src.shape[0]} but tgt has {tgt.shape[0]}")
        src_keep = src_mask if src_mask is not None else src != self.cfg.pad_id
        if not return_attention:
            memory = self._encode(src, src_mask)
            hidden = self._decode(tgt, memory, src_keep, tgt_mask, hidden_only=True)  # (B, T, d)
            if positions is not None:
                hidden = select_positions(hidden, positions, tgt, "tgt")  # (N, d)
            return self.output_logits(hidden)
        memory, enc_w = self.encode(src, src_mask, need_weights=True)
        logits, dec_w = self.decode(tgt, memory, src_mask=src_keep, tgt_mask=tgt_mask, need_weights=True)
        if positions is not None:
            logits = select_positions(logits, positions, tgt, "tgt")  # (N, vocab)
        attentions = Attentions(encoder_self=[w["self"] for w in enc_w], decoder_self=[w["self"] for w in dec_w],
                                cross=[w["cross"] for w in dec_w])
        return ModelOutput(logits, attentions)

    def new_caches(self, capacity: int | None = None) -> list[LayerCache]:
        """Empty KV caches, one per decoder layer, for incremental decoding."""
        return [LayerCache(capacity) for _ in range(self.cfg.n_decoder_layers)]

    def decode_step(self, tokens: Tensor, memory: Tensor, memory_mask: Tensor | None, caches: list[LayerCache],
                    start: int) -> Tensor:
        """Decoder output (b, T, d) for the new tokens (b, T) at positions start.. on the caches (no ids checks:
        a search validates its source once); memory_mask is a (b, S) or (b, 1, 1, S) keep-mask or None."""
        return self._decode(tokens, memory, memory_mask, caches=caches, start=start, hidden_only=True)

    def step_projection(self) -> Callable[[Tensor], Tensor]:
        """Decoder output (b, T, d) -> logits (b, V) of its last position, for the steps of one search (§3.4).

        The (V, d) table is copied once into a contiguous (d, V) one: on CPUs the plain (b, d) @ (d, V)
        product beats the transposed-weight one F.linear runs. Made anew for each search, never kept: a
        fused optimizer changes weights without bumping their version counter, so a kept copy could be stale.
        A subclass that changes output_logits (or an lm_head with a bias) projects through output_logits.
        """
        lm_head = getattr(self, "lm_head", None)
        if type(self).output_logits is not Transformer.output_logits or (
                not self.cfg.tie_embeddings and lm_head is not None and lm_head.bias is not None):
            return lambda hidden: self.output_logits(hidden)[:, -1]
        table_t = self.output_table().detach().t().contiguous()  # (d, V)
        bias = self.final_logits_bias  # (V,) or None (cfg.final_logits_bias: Marian, BART)
        if bias is not None:
            return lambda hidden: torch.addmm(bias, hidden[:, -1], table_t)
        return lambda hidden: torch.mm(hidden[:, -1], table_t)

    @torch.no_grad()
    def generate(self, src: Tensor, beam_size: int = 4, length_penalty: float = 0.6,
                 max_new_tokens: int | None = None, **options: Any) -> list[list[int]]:
        """Translate each source row; token ids without BOS/EOS/padding. Defaults are §6.1's.

        beam_size=1 is greedy search; see aiayn.inference.decoding.generate_seq2seq for all options.
        """
        return services.provided("generate_seq2seq")(self, src, beam_size=beam_size, length_penalty=length_penalty,
                                                     max_new_tokens=max_new_tokens, **options)


class EncoderLM(TransformerBase):
    """BERT-style bidirectional encoder with a masked-LM head tied to the token embeddings."""

    model_type = "encoder_lm"

    def __init__(self, cfg: ModelConfig) -> None:
        """Embeddings, cfg.n_encoder_layers encoder layers and the MLM head."""
        super().__init__(cfg)
        self.token_embedding = make_token_embedding(cfg)
        self.positions = InputEmbedding(cfg)
        self.encoder = Stack(cfg, cfg.n_encoder_layers, cross_attention=False)
        # MLM head as in BERT: dense + activation + LayerNorm, then the (tied) vocabulary projection.
        self.mlm_dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.mlm_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        if not cfg.tie_embeddings:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self._init_linear_weights()

    def encode(self, ids: Tensor, mask: Tensor | None = None, need_weights: bool = False,
               token_types: Tensor | None = None) -> Any:
        """Hidden states (B, S, d_model); mask is the (B, S) keep-mask (default: ids != pad_id).

        token_types (B, S) are segment ids when cfg.type_vocab_size > 0 (BERT's token_type_ids).
        """
        self.check_ids(ids, "ids")
        key_mask = as_key_mask(mask, ids, self.cfg.pad_id, self.cfg.n_heads)
        x = self.positions(self.token_embedding(ids), token_types=token_types)  # (B, S, d)
        hidden, weights = self.encoder(x, key_mask, need_weights=need_weights)
        return (hidden, weights) if need_weights else hidden

    def forward(self, ids: Tensor, mask: Tensor | None = None, return_attention: bool = False,
                token_types: Tensor | None = None, positions: Tensor | None = None) -> Tensor | ModelOutput:
        """MLM logits (B, S, vocab) for every position; with `positions` ((B, S) bool or (N,) flat indices, as
        Transformer.forward takes) only there, (N, vocab): training scores only the chosen tokens."""
        hidden, weights = self.encode(ids, mask, need_weights=True, token_types=token_types) \
            if return_attention else (self.encode(ids, mask, token_types=token_types), None)
        if positions is not None:
            hidden = select_positions(hidden, positions, ids, "ids")  # (N, d): the head is per position
        h = self.mlm_norm(ACTIVATION_FUNCTIONS[self.cfg.activation](self.mlm_dense(hidden)))
        logits = F.linear(h, self.output_table(), self.mlm_bias)
        if not return_attention:
            return logits
        return ModelOutput(logits, Attentions(encoder_self=[w["self"] for w in weights]))


class DecoderLM(TransformerBase):
    """GPT-style causal decoder: no encoder, no cross-attention, LM head tied to the embeddings."""

    model_type = "decoder_lm"

    def __init__(self, cfg: ModelConfig) -> None:
        """Embeddings, cfg.n_decoder_layers causal layers and the tied output projection."""
        super().__init__(cfg)
        self.token_embedding = make_token_embedding(cfg)
        self.positions = InputEmbedding(cfg)
        self.decoder = Stack(cfg, cfg.n_decoder_layers, cross_attention=False)
        if not cfg.tie_embeddings:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        _add_final_logits_bias(self, cfg)
        self._init_linear_weights()

    def forward(self, ids: Tensor, mask: Tensor | None = None, return_attention: bool = False,
                caches: list[LayerCache] | None = None, start: int = 0) -> Tensor | ModelOutput:
        """Next-token logits (B, T, vocab); mask as Transformer's tgt_mask. With caches, ids are new tokens.

        Without a mask, ids equal to pad_id are hidden as keys, unless pad_id is also BOS or EOS
        (cfg.pad_is_token, as GPT-2's <|endoftext|>): then no id is padding and only a mask hides positions.
        With caches, mask covers every position so far: a (B, start + T) keep-mask (the cache does not
        remember which of its keys were padding) or a (B, 1|H, T, start + T) attention mask.
        """
        self.check_ids(ids, "ids")
        if start + ids.shape[1] > self.cfg.max_positions and self.cfg.positions != "rotary":
            raise ValueError(f"ids reach position {start + ids.shape[1]} > max_positions={self.cfg.max_positions}")
        return self._forward(ids, mask, return_attention, caches, start)

    def _forward(self, ids: Tensor, mask: Tensor | None = None, return_attention: bool = False,
                 caches: list[LayerCache] | None = None, start: int = 0) -> Tensor | ModelOutput:
        """forward() without the ids checks (callers validated the ids once)."""
        if caches is not None:
            self_mask = cached_self_mask(mask, ids.shape[1], start, ids.device, self.cfg.n_heads)
        elif mask is None and self.cfg.pad_is_token:  # no id is padding: causal only
            self_mask = causal_mask(ids.shape[1], device=ids.device)
        else:
            self_mask = decoder_self_mask(mask, ids, self.cfg.pad_id, self.cfg.n_heads)
        x = self.positions(self.token_embedding(ids), start)
        hidden, weights = self.decoder(x, self_mask, caches=caches, need_weights=return_attention)
        logits = F.linear(hidden, self.output_table(), self.final_logits_bias)  # (B, T, vocab)
        if not return_attention:
            return logits
        return ModelOutput(logits, Attentions(decoder_self=[w["self"] for w in weights]))

    def new_caches(self, capacity: int | None = None) -> list[LayerCache]:
        """Empty KV caches, one per layer."""
        return [LayerCache(capacity) for _ in range(self.cfg.n_decoder_layers)]

    def step(self, ids: Tensor, mask: Tensor | None, caches: list[LayerCache], start: int) -> Tensor:
        """Logits (b, T, vocab) for the new ids (b, T) at positions start.. on the caches (no ids checks: a
        search validates its prompts once); mask as forward's with caches."""
        return self._forward(ids, mask, caches=caches, start=start)

    @torch.no_grad()
    def generate(self, prompt_ids: Tensor, max_new_tokens: int = 100, **options: Any) -> list[list[int]]:
        """Continue each prompt row; returns only the new ids (stops at EOS). See decoding.generate_lm."""
        return services.provided("generate_lm")(self, prompt_ids, max_new_tokens=max_new_tokens, **options)


def _add_final_logits_bias(model: nn.Module, cfg: ModelConfig) -> None:
    """A fixed (vocab,) buffer added to the logits if cfg.final_logits_bias (Marian, BART), else None."""
    bias = torch.zeros(cfg.vocab_size) if cfg.final_logits_bias else None
    model.register_buffer("final_logits_bias", bias)
