"""The recurrent baseline of §4's comparison: a bidirectional-LSTM encoder and an LSTM decoder with attention.

The encoder-decoder the Transformer replaced, as Luong et al. 2015 ("Effective Approaches to Attention-based
Neural Machine Translation") and the GNMT / OpenNMT baselines build it from torch.nn.LSTM:

- encoder: a bidirectional LSTM stack, d_model / 2 per direction, over the (packed) source;
- decoder start: s_0 = tanh(W_s h_1<-), the backward encoder's state after the whole source (Bahdanau et al.
  2015, appendix A.2.2), for every decoder layer; cells start at zero;
- decoder: an LSTM stack whose input is the previous target token's embedding and, with input feeding
  (Luong §3.3), the previous attentional vector;
- global attention (Luong §3.1): score(h_t, h_s) = h_t^T W_a h_s ("general") or h_t^T h_s ("dot"), a softmax
  over the source, context c_t, and the attentional vector h~_t = tanh(W_c [c_t; h_t]) (Luong eq. 5);
- output: logits = h~_t E^T with the embedding table E shared by source, target and output (§3.4's tying).

It offers the model interface the translation trainer and aiayn.inference.decoding use (encode, forward with
`positions`, new_caches, decode_step, step_projection, generate), so the same batches, loss, checkpoints,
beam search and CLI serve it. The decoding cache holds each row's (h, c) and attentional vector, and each
source's attention keys; a beam search's reordering selects rows of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import services
from .config import RNNConfig
from .dropout import Dropout
from .models import Attentions, ModelOutput, TransformerBase, select_positions

INIT_RANGE = 0.1  # Luong et al. 2015, §4.1: every parameter uniform in [-0.1, 0.1]


class RowState:
    """Tensors of a search's state whose axis `dim` runs over its rows; reorder keeps rows `index`."""

    def __init__(self) -> None:
        """Empty until set."""
        self.tensors: list[Tensor] = []
        self.dims: tuple[int, ...] = ()

    def set(self, tensors: list[Tensor], dims: tuple[int, ...]) -> None:
        """Hold `tensors`, the rows of tensors[i] on axis dims[i]."""
        self.tensors, self.dims = tensors, dims

    def reorder(self, index: Tensor) -> None:
        """Keep rows `index` (a beam's parents, or the sentences still decoding), in that order."""
        self.tensors = [t.index_select(dim, index) for t, dim in zip(self.tensors, self.dims)]


class RecurrentCache:
    """A search's state: self_kv the decoder's per-row (h, c, attentional vector), cross_kv each source's keys.

    The names are the Transformer's LayerCache's, so the searches reorder both alike: self_kv by beam row
    (B*K rows), cross_kv by sentence (B rows).
    """

    def __init__(self) -> None:
        """Empty: the first decode_step starts it from the encoder output."""
        self.self_kv = RowState()
        self.cross_kv = RowState()

    @property
    def empty(self) -> bool:
        """True before the first step."""
        return not self.self_kv.tensors


def _key_mask(src_mask: Tensor | None) -> Tensor | None:
    """A (B, S) or (B, 1, 1, S) keep-mask of the source as (B, S), or None."""
    if src_mask is None or src_mask.dim() == 2:
        return src_mask
    if src_mask.dim() == 4 and src_mask.shape[1] == 1 and src_mask.shape[2] == 1:
        return src_mask[:, 0, 0, :]
    raise ValueError(f"the RNN takes a (B, S) or (B, 1, 1, S) source keep-mask (True = a token), got shape "
                     f"{tuple(src_mask.shape)}: it attends over source positions only, with no per-query mask")


class RecurrentSeq2Seq(TransformerBase):
    """Bidirectional-LSTM encoder, LSTM decoder with Luong attention and input feeding; ids in, logits out."""

    model_type = "rnn"

    def __init__(self, cfg: RNNConfig) -> None:
        """Embeddings, the two LSTM stacks, the attention's W_a and W_c, all uniform in [-0.1, 0.1]."""
        if not isinstance(cfg, RNNConfig):
            raise TypeError(f"RecurrentSeq2Seq needs an RNNConfig, got {type(cfg).__name__}: use "
                            f"aiayn.RNNConfig.preset('small', vocab_size=...) or RNNConfig(d_model=..., ...)")
        super().__init__(cfg)
        d, p = cfg.d_model, cfg.dropout
        self.token_embedding = nn.Embedding(cfg.vocab_size, d)
        if not cfg.tie_embeddings:  # separate source, target and output tables
            self.tgt_token_embedding = nn.Embedding(cfg.vocab_size, d)
            self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.encoder = nn.LSTM(d, d // 2, num_layers=cfg.n_encoder_layers, batch_first=True, bidirectional=True,
                               dropout=p if cfg.n_encoder_layers > 1 else 0.0)
        self.bridge = nn.Linear(d // 2, cfg.n_decoder_layers * d)  # W_s: backward state -> each layer's s_0
        self.decoder = nn.LSTM(2 * d if cfg.input_feeding else d, d, num_layers=cfg.n_decoder_layers,
                               batch_first=True, dropout=p if cfg.n_decoder_layers > 1 else 0.0)
        self.score = nn.Linear(d, d, bias=False) if cfg.attention == "general" else None  # W_a
        self.combine = nn.Linear(2 * d, d, bias=False)  # W_c of h~_t = tanh(W_c [c_t; h_t])
        self.dropout = Dropout(p)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -INIT_RANGE, INIT_RANGE)

    # --- pieces
    def _tgt_embedding(self) -> nn.Embedding:
        """The target table (the shared one unless tie_embeddings is off)."""
        return self.token_embedding if self.cfg.tie_embeddings else self.tgt_token_embedding

    def output_logits(self, hidden: Tensor) -> Tensor:
        """Attentional vectors (..., d) -> logits (..., vocab)."""
        table = self.token_embedding.weight if self.cfg.tie_embeddings else self.lm_head.weight
        return hidden @ table.t()

    def _keys(self, memory: Tensor) -> Tensor:
        """What each query is scored against: W_a h_s ("general") or h_s ("dot"), (B, S, d)."""
        return self.score(memory) if self.score is not None else memory

    def _initial_state(self, memory: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(h, c) (L, B, d) and the first fed attentional vector (B, d) from the encoder output (B, S, d).

        Position 0's backward half is the backward LSTM's state after reading the whole source (the input is
        packed, so padding never enters it): s_0 = tanh(W_s h_1<-) for every layer (Bahdanau et al. 2015, A.2.2).
        """
        batch, d, layers = memory.shape[0], self.cfg.d_model, self.cfg.n_decoder_layers
        h = torch.tanh(self.bridge(memory[:, 0, d // 2:])).view(batch, layers, d).transpose(0, 1).contiguous()
        return h, torch.zeros_like(h), memory.new_zeros(batch, d)

    def _attend(self, h: Tensor, keys: Tensor, memory: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor]:
        """Decoder states h (R, T, d), R = B*K rows (K beams per source) -> h~ (R, T, d) and weights (B, K*T, S).

        The K beams of a source share its keys and memory: their queries are folded into one (B, K*T, d) batch.
        """
        rows, steps, d = h.shape
        batch = memory.shape[0]
        query = h.reshape(batch, rows // batch * steps, d)  # (B, K*T, d)
        scores = query @ keys.transpose(1, 2)  # (B, K*T, S)
        if keep is not None:  # a row with no key left gets uniform weights, never NaN
            scores = scores.masked_fill(~keep[:, None, :], torch.finfo(scores.dtype).min)
        weights = scores.softmax(-1)
        context = (weights @ memory).reshape(rows, steps, d)  # c_t (R, T, d)
        return torch.tanh(self.combine(torch.cat([context, h], -1))), weights

    def _run_decoder(self, emb: Tensor, state: tuple[Tensor, Tensor, Tensor], keys: Tensor, memory: Tensor,
                     keep: Tensor | None) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor], list[Tensor]]:
        """Target embeddings (R, T, d) from `state` (h, c, fed vector) -> h~ after dropout (R, T, d), the new
        state and the attention weights ((B, K*t, S) per chunk).

        With input feeding each step waits for the last one's attentional vector (one LSTM call per position);
        without it the LSTM runs over all T positions in one call and attention over all of them at once.
        """
        h, c, fed = state
        if not self.cfg.input_feeding:
            top, (h, c) = self.decoder(emb, (h, c))  # (R, T, d)
            out, weights = self._attend(top, keys, memory, keep)
            out = self.dropout(out)
            return out, (h, c, out[:, -1]), [weights]
        outs, every_weights = [], []
        for t in range(emb.shape[1]):
            top, (h, c) = self.decoder(torch.cat([emb[:, t:t + 1], fed[:, None]], -1), (h, c))  # (R, 1, d)
            out, weights = self._attend(top, keys, memory, keep)
            out = self.dropout(out)  # the fed vector is the one the output sees (as OpenNMT's input feed)
            fed = out[:, 0]
            outs.append(out)
            every_weights.append(weights)
        return torch.cat(outs, 1), (h, c, fed), every_weights

    # --- the model interface
    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Encoder output (B, S, d_model): both directions' top-layer states; padding rows are zeros.

        src_mask is a (B, S) keep-mask (default: src != pad_id); padding must come after each row's tokens.
        """
        self.check_ids(src, "src")
        return self._encode(src, src_mask)

    def _encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """encode() without the ids check."""
        keep = _key_mask(src_mask)
        keep = src != self.cfg.pad_id if keep is None else keep
        lengths = keep.sum(1).clamp(min=1).cpu()  # (B,) on the host, as packing needs
        x = self.dropout(self.token_embedding(src))  # (B, S, d)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        memory, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=src.shape[1])
        return memory  # (B, S, d)

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None, tgt_mask: Tensor | None = None,
                return_attention: bool = False, positions: Tensor | None = None) -> Tensor | ModelOutput:
        """Teacher forcing: tgt is BOS + target shifted right; logits (B, T, vocab), or (N, vocab) at `positions`.

        As Transformer.forward: src_mask a (B, S) keep-mask; positions a (B, T) bool mask or (N,) flat indices.
        tgt_mask, a (B, T) keep-mask, changes nothing: each position sees only earlier ones, and padding comes
        after the tokens. return_attention gives the attention weights as one layer of "cross" (B, 1, T, S).
        """
        self.check_ids(src, "src")
        self.check_ids(tgt, "tgt")
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"src has batch size {src.shape[0]} but tgt has {tgt.shape[0]}")
        if tgt_mask is not None and tgt_mask.shape != tgt.shape:
            raise ValueError(f"the RNN takes tgt_mask only as a (B, T) keep-mask like tgt {tuple(tgt.shape)}, got "
                             f"{tuple(tgt_mask.shape)}: a recurrent decoder has no attention over the target")
        keep = _key_mask(src_mask)
        keep = src != self.cfg.pad_id if keep is None else keep
        memory = self._encode(src, keep)
        hidden, _, weights = self._run_decoder(self.dropout(self._tgt_embedding()(tgt)),
                                               self._initial_state(memory), self._keys(memory), memory, keep)
        if positions is not None:
            hidden = select_positions(hidden, positions, tgt, "tgt")  # (N, d)
        logits = self.output_logits(hidden)
        if not return_attention:
            return logits
        return ModelOutput(logits, Attentions(cross=[torch.cat(weights, 1)[:, None]]))  # (B, 1, T, S)

    def new_caches(self, capacity: int | None = None) -> list[RecurrentCache]:
        """An empty decoding state (one, whatever the layer count: nn.LSTM keeps its layers' states together)."""
        return [RecurrentCache()]

    def decode_step(self, tokens: Tensor, memory: Tensor, memory_mask: Tensor | None, caches: list[RecurrentCache],
                    start: int) -> Tensor:
        """Attentional vectors (R, T, d) for the new tokens (R, T) after the cached state; R = K rows per source
        of memory (B, S, d). memory_mask is a (B, S) or (B, 1, 1, S) keep-mask or None. No ids checks."""
        cache = caches[0]
        if cache.empty:  # the first step: every row starts from its source's encoder output
            beams = tokens.shape[0] // memory.shape[0]
            h, c, fed = self._initial_state(memory)
            cache.self_kv.set([h.repeat_interleave(beams, 1), c.repeat_interleave(beams, 1),
                               fed.repeat_interleave(beams, 0)], (1, 1, 0))
            cache.cross_kv.set([self._keys(memory)], (0,))
        h, c, fed = cache.self_kv.tensors
        out, (h, c, fed), _ = self._run_decoder(self._tgt_embedding()(tokens), (h, c, fed),
                                                cache.cross_kv.tensors[0], memory, _key_mask(memory_mask))
        cache.self_kv.set([h, c, fed], (1, 1, 0))
        return out

    def step_projection(self) -> Callable[[Tensor], Tensor]:
        """Attentional vectors (R, T, d) -> logits (R, V) of the last position, for the steps of one search."""
        table = self.token_embedding.weight if self.cfg.tie_embeddings else self.lm_head.weight
        table_t = table.detach().t().contiguous()  # (d, V)
        return lambda hidden: torch.mm(hidden[:, -1], table_t)

    @torch.no_grad()
    def generate(self, src: Tensor, beam_size: int = 4, length_penalty: float = 0.6,
                 max_new_tokens: int | None = None, **options: Any) -> list[list[int]]:
        """Translate each source row, as Transformer.generate (beam 4, alpha 0.6, max length S + 50 by default)."""
        return services.provided("generate_seq2seq")(self, src, beam_size=beam_size, length_penalty=length_penalty,
                                                     max_new_tokens=max_new_tokens, **options)
