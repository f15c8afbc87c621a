"""`aiayn export`: a model folder -> a Hugging Face folder (transformers' Auto classes) or a CTranslate2 model.

The weights go through interop.to_huggingface (exact rewrites where a family fixes an option otherwise, a
clear refusal where no exact one exists); CTranslate2 models are converted from that Hugging Face folder by
CTranslate2's own converter, except pre-LN translators (Pegasus in Hugging Face), which io/ctranslate2.py
describes to CTranslate2's pre-norm TransformerSpec directly. Everything is written into
a temporary sibling of --out and renamed at the end, so --out is never half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, processors

from ..model.models import Transformer, TransformerBase
from ..model.registry import MODEL_TYPES, of_model
from .ctranslate2 import pre_ln_problems, write_pre_ln_translator
from .huggingface import Family, huggingface_equivalent, to_huggingface
from .loading import load
from .model_folder import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, check_tokenizer

TARGETS = ("hf", "ctranslate2")
TARGET_NAMES = {"hf": "Hugging Face", "ctranslate2": "CTranslate2"}
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
                 "float32")
MASK_TOKEN = "[MASK]"
# train.json settings that describe the recipe (paths, threads and logging are left out of the card)
_RECIPE = ("task", "preset", "recipe", "tokenizer", "vocab_size", "n_layers", "d_model", "norm", "positions",
           "activation", "dropout", "label_smoothing", "batch_tokens", "batch_size", "context", "accumulate",
           "steps", "schedule", "warmup", "peak_lr", "lr_scale", "min_lr", "adam_beta1", "adam_beta2", "adam_eps",
           "weight_decay", "clip_norm", "precision", "seed", "beam", "length_penalty")


class ExportError(ValueError):
    """A model, option or --out folder that an export cannot use; the message names it and what would work."""


def export_model(model_dir: str | Path, to: str, out: str | Path, quantization: str | None = None,
                 force: bool = False) -> list[str]:
    """Export the model of MODEL_DIR (a model folder or a run folder) to `to` ("hf" or "ctranslate2") in out.

    Returns the exact conversions made (for the log). Raises ExportError (or CheckpointError for a broken
    folder) before anything is written when the target cannot hold the model or an option is wrong.
    """
    if to not in TARGETS:
        raise ExportError(f"unknown target {to!r}: use one of {list(TARGETS)}")
    if quantization is not None and to != "ctranslate2":
        raise ExportError("--quantization applies to --to ctranslate2 only; a Hugging Face export keeps fp32 "
                          "weights (load them with dtype=... in transformers)")
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown --quantization {quantization!r}: use one of {list(QUANTIZATIONS)}")
    if not str(out).strip():
        raise ExportError("--out is empty: name the folder to write the exported model into")
    out = Path(out)
    _check_out(out, force, Path(model_dir))
    _require("transformers", "hf")
    if to == "ctranslate2":
        _require("ctranslate2", "ct2")
    folder, run = _model_and_run_folders(Path(model_dir))
    model = load(folder)
    entry = of_model(model)
    if to not in entry.exports:
        raise ExportError(_not_exported(folder, entry.name, to))
    tokenizer = _tokenizer(folder, model)
    if to == "ctranslate2" and entry.encoder_decoder and model.cfg.norm == "pre":
        problems = pre_ln_problems(model)  # Marian is post-LN only: CTranslate2's pre-norm spec, built directly
        if problems:
            raise ExportError(f"cannot export {folder} to ctranslate2: its pre-norm Transformer cannot hold "
                              f"{'; '.join(problems)}")
        card = _card(model, None, [], folder, run, to, quantization)
        with _staging(out, force) as staging:
            write_pre_ln_translator(model, tokenizer, staging, quantization)
            write_tokenizer(tokenizer, model, staging)
            (staging / "README.md").write_text(card, encoding="utf-8")
        return ["pre-LN: CTranslate2's TransformerSpec(pre_norm=True), built tensor by tensor"]
    try:
        family, equivalent, conversions = huggingface_equivalent(model)
    except ValueError as error:
        raise ExportError(f"cannot export {folder} to {to}: {error}") from None
    card = _card(model, family, conversions, folder, run, to, quantization)
    with _staging(out, force) as staging:
        if to == "hf":
            write_huggingface(equivalent, family, tokenizer, staging)
        else:
            with tempfile.TemporaryDirectory(prefix=f".{out.name}.hf-", dir=out.parent) as hf_folder:
                write_huggingface(equivalent, family, tokenizer, Path(hf_folder))
                _convert_ctranslate2(Path(hf_folder), staging, model.cfg, quantization)
                for name in (TOKENIZER_FILE, "tokenizer_config.json", "special_tokens_map.json"):
                    shutil.copyfile(Path(hf_folder) / name, staging / name)
        (staging / "README.md").write_text(card, encoding="utf-8")
    return conversions


# ---------------------------------------------------------------------------------------------------
# Checks made before anything is written


def _not_exported(folder: Path, name: str, to: str) -> str:
    """Why a model type (model/registry.py) has no export to `to`, and what to do instead."""
    entry = MODEL_TYPES[name]
    if not entry.exports:
        use = f"translate with `aiayn translate {folder}` or " if entry.translator else ""
        return (f"{folder} holds {entry.described} ({entry.trained_by}): Hugging Face transformers and CTranslate2 "
                f"have no model of its kind to export it to; {use}load it with aiayn.load")
    takes = " and ".join(t.described for t in MODEL_TYPES.values() if to in t.exports)
    return (f"{folder} holds {entry.described}: the {TARGET_NAMES[to]} export takes {takes}, not its kind; export "
            f"it with --to {entry.exports[0]}")


def _check_out(out: Path, force: bool, model_dir: Path) -> None:
    """Refuse an --out that is a file, a non-empty folder without force, or one that holds the model or the
    current folder (--force would replace them)."""
    if out.is_file() or out.is_symlink() and not out.is_dir():
        raise ExportError(f"--out {out} is a file: give a folder to write the exported model into")
    if out.is_dir():
        inside = out.resolve()
        for held, what in ((model_dir, "the model folder"), (Path.cwd(), "the current folder")):
            if held.resolve() == inside or inside in held.resolve().parents:
                raise ExportError(f"--out {out} holds {what}, which the export would replace: choose a new folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out} exists and is not empty: choose a new folder, or pass --force to replace "
                          f"its contents")


def _require(module: str, extra: str) -> None:
    """Import an optional dependency, or stop with the pip command that installs its extra."""
    try:
        __import__(module)
    except ImportError:
        raise ExportError(f"this export needs {module}: pip install 'aiayn[{extra}]'") from None


def _model_and_run_folders(path: Path) -> tuple[Path, Path | None]:
    """(the model folder, the run folder whose train.json / metrics.jsonl describe it, or None)."""
    if not path.is_dir():
        raise ExportError(f"{path} is not a folder: give a model folder (config.json, model.safetensors, "
                          f"tokenizer.json) or a run folder written by `aiayn train`")
    if not (path / WEIGHTS_FILE).is_file() and (path / "model" / CONFIG_FILE).is_file():
        return path / "model", path  # a run folder: its final model
    for run in (path, path.parent, path.parent.parent):  # runs/X/model, runs/X/checkpoints/step_N
        if (run / "train.json").is_file():
            return path, run
    return path, None


def _tokenizer(folder: Path, model: TransformerBase) -> Tokenizer:
    """The model folder's tokenizer, checked to be the one the model was saved with."""
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        raise ExportError(f"{path} is missing: an exported model needs the {TOKENIZER_FILE} it was trained with; "
                          f"copy the run folder's {TOKENIZER_FILE} next to the model")
    tokenizer = Tokenizer.from_file(str(path))
    check_tokenizer(folder, tokenizer)
    size = tokenizer.get_vocab_size()
    if size > model.cfg.vocab_size:
        raise ExportError(f"{path} has {size} tokens but the model {model.cfg.vocab_size}: use the "
                          f"{TOKENIZER_FILE} saved with this model")
    return tokenizer


# ---------------------------------------------------------------------------------------------------
# Writing


@contextmanager
def _staging(out: Path, force: bool) -> Iterator[Path]:
    """A temporary sibling folder of out to write into; renamed onto out at the end, removed on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield staging
        mask = _umask()  # mkdtemp makes 0700 folders and some writers 0600 files; give the usual permissions
        os.chmod(staging, 0o777 & ~mask)
        for path in staging.rglob("*"):
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
        if out.exists():  # --force: the old folder goes only once the new one is complete
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "previous")
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_huggingface(model: TransformerBase, family: Family, tokenizer: Tokenizer, folder: Path) -> None:
    """A folder that transformers' Auto classes load: config.json, model.safetensors, generation_config.json,
    tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    cfg = model.cfg
    hf_model = to_huggingface(model)
    generation = getattr(hf_model, "generation_config", None)  # None for a masked LM
    if generation is not None:
        generation.bos_token_id, generation.eos_token_id = cfg.bos_id, cfg.eos_id
        generation.pad_token_id, generation.max_length = cfg.pad_id, cfg.max_positions
    if isinstance(model, Transformer):  # §6.1's beam 4; HF stops a sentence at 4 finished beams, as aiayn does
        generation.decoder_start_token_id = cfg.bos_id  # the decoder starts from BOS, as aiayn's does
        generation.forced_eos_token_id = None
        generation.num_beams, generation.early_stopping = 4, True
    hf_model.save_pretrained(folder)
    write_tokenizer(tokenizer, model, folder)


def write_tokenizer(tokenizer: Tokenizer, model: TransformerBase, folder: Path) -> None:
    """tokenizer.json + tokenizer_config.json + special_tokens_map.json that PreTrainedTokenizerFast and
    AutoTokenizer load with the model's special tokens; a translator's encoding ends with EOS, as aiayn's."""
    cfg = model.cfg
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a copy: the caller's tokenizer stays as it is
    specials = {"bos_token": tokenizer.id_to_token(cfg.bos_id), "eos_token": tokenizer.id_to_token(cfg.eos_id),
                "pad_token": tokenizer.id_to_token(cfg.pad_id)}
    unk = json.loads(tokenizer.to_str())["model"].get("unk_token")
    if unk is not None:
        specials["unk_token"] = unk
    if tokenizer.token_to_id(MASK_TOKEN) is not None:
        specials["mask_token"] = MASK_TOKEN
    if isinstance(model, Transformer):  # source ids are BPE ids + [EOS] (tokenizer.encode_source)
        eos = specials["eos_token"]
        tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                                 special_tokens=[(eos, cfg.eos_id)])
    tokenizer.save(str(folder / TOKENIZER_FILE))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.max_positions,
              "clean_up_tokenization_spaces": False, **specials}  # no clean-up: decoding as aiayn's
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n", encoding="utf-8")


def _convert_ctranslate2(hf_folder: Path, out: Path, cfg: Any, quantization: str | None) -> None:
    """CTranslate2's TransformersConverter on the Hugging Face folder, with aiayn's decoding conventions."""
    import ctranslate2  # optional: pip install 'aiayn[ct2]' (checked by _require first)

    class Converter(ctranslate2.converters.TransformersConverter):
        """The stock converter, adjusted where aiayn's models differ from the checkpoints it expects."""

        def load_tokenizer(self, tokenizer_class: Any, path: str, **kwargs: Any) -> Any:
            """The tokenizer, its vocabulary padded to the model's rows (CTranslate2 needs one per row)."""
            return _PaddedVocabulary(super().load_tokenizer(tokenizer_class, path, **kwargs), cfg.vocab_size)

        def load_model(self, model_class: Any, path: str, **kwargs: Any) -> Any:
            """The transformers model; a Marian one gets one spare vocabulary row, which the converter drops
            (it expects the <pad> row transformers appends to Marian's vocabulary; aiayn's has none)."""
            model = super().load_model(model_class, path, **kwargs)
            if type(model).__name__ == "MarianMTModel":
                model.resize_token_embeddings(cfg.vocab_size + 1, mean_resizing=False)
            if type(model).__name__ == "OPTForCausalLM":  # the converter pads OPT's vocabulary to a multiple of 8
                model.resize_token_embeddings(-(-cfg.vocab_size // 8) * 8, mean_resizing=False)
            return model

        def _load(self) -> Any:
            """The model spec; Marian's decoder starts from BOS's embedding here (Marian's own: a zero vector)."""
            spec = super()._load()
            spec.config.layer_norm_epsilon = cfg.layer_norm_eps  # CTranslate2 would take its own default
            decoder = getattr(spec, "decoder", None)
            rows = decoder.projection.weight.shape[0]
            if rows > cfg.vocab_size:  # rows added for the converter: a -inf bias keeps them from being chosen
                bias = torch.zeros(rows)
                bias[cfg.vocab_size:] = float("-inf")
                decoder.projection.bias = bias
            if getattr(decoder, "start_from_zero_embedding", False):
                decoder.start_from_zero_embedding = False
                spec.config.decoder_start_token = self._bos
            return spec

    converter = Converter(str(hf_folder))
    converter._bos = json.loads((hf_folder / "special_tokens_map.json").read_text(encoding="utf-8"))["bos_token"]
    try:
        converter.convert(str(out), quantization=quantization, force=True)
    except (ValueError, NotImplementedError, RuntimeError) as error:
        raise ExportError(f"CTranslate2 cannot convert this model: {error}") from None


class _PaddedVocabulary:
    """A transformers tokenizer whose get_vocab() names every row of the model (unused rows: <unused_i>)."""

    def __init__(self, tokenizer: Any, size: int) -> None:
        """Wrap the tokenizer; size is the model's vocab_size."""
        self._tokenizer, self._size = tokenizer, size

    def get_vocab(self) -> dict[str, int]:
        """token -> id for ids 0..size-1."""
        vocab = dict(self._tokenizer.get_vocab())
        for i in range(len(vocab), self._size):
            vocab[f"<unused_{i}>"] = i
        return vocab

    def __getattr__(self, name: str) -> Any:
        """Everything else from the wrapped tokenizer."""
        return getattr(self._tokenizer, name)


# ---------------------------------------------------------------------------------------------------
# The model card


def _card(model: TransformerBase, family: Family | None, conversions: list[str], folder: Path, run: Path | None,
          to: str, quantization: str | None) -> str:
    """README.md: what the model is and does, how it was converted, trained and scored, and how to use it."""
    cfg, entry = model.cfg, of_model(model)
    target = family.hf_class if to == "hf" and family else f"CTranslate2 ({quantization or 'float32'} weights)"
    library = "transformers" if to == "hf" else "ctranslate2"
    lines = ["---", f"library_name: {library}", f"pipeline_tag: {entry.pipeline}", "tags:", "- aiayn",
             "---", "", f"# {folder.parent.name if folder.name == 'model' else folder.name}", "",
             f"{entry.card_kind} trained with aiayn (\"Attention Is All You Need\" in PyTorch), exported by "
             f"`aiayn export` from `{folder}` to {target}.", "", "## Model", "",
             f"{_layers(cfg)}, d_model {cfg.d_model}, {cfg.n_heads} heads, d_ff {cfg.d_ff}, vocabulary "
             f"{cfg.vocab_size}, {model.num_parameters():,} parameters; {cfg.norm}-LN, {cfg.positions} "
             f"positions, {cfg.activation}.", ""]
    if conversions:
        lines += ["Conversions to the target's layout (each exact: the same function, up to float rounding):", ""]
        lines += [f"- {c}" for c in conversions] + [""]
    lines += _usage(model, to)
    train = _read_json(run / "train.json") if run else None
    if train:
        lines += ["## Training", ""]
        data = [f"`{train[k]}`" for k in ("data", "target") if train.get(k)]
        lines += [f"Data: {', '.join(data) if data else 'the bundled corpus'}.", ""]
        recipe = [f"{k}={train[k]}" for k in _RECIPE if train.get(k) is not None]
        lines += [f"Recipe (train.json): {', '.join(recipe)}.", ""]
    scores = _scores(run / "metrics.jsonl") if run else {}
    if scores:
        lines += ["## Scores", "", "| metric | value | step |", "|---|---|---|"]
        lines += [f"| {name} | {value:.4g} | {step} |" for name, (value, step) in scores.items()] + [""]
    if not train:
        lines += ["No run folder (train.json, metrics.jsonl) was found next to the model: training data, recipe "
                  "and scores are not recorded here.", ""]
    return "\n".join(lines)


def _layers(cfg: Any) -> str:
    """'3+3 layers' (encoder+decoder) or 'N layers'."""
    if cfg.n_encoder_layers and cfg.n_decoder_layers:
        return f"{cfg.n_encoder_layers}+{cfg.n_decoder_layers} layers"
    return f"{cfg.n_encoder_layers or cfg.n_decoder_layers} layers"


def _usage(model: TransformerBase, to: str) -> list[str]:
    """A short usage snippet for the target."""
    entry = of_model(model)
    if to == "hf":
        auto = entry.hf_auto
        body = [f"from transformers import AutoTokenizer, {auto}", "tok = AutoTokenizer.from_pretrained(FOLDER)",
                f"model = {auto}.from_pretrained(FOLDER)"]
        if entry.translator:
            body += ["out = model.generate(**tok([\"a sentence\"], return_tensors=\"pt\"))  # beam 4",
                     "print(tok.batch_decode(out, skip_special_tokens=True))"]
        elif entry.causal_lm:
            body += ["out = model.generate(**tok([\"a prompt\"], return_tensors=\"pt\"), max_new_tokens=50)",
                     "print(tok.batch_decode(out, skip_special_tokens=True))"]
        note = ("Hugging Face's beam search divides log-probabilities by |Y|^alpha; `aiayn translate --length-penalty` "
                "uses GNMT's ((5+|Y|)/6)^alpha (§6.1). They pick the same beams with "
                "`length_penalty_form=\"plain\"` in aiayn's generate.") if entry.translator else ""
    else:
        body = ["import ctranslate2, transformers", "tok = transformers.AutoTokenizer.from_pretrained(FOLDER)"]
        if entry.translator:
            body += ["translator = ctranslate2.Translator(FOLDER)",
                     "tokens = tok.convert_ids_to_tokens(tok.encode(\"a sentence\"))",
                     f"out = translator.translate_batch([tokens], beam_size=4, max_decoding_length="
                     f"{model.cfg.max_positions - 1})[0].hypotheses[0]  # positions end at {model.cfg.max_positions}",
                     "print(tok.decode(tok.convert_tokens_to_ids(out), skip_special_tokens=True))"]
        else:
            body += ["generator = ctranslate2.Generator(FOLDER)",
                     "tokens = tok.convert_ids_to_tokens(tok.encode(\"a prompt\"))",
                     "out = generator.generate_batch([tokens], max_length=50, include_prompt_in_result=False)"
                     f"  # prompt + new tokens <= {model.cfg.max_positions}",
                     "print(tok.decode(out[0].sequences_ids[0], skip_special_tokens=True))"]
        note = ""
    return ["## Use", "", "```python", *body, "```", "", *([note, ""] if note else [])]


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file, or None if it is missing or unreadable (the card then says less)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _scores(path: Path) -> dict[str, tuple[float, Any]]:
    """The last value of every evaluation metric in metrics.jsonl (BLEU, chrF, losses, accuracy) and its step."""
    scores: dict[str, tuple[float, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return scores
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        for name, value in record.items() if isinstance(record, dict) else ():
            if name.endswith(("_bleu", "_chrf", "_loss", "_acc", "_ppl")) and isinstance(value, (int, float)):
                scores[name] = (float(value), record.get("step", "?"))
    return scores
