"""A trained translator in fp32, bf16 and int8: test BLEU, greedy agreement with fp32, and sentences/s against
CTranslate2's translate_batch (fp32 and int8 weights converted from the same model) on the same sentences.

aiayn translates as `aiayn translate --input FILE` does (inference.evaluation.translate: sorted by length,
batches of about 4,000 tokens / beam, output in input order); CTranslate2 gets the same source ids as
tokens, the same beam and a token-sized batch. Every contender translates the whole set once per round,
interleaved, after one warm-up over the first 64 sentences.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/translation_precision.py runs/NAME/model --threads 2 --beam 4

Speed also in the other ways of spending the same cores on int8 (as benchmarks/decode.py --layouts): one
intra-op thread ("1t": aiayn's generate threads=1, CTranslate2's intra_threads=1) and single-threaded
workers translating batches at once ("2x1t": aiayn's translate(workers=2), CTranslate2's inter_threads=2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ctranslate2
import torch
from sacrebleu.metrics import BLEU

import aiayn
from aiayn.data.corpus import load_corpus
from aiayn.data.tokenizer import decode, encode_source, load_tokenizer
from aiayn.inference.evaluation import translate
from aiayn.io.ctranslate2 import write_pre_ln_translator


def main() -> None:
    """Quality per precision, then interleaved timing rounds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a pre-LN translator folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, ctranslate2 {ctranslate2.__version__}, threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, cpus={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    model, tok = aiayn.load(args.model).eval(), load_tokenizer(args.model)
    pairs = load_corpus().test
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    ids = [encode_source(tok, s) for s in sources]
    words = [tok.id_to_token(i) or f"<unused_{i}>" for i in range(model.cfg.vocab_size)]
    index = {w: i for i, w in enumerate(words)}
    ours = {p: aiayn.for_decoding(model, p) for p in ("fp32", "bf16", "int8")}
    folder = Path(tempfile.mkdtemp())
    engines = {}
    for compute_type in ("float32", "int8"):
        write_pre_ln_translator(model, tok, folder / compute_type, compute_type)
        engines[compute_type] = ctranslate2.Translator(str(folder / compute_type), device="cpu",
                                                       compute_type=compute_type, intra_threads=args.threads)
    for name, inter in (("int8 1t", 1), (f"int8 {args.threads}x1t", args.threads)):
        engines[name] = ctranslate2.Translator(str(folder / "int8"), device="cpu", compute_type="int8",
                                               intra_threads=1, inter_threads=inter)
    # A Translator sets OpenMP's thread count, which torch shares, to its intra_threads: set torch's again.
    torch.set_num_threads(args.threads)

    def run_ours(precision: str, beam: int, n: int | None = None, **options: int) -> list[str]:
        return translate(ours[precision], tok, sources[:n], beam_size=beam, length_penalty=0.6, **options)

    def run_ct2(compute_type: str, beam: int, n: int | None = None) -> list[str]:
        tokens = [[words[i] for i in row] for row in ids[:n]]
        out = engines[compute_type].translate_batch(tokens, beam_size=beam, max_batch_size=4000 // beam,
                                                    batch_type="tokens", length_penalty=0.6,
                                                    max_decoding_length=max(map(len, ids)) + 50)
        return [decode(tok, [index[w] for w in r.hypotheses[0]]) for r in out]

    contenders: dict[str, Callable[..., list[str]]] = {
        **{f"aiayn {p}": (lambda b, n=None, p=p: run_ours(p, b, n)) for p in ours},
        "aiayn int8 1t": lambda b, n=None: run_ours("int8", b, n, threads=1),
        f"aiayn int8 {args.threads}x1t": lambda b, n=None: run_ours("int8", b, n, workers=args.threads),
        **{f"CT2 {'fp32' if c == 'float32' else c}": (lambda b, n=None, c=c: run_ct2(c, b, n)) for c in engines}}
    greedy = {name: fn(1) for name, fn in contenders.items()}
    print(f"\n{len(sources)} test sentences (John); greedy outputs identical to aiayn fp32's:")
    for name, out in greedy.items():
        same = sum(a == b for a, b in zip(out, greedy["aiayn fp32"]))
        print(f"  {name}: {same}/{len(out)} ({100 * same / len(out):.1f}%)")
    print(f"\nBLEU (sacreBLEU, beam {args.beam}, alpha 0.6) and sentences/s (median of {args.rounds} interleaved "
          f"rounds over all {len(sources)} sentences)")
    for fn in contenders.values():
        fn(args.beam, 64)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    outputs: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            outputs[name] = fn(args.beam)
            seconds[name].append(time.perf_counter() - start)
    print("| contender | test BLEU | greedy = fp32 | sentences/s |")
    print("|---|---:|---:|---:|")
    for name in contenders:
        bleu = BLEU().corpus_score(outputs[name], [references]).score
        same = sum(a == b for a, b in zip(greedy[name], greedy["aiayn fp32"]))
        print(f"| {name} | {bleu:.2f} | {100 * same / len(sources):.1f}% | "
              f"{len(sources) / statistics.median(seconds[name]):.1f} |")


if __name__ == "__main__":
    main()
