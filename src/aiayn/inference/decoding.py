"""Decoding on the KV cache: greedy search, beam search (§6.1) and sampling, for Transformer and DecoderLM.

One search loop per strategy (_greedy_or_sample, _beam_search) runs over a Steps object
(inference.protocols.Steps): the translators' _Seq2SeqSteps (the decoder on the newest token, each layer's
self-attention keys/values appended to a preallocated cache, the cross-attention keys/values projected once
per source) and the language models' _LMSteps (the prompt in one pass, then the newest token). So the
DecoderLM gets beam search too. Inputs are validated once up front; the steps skip the checks.

Policies (the same for every search):
- Maximum output length: source length + 50 for each sentence (§6.1), or `max_new_tokens` when given;
  never past the model's `max_positions` decoder positions.
- A source longer than `max_positions`, an empty source (length 0) or a source row of padding only
  raises ValueError naming the row and the fix; nothing is truncated silently.
- Results are token ids without BOS, EOS or padding, one list per source row, in order.
- Finished sentences leave the batch (their cache rows are dropped), so a sentence gets the same result
  decoded alone or in a batch with longer and shorter ones.
- Threads: torch's intra-op count, or option `threads` for this search (restored after it).
- Every keyword is declared in inference/options.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..model import services
from ..model.layers import LayerCache
from .options import DEPRECATED, LM, OPTIONS, REMOVED, SEQ2SEQ, names
from .protocols import CausalLM, Seq2SeqModel, Steps
from .quantize import for_decoding

# What the searches need of a model (inference.protocols): a Transformer or RecurrentSeq2Seq, a DecoderLM.
Transformer = Seq2SeqModel
DecoderLM = CausalLM

LENGTH_PENALTY_FORMS = OPTIONS["length_penalty_form"].choices
SEQ2SEQ_OPTIONS = names(SEQ2SEQ)  # the keywords besides the positional ones (inference/options.py)
LM_OPTIONS = names(LM)


@dataclass
class Hypothesis:
    """One finished output: its tokens (no BOS/EOS), summed log-probability and length-penalised score."""

    tokens: list[int]
    log_prob: float
    score: float


def length_penalty(length: int | Tensor, alpha: float, form: str = "gnmt") -> Any:
    """lp(Y) = ((5 + |Y|) / 6)^alpha (GNMT, Wu et al. 2016, as in §6.1), or |Y|^alpha with form="plain".

    |Y| counts the generated tokens including the final EOS (not BOS). A beam's score is
    log P(Y | X) / lp(Y); alpha = 0 gives lp = 1 (no normalisation).
    """
    if form == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    if form == "plain":
        return length ** alpha
    raise ValueError(f"length_penalty_form must be one of {LENGTH_PENALTY_FORMS}, got {form!r}")


# ---------------------------------------------------------------------------------------------- sampling

def _make_generator(options: dict[str, Any], device: torch.device) -> torch.Generator | None:
    """The sampling generator: `generator` as given, a fresh one seeded with `seed`, or None (global RNG)."""
    generator, seed = options.get("generator"), options.get("seed")
    if generator is not None and seed is not None:
        raise ValueError("give either generator= or seed=, not both")
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed))
    return generator


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise ValueError naming a bad sampling setting and the allowed range."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; use do_sample=False for greedy search")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> Tensor:
    """Logits (N, V) divided by temperature, with tokens outside the top-k / nucleus top-p set to -inf.

    Top-p keeps the smallest set of most likely tokens whose probabilities sum to at least p
    (Holtzman et al. 2019); the most likely token is always kept.
    """
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the strictly more likely tokens
        sorted_logits = sorted_logits.masked_fill(before >= top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row of logits (N, V) after temperature, top-k and top-p: (N,)."""
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _chooser(options: dict[str, Any], device: torch.device) -> Callable[[Tensor], Tensor]:
    """logits (N, V) -> next tokens (N,): argmax (greedy), or a draw when options["do_sample"]."""
    if not options.get("do_sample", False):  # argmax in fp32: torch's bf16 argmax over a vocabulary is slower
        return lambda logits: logits.float().argmax(-1)
    temperature = float(options.get("temperature", 1.0))
    top_k, top_p = options.get("top_k"), options.get("top_p")
    _check_sampling(temperature, top_k, top_p)
    generator = _make_generator(options, device)
    return lambda logits: sample_next(logits, temperature, top_k, top_p, generator)


# ----------------------------------------------------------------------------------------- shared helpers

class _Threads:
    """torch's intra-op thread count for one search: `count` when given (put back by restore()), else left alone."""

    def __init__(self, count: int | None) -> None:
        """Check and set the count; remember the one in force."""
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"threads must be a positive integer or None (torch's count), got {count!r}")
        self.saved = torch.get_num_threads()
        if count is not None and count != self.saved:
            torch.set_num_threads(count)

    def restore(self) -> None:
        """Put back the count that was in force before the search."""
        if torch.get_num_threads() != self.saved:
            torch.set_num_threads(self.saved)


def _check_options(given: dict[str, Any], allowed: set[str], where: str) -> dict[str, Any]:
    """The options with deprecated keywords renamed (a warning each); TypeError naming unknown ones (a typo must
    not be ignored silently)."""
    gone = sorted(set(given) & set(REMOVED))
    if gone:
        raise TypeError(f"{where}({gone[0]}=...) is {REMOVED[gone[0]]}")
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise TypeError(f"{where}() got unknown option(s) {unknown}; allowed: {sorted(allowed - set(DEPRECATED))}")
    for old, new in DEPRECATED.items():
        if old in given:
            if new in given:
                raise TypeError(f"{where}() got {old}= and {new}=: give {new}= only ({old}= is its old name)")
            warnings.warn(f"{where}({old}=...) is deprecated: use {new}=", DeprecationWarning, stacklevel=4)
            given = {**{k: v for k, v in given.items() if k != old}, new: given[old]}
    return given


def _strip(ids: list[int], eos_id: int, pad_id: int) -> list[int]:
    """Cut a generated row at its first EOS and drop padding."""
    out = []
    for token in ids:
        if token == eos_id:
            break
        if token != pad_id:
            out.append(token)
    return out


def _reorder_self_caches(caches: list[LayerCache], index: Tensor) -> None:
    """Keep rows `index` of every self-attention cache, in place in the preallocated buffers."""
    for cache in caches:
        cache.self_kv.reorder(index)


def _select_rows(caches: list[LayerCache], index: Tensor) -> None:
    """Keep rows `index` of the cross-attention caches (finished sentences leave the batch)."""
    for cache in caches:
        cache.cross_kv.reorder(index)


class _Source:
    """A validated source batch: ids (B, S), keep-mask, per-row lengths and per-row output limits."""

    def __init__(self, model: Transformer, src: Tensor, max_new_tokens: int | None) -> None:
        """Check src once (type, shape, ids, max_positions, no empty row) and work out the limits."""
        cfg = model.cfg
        model.check_ids(src, "src")
        self.keep = src != cfg.pad_id  # (B, S)
        lengths = self.keep.sum(1)
        empty = (lengths == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"src row(s) {empty} hold only padding (an empty source): give at least one token "
                             f"per row, or drop those rows")
        self.lengths = lengths.tolist()
        if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 0):
            raise ValueError(f"max_new_tokens must be a non-negative integer or None, got {max_new_tokens!r}")
        # §6.1: maximum output length = input length + 50; the decoder has max_positions positions.
        wanted = [n + 50 if max_new_tokens is None else max_new_tokens for n in self.lengths]
        self.limits = [min(w, cfg.max_positions) for w in wanted]
        self.ids = src
        # A mask only when some row is padded: an unmasked batch takes SDPA's fastest path.
        self.mask = None if bool(self.keep.all()) else self.keep[:, None, None, :]  # (B, 1, 1, S)


class _Seq2SeqSteps:
    """A translator's step on the growing KV cache for one search; sources and rows that leave are dropped."""

    def __init__(self, model: Transformer, source: _Source, capacity: int) -> None:
        """Encode the source once and make caches for `capacity` decoder positions."""
        self.model = model
        self.memory = model.encode(source.ids, source.keep)  # (B, S, d)
        self.mask = source.mask  # (B, 1, 1, S) or None
        self.caches = model.new_caches(capacity)
        self.project = model.step_projection()

    def logits(self, token: Tensor, step: int) -> Tensor:
        """Logits (n, V) of the live rows' tokens (n, 1) at decoder position `step` (step 0: BOS)."""
        return self.project(self.model.decode_step(token, self.memory, self.mask, self.caches, step))

    def keep_sources(self, index: Tensor) -> None:
        """Only the live sources `index` go on: their memory and cross-attention caches are kept."""
        self.memory = self.memory.index_select(0, index)
        self.mask = None if self.mask is None else self.mask.index_select(0, index)
        _select_rows(self.caches, index)

    def follow(self, parent: Tensor) -> None:
        """Live row i continues from live row parent[i] (self-attention caches reordered in place)."""
        _reorder_self_caches(self.caches, parent)


class _LMSteps:
    """A language model's step for one search over equal-length prompts: the prompt at step 0, then one token."""

    def __init__(self, model: DecoderLM, prompts: Tensor, keep: Tensor | None, limit: int, beams: int) -> None:
        """Caches for the prompts (B, T) and `limit` new tokens, each prompt repeated for its `beams` rows; keep
        (B, T), when given, hides the prompt positions where it is False from every later position."""
        self.model = model
        self.prompts = prompts.repeat_interleave(beams, 0)  # (B*K, T): a sentence's beams are adjacent rows
        self.length = prompts.shape[1]
        self.caches = model.new_caches(self.length + limit)
        # a keep-mask over every position so far (the cache does not remember hidden keys), or None
        self.seen = None if keep is None else torch.cat(
            [keep, keep.new_ones(keep.shape[0], limit)], 1).repeat_interleave(beams, 0)  # (B*K, T + limit)

    def logits(self, token: Tensor, step: int) -> Tensor:
        """Logits (n, V) after the prompts (step 0, `token` unused) or after the live rows' tokens (n, 1)."""
        if step == 0:
            ids, start = self.prompts, 0
        else:
            ids, start = token, self.length + step - 1
        total = start + ids.shape[1]
        return self.model.step(ids, None if self.seen is None else self.seen[:, :total], self.caches, start)[:, -1]

    def keep_sources(self, index: Tensor) -> None:
        """Nothing: a language model has no per-source state besides its rows (follow drops those)."""

    def follow(self, parent: Tensor) -> None:
        """Live row i continues from row parent[i]: caches and hidden positions reordered."""
        _reorder_self_caches(self.caches, parent)
        self.seen = None if self.seen is None else self.seen.index_select(0, parent)


@torch.inference_mode()
def generate_seq2seq(model: Transformer, src: Tensor, beam_size: int = 4, length_penalty: float = 0.6,
                     max_new_tokens: int | None = None, **options: Any) -> Any:
    """Translate each row of src (B, S): beam search by default (§6.1: beam 4, alpha 0.6, max len S + 50).

    Options: length_penalty_form="gnmt" (((5+|Y|)/6)^alpha, the paper's) or "plain" (|Y|^alpha, as in
    Hugging Face and fairseq); n_best (hypotheses per source, <= beam_size); return_scores (return lists
    of Hypothesis instead of token lists); min_length (no EOS before that many tokens); do_sample with
    temperature, top_k, top_p and generator or seed (one draw per row; beam_size is then not used);
    threads (intra-op threads for this search; default torch's count);
    precision ("fp32", "bf16", "int8", "auto" or torch.float32 / bfloat16 / qint8; dtype= is its deprecated old
    name: search a copy of the model made by inference.quantize.for_decoding in that precision; made anew on
    each call, so for many calls make it once with aiayn.for_decoding). beam_size=1 is greedy search.
    Returns one id list per row, or with n_best > 1 one list of id lists per row (best first). Every option is
    declared in inference/options.py.
    """
    options = _check_options(options, SEQ2SEQ_OPTIONS, "generate")
    n_best = _check_search(beam_size, options)
    form = options.get("length_penalty_form", "gnmt")
    if options.get("precision") is not None:
        model = for_decoding(model, options["precision"])
    threads = _Threads(options.get("threads"))
    was_training = model.training
    model.eval()
    try:
        source = _Source(model, src, max_new_tokens)
        steps = _Seq2SeqSteps(model, source, max(source.limits))
        results = _search(model.cfg, steps, source.limits, src.device, beam_size, length_penalty, form, n_best,
                          options)
    finally:
        threads.restore()
        model.train(was_training)
    if not options.get("return_scores", False):
        results = [[h.tokens for h in row] for row in results]  # type: ignore[misc]
    return [row[0] for row in results] if n_best == 1 else [row[:n_best] for row in results]


def _check_search(beam_size: int, options: dict[str, Any]) -> int:
    """Raise ValueError naming a bad beam_size, n_best or length_penalty_form; return n_best."""
    if not isinstance(beam_size, int) or isinstance(beam_size, bool) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive integer, got {beam_size!r}")
    n_best = options.get("n_best", 1)
    if not isinstance(n_best, int) or not 1 <= n_best <= max(beam_size, 1):
        raise ValueError(f"n_best must be an integer in [1, beam_size={beam_size}], got {n_best!r}")
    form = options.get("length_penalty_form", "gnmt")
    if form not in LENGTH_PENALTY_FORMS:
        raise ValueError(f"length_penalty_form must be one of {LENGTH_PENALTY_FORMS}, got {form!r}")
    if (options.get("do_sample", False) or beam_size == 1) and n_best > 1:
        raise ValueError("n_best > 1 needs beam search (beam_size > 1, do_sample=False)")
    return n_best


def _search(cfg: Any, steps: Steps, limits: list[int], device: torch.device, beam_size: int, alpha: float,
            form: str, n_best: int, options: dict[str, Any],
            choose: Callable[[Tensor], Tensor] | None = None) -> list[list[Hypothesis]]:
    """The hypotheses of every row: greedy or sampling (one each) or beam search (n_best each) on `steps`.

    choose: the token chooser (default: a new one from the options; searches of one call share one, and so
    one sampling generator)."""
    min_length = int(options.get("min_length", 0))
    if options.get("do_sample", False) or beam_size == 1:
        choose = choose or _chooser(options, device)
        hyps = _greedy_or_sample(cfg, steps, limits, device, choose, min_length,
                                 want_scores=options.get("return_scores", False))
        return [[h] for h in hyps]
    return _beam_search(cfg, steps, limits, device, beam_size, alpha, form, min_length, n_best)


def _greedy_or_sample(cfg: Any, steps: Steps, limits: list[int], device: torch.device,
                      choose: Callable[[Tensor], Tensor], min_length: int, want_scores: bool) -> list[Hypothesis]:
    """One hypothesis per row: the argmax (greedy) or a draw at each step, until EOS or the row's limit."""
    batch = len(limits)
    limits_t = torch.tensor(limits, device=device)
    longest = max(limits)
    active = torch.arange(batch, device=device)  # original row of each live row
    everyone = True  # no row has left yet: plain slices instead of indexing by `active`
    first_limit = min(limits)  # no row can reach its limit before this step
    tokens = torch.full((batch, max(longest, 1)), cfg.pad_id, dtype=torch.long, device=device)  # output
    log_probs = torch.zeros(batch, device=device)
    token = torch.full((batch, 1), cfg.bos_id, dtype=torch.long, device=device)
    for step in range(longest):
        logits = steps.logits(token, step)  # (b, V)
        if step < min_length:
            logits[:, cfg.eos_id] = float("-inf")
        next_token = choose(logits)  # (b,)
        if want_scores:
            log_probs[active] += logits.float().log_softmax(-1).gather(1, next_token[:, None])[:, 0]
        if everyone:
            tokens[:, step] = next_token
        else:
            tokens[active, step] = next_token
        done = next_token == cfg.eos_id  # (b,)
        if step + 1 >= first_limit:
            done |= limits_t[active] <= step + 1
        if bool(done.any()):  # finished rows leave the batch
            keep = (~done).nonzero().flatten()
            if keep.numel() == 0:
                break
            everyone = False
            active, next_token = active[keep], next_token[keep]
            steps.keep_sources(keep)
            steps.follow(keep)
        token = next_token[:, None]
    return [Hypothesis(_strip(row, cfg.eos_id, cfg.pad_id), lp, lp)
            for row, lp in zip(tokens.tolist(), log_probs.tolist())]


def _beam_search(cfg: Any, steps: Steps, limits: list[int], device: torch.device, beam_size: int, alpha: float,
                 form: str, min_length: int, n_best: int) -> list[list[Hypothesis]]:
    """Batched beam search: K beams per sentence, scores log P / lp(|Y|), stop when K beams have ended.

    Each step takes the 2K best (beam, token) continuations of every sentence; those ending in EOS
    among the top K become finished hypotheses, the K best others stay alive. A sentence is done when
    it has K finished hypotheses or reaches its maximum length (its live beams are then finished as
    they are); done sentences leave the batch. `steps` runs the model on rows sentence-major (a sentence's K
    beams adjacent).
    """
    batch, k = len(limits), beam_size
    longest = max(limits)
    active = list(range(batch))  # original sentence of each live sentence
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    history = torch.full((batch * k, 0), cfg.pad_id, dtype=torch.long, device=device)  # (b*K, t)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start as the same BOS: let only the first one expand
    token = torch.full((batch * k, 1), cfg.bos_id, dtype=torch.long, device=device)
    beam_offsets = torch.arange(batch, device=device)[:, None] * k  # (b, 1)
    for step in range(longest):
        b = len(active)
        logits = steps.logits(token, step)  # (b*K, V)
        log_probs = logits.float().log_softmax(-1)
        if step < min_length:
            log_probs[:, cfg.eos_id] = float("-inf")
        # --8<-- [start:beam-step]
        # The 2K best continuations of a sentence are among the 2K best of each of its beams: a top-k per
        # beam row (parallel over rows) and then one over the K*2K survivors beats one top-k over K*V.
        row_scores, row_tokens = log_probs.topk(2 * k, dim=-1)  # (b*K, 2K)
        candidates = (scores.view(-1, 1) + row_scores).view(b, 2 * k * k)  # (b, K*2K)
        top_scores, top_index = candidates.topk(2 * k, dim=-1)  # (b, 2K), best first
        top_beam = top_index // (2 * k)
        top_token = row_tokens.view(b, 2 * k * k).gather(1, top_index)
        is_eos = top_token == cfg.eos_id
        # the K best non-EOS continuations stay alive (a stable sort puts them first, in score order)
        order = is_eos.to(torch.uint8).argsort(dim=-1, stable=True)[:, :k]  # (b, K)
        scores = top_scores.gather(1, order)
        parent = (top_beam.gather(1, order) + beam_offsets[:b]).view(-1)  # (b*K,) rows to continue
        next_token = top_token.gather(1, order).view(-1)
        # --8<-- [end:beam-step]
        length = step + 1  # |Y| of a hypothesis ending at this step, EOS included
        ended = is_eos[:, :k] & torch.isfinite(top_scores[:, :k])
        at_limit = [limits[s] <= length for s in active]
        if bool(ended.any()):
            lp = length_penalty(length, alpha, form)
            for i, j in ended.nonzero().tolist():
                row = int(top_beam[i, j]) + i * k
                log_p = float(top_scores[i, j])
                finished[active[i]].append(Hypothesis(history[row].tolist(), log_p, log_p / lp))
        history = torch.cat([history.index_select(0, parent), next_token[:, None]], 1)
        if any(at_limit):  # out of length: the live beams end here as they are
            lp = length_penalty(length, alpha, form)
            rows, beam_scores = history.tolist(), scores.tolist()
            for i in (i for i, stop in enumerate(at_limit) if stop):
                for j in range(k):
                    if beam_scores[i][j] > float("-inf"):
                        log_p = beam_scores[i][j]
                        finished[active[i]].append(Hypothesis(rows[i * k + j], log_p, log_p / lp))
        done = [at_limit[i] or len(finished[s]) >= k for i, s in enumerate(active)]
        if all(done):
            break
        if any(done):  # done sentences leave the batch
            keep_sentences = torch.tensor([i for i, d in enumerate(done) if not d], device=device)
            keep_rows = (keep_sentences[:, None] * k + torch.arange(k, device=device)).view(-1)
            active = [s for s, d in zip(active, done) if not d]
            scores, history = scores[keep_sentences], history[keep_rows]
            next_token, parent = next_token[keep_rows], parent[keep_rows]
            steps.keep_sources(keep_sentences)
        steps.follow(parent)  # each live beam continues its parent's cache rows
        token = next_token[:, None]
    results = []
    for hyps in finished:
        if not hyps:  # max_new_tokens=0: the empty output
            hyps.append(Hypothesis([], 0.0, 0.0))
        hyps.sort(key=lambda h: h.score, reverse=True)
        results.append([Hypothesis(_strip(h.tokens, cfg.eos_id, cfg.pad_id), h.log_prob, h.score)
                        for h in hyps[:n_best]])
    return results


# ------------------------------------------------------------------------------------ decoder-only (GPT)

def _prompt_rows(model: DecoderLM, prompt_ids: Tensor | Sequence[Sequence[int]],
                 mask: Tensor | None = None) -> list[tuple[list[int], list[bool]]]:
    """Prompts as (ids, keep) rows without their leading and trailing padding; keep is False where a position
    inside the prompt is hidden. Padding comes from `mask` (a (B, T) keep-mask of a tensor prompt) or else
    from pad_id, unless pad_id is a real token (cfg.pad_is_token, GPT-2): then no id is padding."""
    cfg = model.cfg
    if isinstance(prompt_ids, Tensor):
        model.check_ids(prompt_ids, "prompt_ids")
        ids = prompt_ids.tolist()
    else:
        if mask is not None:
            raise ValueError("mask= is for a (B, T) tensor of prompts; lists of ids need no padding")
        ids = [list(map(int, row)) for row in prompt_ids]
        for i, row in enumerate(ids):
            if any(t < 0 or t >= cfg.vocab_size for t in row):
                raise ValueError(f"prompt {i} holds ids outside [0, vocab_size={cfg.vocab_size})")
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != prompt_ids.shape:
            got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a torch.bool keep-mask shaped like prompt_ids "
                             f"{tuple(prompt_ids.shape)} (True = a token), got {got}")
        keeps = mask.tolist()
    elif cfg.pad_is_token:
        keeps = [[True] * len(row) for row in ids]
    else:
        keeps = [[t != cfg.pad_id for t in row] for row in ids]
    rows = []
    for i, (row, keep) in enumerate(zip(ids, keeps)):
        kept = [j for j, k in enumerate(keep) if k]
        if not kept:
            raise ValueError(f"prompt {i} is empty (no token, or only padding): give at least one token "
                             f"(e.g. BOS, id {cfg.bos_id})")
        first, last = kept[0], kept[-1] + 1  # padding before and after the prompt is dropped
        if last - first >= cfg.max_positions:
            raise ValueError(f"prompt {i} has {last - first} tokens but the model has max_positions="
                             f"{cfg.max_positions}: shorten the prompt to leave room for new tokens")
        rows.append((row[first:last], keep[first:last]))
    return rows


@torch.inference_mode()
def generate_lm(model: DecoderLM, prompt_ids: Tensor | Sequence[Sequence[int]], max_new_tokens: int = 100,
                beam_size: int = 1, length_penalty: float = 0.6, **options: Any) -> list[list[int]]:
    """Continue each prompt: greedy, beam search (beam_size > 1, scored as translations are), or sampling with
    do_sample, temperature, top_k, top_p, generator/seed.

    Prompts may differ in length: pass a list of id lists, or a (B, T) tensor padded left or right with pad_id
    (or with anything, and mask=, a (B, T) bool keep-mask: needed where pad_id is a real token, as GPT-2's).
    A position hidden inside a prompt keeps its place and stays hidden, as forward hides it. Prompts of equal
    length decode together as one batch, so each row's result is the same as decoded alone. Stops at EOS,
    after max_new_tokens, or at max_positions; returns the new ids only.
    threads: intra-op threads for this search (default torch's count);
    precision: "fp32", "bf16" or "auto" (a copy of the model in that precision, as for translators; int8 is for
    translators only).
    """
    options = _check_options(options, LM_OPTIONS, "generate")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    _check_search(beam_size, options)
    form = options.get("length_penalty_form", "gnmt")
    if options.get("precision") is not None:
        model = for_decoding(model, options["precision"])
    cfg = model.cfg
    rows = _prompt_rows(model, prompt_ids, options.get("mask"))
    device = next(model.parameters()).device
    choose = _chooser(options, device)  # one for every group of prompts: one sampling generator
    threads = _Threads(options.get("threads"))
    beams = 1 if options.get("do_sample", False) else beam_size
    was_training = model.training
    model.eval()
    results: list[list[int]] = [[] for _ in rows]
    try:
        by_length: dict[int, list[int]] = {}
        for i, (row, _) in enumerate(rows):
            by_length.setdefault(len(row), []).append(i)
        for length, members in sorted(by_length.items()):
            prompts = torch.tensor([rows[i][0] for i in members], dtype=torch.long, device=device)
            keep = torch.tensor([rows[i][1] for i in members], dtype=torch.bool, device=device)
            limit = min(max_new_tokens, cfg.max_positions - length)
            if limit <= 0:
                continue
            hidden = None if all(all(rows[i][1]) for i in members) else keep  # None: the unmasked fast path
            steps = _LMSteps(model, prompts, hidden, limit, beams)
            found = _search(cfg, steps, [limit] * len(members), device, beam_size, length_penalty, form, 1,
                            options, choose)
            for i, hyps in zip(members, found):
                results[i] = hyps[0].tokens
    finally:
        threads.restore()
        model.train(was_training)
    return results


# model.generate calls these (model/ imports nothing from inference/: model/services.py)
services.Services.generate_seq2seq = generate_seq2seq
services.Services.generate_lm = generate_lm
