"""The engines a server searches with: aiayn's own decoding, or CTranslate2 on an export of the same model
(a translator here; a DecoderLM's /generate: serving/ctranslate2_lm.py).

Both read the model folder through aiayn (its tokenizer, the same source ids: BPE + EOS), so the output of
either is what `aiayn translate` gives, up to the engine's numerics. The CTranslate2 model is exported once
into a cache folder outside the model folder (nothing is ever written into the model folder) and reused
while the model's files are unchanged.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from ..data.tokenizer import decode, encode_source
from ..inference.evaluation import translate, translate_scored
from ..inference.quantize import for_decoding, resolve_precision
from ..inference.workers import WorkerPool
from ..io.export import ExportError, export_model
from ..io.model_folder import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE
from ..model.registry import of_model
from ..runtime.allocator import trim_heap

ENGINES = ("aiayn", "ctranslate2")
# aiayn's precision names -> CTranslate2's compute types (the export keeps fp32 weights; CTranslate2
# converts them when it loads the model)
CT2_COMPUTE_TYPES = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}


@dataclass
class Output:
    """One hypothesis of one sentence: its text and, where asked for, its length-penalised score."""

    text: str
    score: float | None = None


class EngineError(ValueError):
    """An engine that cannot serve this model or these settings; the message names the fix."""


def cache_root() -> Path:
    """Where exports made for serving are kept: $AIAYN_CACHE, else $XDG_CACHE_HOME/aiayn, else ~/.cache/aiayn."""
    if os.environ.get("AIAYN_CACHE"):
        return Path(os.environ["AIAYN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aiayn"


def model_fingerprint(folder: Path) -> str:
    """A short hash of the model's config, tokenizer and weights (sizes and modification times, not bytes)."""
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for name in (CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE):
        stat = (folder / name).stat()
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def unseen_text(tokenizer: Tokenizer, made: list[int], shown: str) -> tuple[str, str]:
    """(the text of the ids made so far, the part of it not yet shown): all of it where decoding the longer
    list changed the text already shown. Both engines stream /generate through this."""
    text = tokenizer.decode(made, skip_special_tokens=True)
    if text == shown:
        return text, ""
    return text, text[len(shown):] if text.startswith(shown) else text


class AiaynEngine:
    """aiayn's decoding (inference.evaluation.translate) in `precision`, over `workers` forked processes."""

    name = "aiayn"

    def __init__(self, model: Any, tokenizer: Tokenizer, precision: str = "fp32", workers: int = 1) -> None:
        """The loaded fp32 model (kept for attention pictures) and the decoding copy in `precision`."""
        self.model, self.tokenizer = model, tokenizer
        self.kind = model.model_type
        device = next(model.parameters()).device
        self.precision = resolve_precision(precision, device)
        self.search_model = for_decoding(model, self.precision)
        self.workers = workers
        # trim: the workers give their free heap back after each batch (batches of every shape, for days)
        self.pool = WorkerPool(self.search_model, workers, trim=True) if workers > 1 else None
        self._generate_lock = threading.Lock()

    def count(self, text: str) -> int:
        """Source tokens of a text (BPE + EOS)."""
        return len(encode_source(self.tokenizer, text))

    def search(self, texts: list[str], options: dict[str, Any]) -> list[list[Output]]:
        """Every text's hypotheses (one, or n_best with scores) under translate()'s keyword options."""
        options = dict(options)
        n_best, scores = options.pop("n_best", 1), options.pop("return_scores", False)
        beam = options.get("beam_size", 4)
        budget = max(sum(self.count(t) for t in texts) * max(beam, 1) * 2, 4000)  # one batch: the batcher cut it
        if n_best == 1 and not scores:
            lines = translate(self.search_model, self.tokenizer, texts, batch_tokens=budget,
                              workers=self.pool or 1, **options)
            found = [[Output(line)] for line in lines]
        else:
            found = self._scored(texts, n_best, options, budget)
        if self.pool is None:  # searched in this process: its free heap back, as the workers do
            trim_heap()
        return found

    def _scored(self, texts: list[str], n_best: int, options: dict[str, Any], budget: int) -> list[list[Output]]:
        """n_best hypotheses with scores per text (translate_scored: the same batches and truncation)."""
        found = translate_scored(self.search_model, self.tokenizer, texts, n_best=n_best, batch_tokens=budget,
                                 workers=self.pool or 1, **options)
        return [[Output(text, score) for text, score in hyps] for hyps in found]

    def stream(self, prompt: str, max_new_tokens: int, options: dict[str, Any], chunk: int = 4) -> Iterator[str]:
        """A DecoderLM's continuation of prompt, a few tokens at a time (each chunk re-reads the context).

        generate_lm returns whole continuations, so the stream calls it for `chunk` tokens at a time; with a
        seed, one torch.Generator carries the draws across chunks.
        """
        ids = self.tokenizer.encode(prompt, add_special_tokens=False).ids
        if not ids:
            raise ValueError("the prompt is empty after tokenization: give at least one character")
        options = dict(options)
        if options.get("seed") is not None:
            options["generator"] = torch.Generator().manual_seed(int(options.pop("seed")))
        window = self.model.cfg.max_positions
        context, made, shown = ids[-(window - 1):], [], ""
        while len(made) < max_new_tokens:
            limit = min(chunk, max_new_tokens - len(made), window - len(context))
            with self._generate_lock:
                new = self.search_model.generate(torch.tensor([context]), max_new_tokens=limit, **options)[0]
            made += new
            shown, piece = unseen_text(self.tokenizer, made, shown)
            if piece:
                yield piece
            if len(new) < limit:  # EOS
                return
            context = context + new
            if len(context) >= window:  # as generate_text: go on from the last half-context
                context = context[-max(window // 2, 1):]

    def close(self) -> None:
        """Stop the worker processes."""
        if self.pool is not None:
            self.pool.close()


# translate()'s keywords that CTranslate2Engine.search maps to translate_batch's
CT2_OPTIONS = frozenset({"beam_size", "length_penalty", "n_best", "return_scores", "do_sample", "temperature",
                         "top_k", "top_p"})
# why CTranslate2 cannot take some of the others (an option not named here: it is not mapped yet)
CT2_CANNOT = {"seed": "CTranslate2 seeds each of its threads once per process (ctranslate2.set_random_seed), so "
                      "one request's draws cannot be repeated"}


def check_ct2_options(options: dict[str, Any], mapped: frozenset[str] = CT2_OPTIONS, where: str = "") -> None:
    """ValueError (a 400) naming the decoding options CTranslate2's search is not given, rather than ignoring them."""
    unmapped = sorted(set(options) - mapped)
    if unmapped:
        why = "; ".join(CT2_CANNOT[name] for name in unmapped if name in CT2_CANNOT)
        raise ValueError(f"--engine ctranslate2 does not take {unmapped}{where}{': ' + why if why else ''}: "
                         f"leave {'it' if len(unmapped) == 1 else 'them'} out, or serve with --engine aiayn")


def open_export(model: Any, folder: Path, cache: Path | None) -> tuple[Any, Path]:
    """The ctranslate2 module and the model's CTranslate2 export (made into the cache if absent); EngineError if
    ctranslate2 is missing or the model's kind does not export to it."""
    try:
        import ctranslate2
    except ImportError:
        raise EngineError("--engine ctranslate2 needs ctranslate2: pip install 'aiayn[ct2]'") from None
    entry = of_model(model)
    if "ctranslate2" not in entry.exports:
        raise EngineError(f"{folder} holds {entry.described}, which does not export to CTranslate2: serve it with "
                          f"--engine aiayn")
    return ctranslate2, ensure_export(folder, cache)


class CTranslate2Engine:
    """CTranslate2's Translator on an export of the model (made into the cache if absent), aiayn's tokenizer."""

    name = "ctranslate2"

    def __init__(self, model: Any, tokenizer: Tokenizer, folder: Path, precision: str = "int8", workers: int = 1,
                 threads: int = 1, cache: Path | None = None) -> None:
        """Export (once) and load; precision fp32|bf16|int8|auto; workers = CTranslate2's inter_threads."""
        entry = of_model(model)
        if not entry.translator:
            raise EngineError(f"CTranslate2Engine serves translators that export to CTranslate2; {folder} holds "
                              f"{entry.described}: serve a DecoderLM with serving.ctranslate2_lm.CTranslate2LMEngine, "
                              f"anything else with --engine aiayn")
        ctranslate2, self.export = open_export(model, folder, cache)
        self.model, self.tokenizer, self.kind = model, tokenizer, model.model_type
        self.precision = "int8" if precision == "auto" else precision
        self.workers = workers
        self.translator = ctranslate2.Translator(str(self.export), device="cpu",
                                                 compute_type=CT2_COMPUTE_TYPES[self.precision],
                                                 inter_threads=workers, intra_threads=threads)

    def count(self, text: str) -> int:
        """Source tokens of a text (BPE + EOS)."""
        return len(encode_source(self.tokenizer, text))

    def search(self, texts: list[str], options: dict[str, Any]) -> list[list[Output]]:
        """Every text's hypotheses, searched by CTranslate2 with the same source tokens aiayn reads."""
        check_ct2_options(options)
        cfg = self.model.cfg
        limit = max(cfg.max_positions - 50, 1)
        rows = []
        for text in texts:
            ids = encode_source(self.tokenizer, text)
            ids = ids if len(ids) <= limit else ids[:limit - 1] + ids[-1:]
            rows.append([self.tokenizer.id_to_token(i) for i in ids])  # with aiayn's EOS, as aiayn reads it
        live = [i for i, t in enumerate(texts) if t.strip()]
        out: list[list[Output]] = [[Output("", 0.0 if options.get("return_scores") else None)] for _ in texts]
        if not live:
            return out
        sampling = options.get("do_sample", False)
        kwargs: dict[str, Any] = dict(
            beam_size=1 if sampling else options.get("beam_size", 4),
            length_penalty=options.get("length_penalty", 0.6),
            num_hypotheses=options.get("n_best", 1), return_scores=bool(options.get("return_scores")),
            max_decoding_length=max(len(rows[i]) for i in live) + 50,  # §6.1: input length + 50
            min_decoding_length=0)  # aiayn may end a translation at its first step; CTranslate2 by default not
        if sampling:
            kwargs.update(sampling_topk=options.get("top_k") or 0, sampling_topp=options.get("top_p") or 1.0,
                          sampling_temperature=options.get("temperature", 1.0))
        results = self.translator.translate_batch([rows[i] for i in live], **kwargs)
        for i, result in zip(live, results):
            scores = result.scores if kwargs["return_scores"] else [None] * len(result.hypotheses)
            out[i] = [Output(decode(self.tokenizer, [self._id(t) for t in hyp]), score)
                      for hyp, score in zip(result.hypotheses, scores)]
        return out

    def _id(self, token: str) -> int:
        """A CTranslate2 output token back to aiayn's id (unknown strings: the unknown id 3)."""
        found = self.tokenizer.token_to_id(token)
        return found if found is not None else 3

    def close(self) -> None:
        """Nothing to stop (CTranslate2's threads end with the Translator)."""


def ensure_export(folder: Path, cache: Path | None = None) -> Path:
    """The CTranslate2 export of the model folder in the cache (made now if absent), never in the folder."""

    out = (cache or cache_root()) / "ctranslate2" / model_fingerprint(folder)
    if (out / "model.bin").is_file():
        return out
    try:
        export_model(folder, "ctranslate2", out, force=True)
    except ExportError as error:
        raise EngineError(str(error)) from None
    return out
