"""`aiayn attention`: PNG heatmaps and an HTML explorer of a model's attention on one sentence."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io.atomic import WriteError
from ..viz.collect import collect_attention
from ..viz.explorer import write_html
from ..viz.plots import bare_token, find_token, plot_token_attention, save_figure, write_pngs, write_selected
from .common import UserError, check_out_file, check_out_folder, int_at_least, load_model


def run(args: argparse.Namespace) -> None:
    """Draw a model's attention for one sentence: PNG heatmaps (and an HTML explorer with --html)."""
    if not args.text.strip():
        raise UserError("the text is empty; give a sentence, e.g. aiayn attention MODEL_DIR \"The cat sat.\"")
    check_out_folder(args.out)  # before the model runs
    if args.html:
        check_out_file(args.html, "--html")
    model, tokenizer = load_model(args.model_dir, "attention", device="cpu")
    head = None if args.head is None else _position_or_word(args.head)
    selected = args.kind is not None or args.layer is not None or head is not None
    try:
        record = collect_attention(model, tokenizer, args.text, args.target, beam_size=args.beam)
        kind = args.kind or record.kinds[0]
        focus = find_token(record.tokens(kind)[0], _position_or_word(args.focus)) \
            if args.focus is not None else None
        if selected:  # check the choice before anything is written
            for name in [args.kind] if args.kind else record.kinds:
                record.matrix(name, args.layer or 0, "mean" if head is None else head)
    except ValueError as error:  # over-long text, ids outside the vocabulary, a target for an LM, ...
        raise UserError(str(error)) from None
    if record.notes.get("decoding"):
        print(f"translation ({record.notes['decoding']}): {record.target_text or '(empty)'}")
    try:
        written = write_selected(record, args.out, args.kind, args.layer, head) if selected \
            else write_pngs(record, args.out)
        if focus is not None:
            name = f"focus_{bare_token(record.tokens(kind)[0][focus]) or 'token'}_{focus}.png"
            written.append(save_figure(plot_token_attention(record, focus, kind), Path(args.out) / name))
        if args.html:
            written.append(write_html(record, args.html))
    except WriteError as error:  # a full disk, a folder without write permission
        raise UserError(str(error)) from None
    for path in written:
        print(path)


def _position_or_word(value: str) -> int | str:
    """--focus 5 is a position; --focus it is a word."""
    return int(value) if value.lstrip("-").isdigit() else value


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`aiayn attention MODEL_DIR "text" [--target "..."] [--html FILE] [--out DIR]`."""
    parser = commands.add_parser(
        "attention", help="draw attention heatmaps (PNG) and an HTML explorer for one sentence",
        description=run.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               '  aiayn attention runs/kjv-en-es/model "And God saw the light, that it was good." '
               '--html explorer.html\n'
               '  aiayn attention runs/kjv-en-es/model "In the beginning God created the heaven and the earth." '
               '--kind cross --layer -1 --head mean\n'
               '  aiayn attention MINILM_DIR "The animal didn\'t cross the street because it was too tired" '
               "--focus it")
    parser.add_argument("model_dir", metavar="MODEL_DIR",
                        help="an aiayn model folder (config.json, model.safetensors, tokenizer.json)")
    parser.add_argument("text", metavar="TEXT", help="the source sentence (EncoderLM/DecoderLM: the text)")
    parser.add_argument("--target", default=None,
                        help="the target sentence (encoder-decoder only); default: the model's own translation")
    parser.add_argument("--out", default="attention", metavar="DIR",
                        help="folder for the PNGs (default: ./attention)")
    parser.add_argument("--html", default=None, metavar="FILE", help="also write the HTML attention explorer")
    parser.add_argument("--focus", default=None, metavar="TOKEN",
                        help="also draw where this token (a word or a position) attends in every layer")
    parser.add_argument("--kind", choices=("encoder_self", "decoder_self", "cross"), default=None,
                        help="draw only this kind of attention (default: every kind the model has)")
    parser.add_argument("--layer", type=int, default=None,
                        help="draw only this layer (0 is the first, -1 the last; default: every layer)")
    parser.add_argument("--head", default=None, metavar="H|mean",
                        help="draw only head H, or 'mean' for the mean over heads (default: a grid of all)")
    parser.add_argument("--beam", type=int_at_least(1), default=4,
                        help="beam size for the model's own translation (default 4, as in §6.1)")
    parser.set_defaults(run=run)
