"""A DecoderLM served by CTranslate2: its Generator on an export of the model streams POST /generate.

The prompt is read as the aiayn engine reads it (AiaynEngine.stream, generate_text): the tokenizer's ids with
no special tokens added, so no BOS (a DecoderLM is trained on windows of plain text), the end of a prompt
longer than the context. CTranslate2 gets exactly those ids, as the token strings of aiayn's tokenizer (the
export's vocabulary is that tokenizer's, in the same order), and the ids it returns are decoded by aiayn's
tokenizer as the aiayn engine decodes them. Past the model's context (max_positions), generation goes on from
the last half-context, as generate_text does. So greedy search gives the aiayn engine's text, up to the two
engines' numerics.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from ..data.tokenizer import encode_source
from ..model.registry import of_model
from .engines import CT2_COMPUTE_TYPES, EngineError, Output, check_ct2_options, open_export, unseen_text

# POST /generate's keywords (serving.options.sampling_keywords) that CTranslate2LMEngine maps to generate_tokens'
CT2_GENERATE_OPTIONS = frozenset({"do_sample", "temperature", "top_k", "top_p"})


def check_ct2_generate_options(options: dict[str, Any]) -> None:
    """ValueError (a 400) naming the /generate options CTranslate2's Generator is not given, rather than ignored."""
    check_ct2_options(options, CT2_GENERATE_OPTIONS, " on /generate")


def generate_keywords(options: dict[str, Any]) -> dict[str, Any]:
    """generate_tokens' sampling keywords for /generate's options: greedy (top-1) unless do_sample."""
    check_ct2_generate_options(options)
    if not options.get("do_sample", False):
        return {"sampling_topk": 1}
    return {"sampling_topk": options.get("top_k") or 0,  # 0: the whole vocabulary, as top_k None
            "sampling_topp": options.get("top_p") or 1.0,
            "sampling_temperature": options.get("temperature", 1.0)}


class CTranslate2LMEngine:
    """CTranslate2's Generator on an export of a DecoderLM (made into the cache if absent), aiayn's tokenizer."""

    name = "ctranslate2"

    def __init__(self, model: Any, tokenizer: Tokenizer, folder: Path, precision: str = "int8", workers: int = 1,
                 threads: int = 1, cache: Path | None = None) -> None:
        """Export (once) and load; precision fp32|bf16|int8|auto; workers = CTranslate2's inter_threads."""
        entry = of_model(model)
        if not entry.causal_lm:
            raise EngineError(f"CTranslate2LMEngine serves DecoderLMs; {folder} holds {entry.described}: serve a "
                              f"translator with serving.engines.CTranslate2Engine")
        ctranslate2, self.export = open_export(model, folder, cache)
        self.model, self.tokenizer, self.kind = model, tokenizer, model.model_type
        self.precision = "int8" if precision == "auto" else precision
        self.workers = workers
        self.generator = ctranslate2.Generator(str(self.export), device="cpu",
                                               compute_type=CT2_COMPUTE_TYPES[self.precision],
                                               inter_threads=workers, intra_threads=threads)

    def count(self, text: str) -> int:
        """Tokens of a text (the batcher's measure; a language model's server batches no /translate)."""
        return len(encode_source(self.tokenizer, text))

    def search(self, texts: list[str], options: dict[str, Any]) -> list[list[Output]]:
        """No translations from a language model (POST /translate answers 400 before it gets here)."""
        raise ValueError("this server has a language model: POST /generate {\"prompt\": ...} continues a text")

    def stream(self, prompt: str, max_new_tokens: int, options: dict[str, Any]) -> Iterator[str]:
        """The continuation of prompt, a piece of text per new token; the options are checked now (ValueError)."""
        keywords = generate_keywords(options)
        ids = self.tokenizer.encode(prompt, add_special_tokens=False).ids
        if not ids:
            raise ValueError("the prompt is empty after tokenization: give at least one character")
        return self._pieces(ids, max_new_tokens, keywords)

    def _pieces(self, ids: list[int], max_new_tokens: int, keywords: dict[str, Any]) -> Iterator[str]:
        """Text pieces as CTranslate2 makes the tokens; its search stops when this iterator is closed."""
        cfg = self.model.cfg
        window = cfg.max_positions
        context, made, shown = ids[-(window - 1):], [], ""
        while len(made) < max_new_tokens:
            limit = min(max_new_tokens - len(made), window - len(context))  # positions end at max_positions
            steps = self.generator.generate_tokens([self.tokenizer.id_to_token(i) for i in context],
                                                   max_length=limit, end_token=[cfg.eos_id], **keywords)
            new: list[int] = []
            ended = False
            try:
                for step in steps:
                    if step.token_id == cfg.eos_id:
                        ended = True
                        break
                    new.append(step.token_id)
                    made.append(step.token_id)
                    shown, piece = unseen_text(self.tokenizer, made, shown)
                    if piece:
                        yield piece
            finally:
                steps.close()  # a client gone: CTranslate2 stops at its next step
            if ended or len(new) < limit:  # EOS
                return
            context = context + new
            if len(context) >= window:  # as generate_text: go on from the last half-context
                context = context[-max(window // 2, 1):]

    def close(self) -> None:
        """Nothing to stop (CTranslate2's threads end with the Generator)."""
