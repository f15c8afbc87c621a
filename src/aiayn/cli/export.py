"""`aiayn export`: a model to a Hugging Face folder or a CTranslate2 model."""

from __future__ import annotations

import argparse

from ..io.export import QUANTIZATIONS, TARGETS, ExportError, export_model
from .common import UserError, user_errors


def run(args: argparse.Namespace) -> None:
    """Export a model to the runtimes people deploy with: a Hugging Face folder (transformers' Auto classes,
    a tokenizer and a model card) or a CTranslate2 model (translators and DecoderLMs, optionally int8)."""
    try:
        conversions = export_model(args.model_dir, args.to, args.out, quantization=args.quantization,
                                   force=args.force)
    except (ExportError, *user_errors()) as error:
        raise UserError(str(error)) from None
    print(f"exported {args.model_dir} to {args.to}: {args.out}")
    for conversion in conversions:
        print(f"  {conversion}")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn export MODEL_DIR --to hf|ctranslate2 --out DIR [--quantization int8] [--force]`."""
    parser = commands.add_parser(
        "export", help="export a model to Hugging Face transformers or CTranslate2", description=run.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  aiayn export runs/kjv-en-es --to hf --out exported/kjv-en-es-hf\n"
               "  aiayn export runs/kjv-en-es/model --to ctranslate2 --quantization int8 --out exported/kjv-ct2")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="a model folder (config.json, model.safetensors, "
                                                               "tokenizer.json) or a run folder")
    parser.add_argument("--to", required=True, choices=TARGETS, help="hf: a transformers folder; ctranslate2: "
                                                                     "a CTranslate2 model (pip install 'aiayn[ct2]')")
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new or empty)")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default=None,
                        help="ctranslate2 only: weight type (default: float32 as trained)")
    parser.add_argument("--force", action="store_true", help="replace the contents of a non-empty --out")
    parser.set_defaults(run=run)
