"""`aiayn export`: trained translators and LMs run identically in transformers and CTranslate2; what cannot be
represented is refused with a clear message and nothing written."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every folder here is local

import shutil
import sys
from pathlib import Path

import pytest
import torch
import transformers

import aiayn
from aiayn import DecoderLM, EncoderLM, ModelConfig, Transformer
from aiayn.cli import main
from aiayn.data.lm import bundled_shakespeare, train_wordpiece_tokenizer
from aiayn.data.tokenizer import decode, encode_source, load_tokenizer
from aiayn.io.export import ExportError, export_model
from aiayn.training.lm import LMTrainConfig, train_lm

from .helpers_translation import write_corpus
from .test_interop import _GNMTPenalty, _strip  # HF's beam search with GNMT's penalty; a generation cut as aiayn's

try:
    import ctranslate2
except ImportError:  # the optional extra: pip install 'aiayn[ct2]'
    ctranslate2 = None
needs_ct2 = pytest.mark.skipif(ctranslate2 is None, reason="ctranslate2 is not installed (pip install 'aiayn[ct2]')")

SENTENCES = ["the king", "god of the land", "the man and the son of the king", "water", "light of the city"]
TINY = ["--preset", "tiny", "--vocab-size", "80", "--dev-size", "20", "--test-size", "20", "--batch-tokens", "400",
        "--warmup", "5", "--peak-lr", "3e-3", "--eval-every", "0", "--save-every", "0", "--beam", "1", "--dropout",
        "0", "--threads", "1", "--norm", "post"]  # Marian and BART are post-LN (§3.1)
TINY_PRE = [*TINY[:-2], "--norm", "pre"]  # aiayn train's default: pre-LN, exported as Pegasus
LM_TINY = dict(n_layers=2, n_heads=2, d_model=32, d_ff=64, context=32, batch_size=8, eval_every=0, save_every=0,
               log_every=10, threads=1, dropout=0.0, peak_lr=3e-3, warmup=10, steps=40)
PROMPTS = ["ROMEO:\n", "To be, or not", "KING"]


@pytest.fixture(scope="module")
def translator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder: a tiny translator trained 120 steps on a synthetic word-for-word corpus."""
    tmp = tmp_path_factory.mktemp("export")
    corpus = write_corpus(tmp / "corpus.tsv", n=300)
    assert main(["train", "--data", str(corpus), "--out", str(tmp / "run"), "--steps", "120", *TINY]) == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def pre_translator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder: the same tiny translator, pre-LN (aiayn train's default), trained 120 steps."""
    tmp = tmp_path_factory.mktemp("export-pre")
    corpus = write_corpus(tmp / "corpus.tsv", n=300)
    assert main(["train", "--data", str(corpus), "--out", str(tmp / "run"), "--steps", "120", *TINY_PRE]) == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def translator_hf(translator: Path) -> Path:
    out = translator.parent / "hf"
    assert main(["export", str(translator), "--to", "hf", "--out", str(out)]) == 0
    return out


def _aiayn_translator(run: Path) -> tuple[Transformer, object, torch.Tensor]:
    """The run's model, tokenizer and a right-padded batch of SENTENCES."""
    model, tok = aiayn.load(run / "model"), load_tokenizer(run / "model")
    rows = [encode_source(tok, s) for s in SENTENCES]
    src = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, row in enumerate(rows):
        src[i, :len(row)] = torch.tensor(row)
    return model, tok, src


def test_hf_translator_tokens_and_text_match_aiayn(translator: Path, translator_hf: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    model, tok, src = _aiayn_translator(translator)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(translator_hf))
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(translator_hf)).eval()
    assert type(hf).__name__ == "MarianMTModel"
    assert (hf_tok.bos_token, hf_tok.eos_token, hf_tok.pad_token, hf_tok.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")
    batch = hf_tok(SENTENCES, return_tensors="pt", padding=True)
    assert torch.equal(batch.input_ids, src)  # the same source ids, EOS included
    cfg = model.cfg
    for beams in (1, 4):
        ours = model.generate(src, beam_size=beams, length_penalty=1.0, length_penalty_form="plain",
                              max_new_tokens=20)
        with torch.no_grad():  # HF scores finished beams by log P / |Y|^alpha ("plain"), stops at 4 finished
            out = hf.generate(**batch, num_beams=beams, length_penalty=1.0, early_stopping=True, do_sample=False,
                              max_new_tokens=20)
        theirs = [_strip(row[1:], cfg.eos_id, cfg.pad_id) for row in out.tolist()]  # row[0]: the start token
        assert ours == theirs, f"beam {beams}"
        assert any(ours)
        texts = hf_tok.batch_decode(out, skip_special_tokens=True)
        assert texts == [decode(tok, row) for row in ours]
    greedy_text = []  # `aiayn translate --greedy`: the same text, with its own limit of source length + 50
    for sentence in SENTENCES:
        ids = hf_tok(sentence, return_tensors="pt").input_ids
        out = hf.generate(ids, num_beams=1, max_new_tokens=ids.shape[1] + 50)
        greedy_text.append(hf_tok.decode(out[0], skip_special_tokens=True))
    capsys.readouterr()
    assert main(["translate", str(translator / "model"), *SENTENCES, "--greedy", "--threads", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == greedy_text


def test_pre_ln_translator_exports_to_pegasus_and_generates_as_aiayn(pre_translator: Path, tmp_path: Path) -> None:
    """aiayn train's default (pre-LN) -> PegasusForConditionalGeneration: transformers' generate gives aiayn's
    tokens and text, greedy and beam 4 at alpha 0.6, on 40 held-out sentences, through the exported tokenizer.

    Beam scores are compared where both mean the same: HF divides log P by |Y|^alpha, aiayn by GNMT's
    ((5 + |Y|) / 6)^alpha unless length_penalty_form="plain"; so plain against HF's own, and GNMT against HF's
    search with GNMT's penalty put in (_GNMTPenalty).
    """
    out = tmp_path / "hf"
    assert main(["export", str(pre_translator), "--to", "hf", "--out", str(out)]) == 0
    model, tok = aiayn.load(pre_translator / "model"), load_tokenizer(pre_translator / "model")
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(out)).eval()
    assert type(hf).__name__ == "PegasusForConditionalGeneration" and model.cfg.norm == "pre"
    assert "PegasusForConditionalGeneration" in (out / "README.md").read_text(encoding="utf-8")
    held_out = write_corpus(tmp_path / "held-out.tsv", n=40, seed=7).read_text(encoding="utf-8").splitlines()
    sentences = [line.split("\t")[1] for line in held_out]
    batch = hf_tok(sentences, return_tensors="pt", padding=True)
    assert batch.input_ids[0, :len(encode_source(tok, sentences[0]))].tolist() == encode_source(tok, sentences[0])
    cfg = model.cfg
    cases = {"greedy": (dict(beam_size=1), dict(num_beams=1)),
             "beam 4, plain": (dict(beam_size=4, length_penalty=0.6, length_penalty_form="plain"),
                               dict(num_beams=4, length_penalty=0.6)),
             "beam 4, GNMT": (dict(beam_size=4, length_penalty=0.6),  # aiayn's default (§6.1)
                              dict(num_beams=4, length_penalty=_GNMTPenalty(0.6)))}
    found = {}
    for name, (ours_options, hf_options) in cases.items():
        ours = model.generate(batch.input_ids, max_new_tokens=30, **ours_options)
        with torch.no_grad():
            hf_out = hf.generate(**batch, do_sample=False, early_stopping=True, max_new_tokens=30, **hf_options)
        assert [_strip(row[1:], cfg.eos_id, cfg.pad_id) for row in hf_out.tolist()] == ours, name
        assert hf_tok.batch_decode(hf_out, skip_special_tokens=True) == [decode(tok, row) for row in ours], name
        found[name] = ours
    assert sum(len(row) > 1 for row in found["greedy"]) > 30  # a model that translates, not one that stops
    assert main(["import-hf", str(out), "--out", str(tmp_path / "back")]) == 0  # the Pegasus folder comes back
    back = aiayn.load(tmp_path / "back")
    assert back.cfg.norm == "pre" and back.cfg.extra["huggingface"]["model_type"] == "pegasus"
    assert back.generate(batch.input_ids, max_new_tokens=30) == found["beam 4, GNMT"]


def test_hf_folder_has_a_model_card_from_the_run(translator: Path, translator_hf: Path, tmp_path: Path) -> None:
    card = (translator_hf / "README.md").read_text(encoding="utf-8")
    for part in ("pipeline_tag: translation", "MarianMTModel", "d_model permuted", "## Training", "corpus.tsv",
                 "steps=120", "| test_bleu |"):
        assert part in card, part
    bare = shutil.copytree(translator / "model", tmp_path / "bare")  # a model folder outside any run
    export_model(bare, "hf", tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "## Training" not in card and "No run folder" in card


@needs_ct2
def test_ctranslate2_translator_greedy_matches_aiayn(translator: Path) -> None:
    out = translator.parent / "ct2"
    assert main(["export", str(translator / "model"), "--to", "ctranslate2", "--out", str(out)]) == 0
    model, tok, src = _aiayn_translator(translator)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))  # the tokenizer travels with the model
    ours = model.generate(src, beam_size=1, max_new_tokens=20)
    engine = ctranslate2.Translator(str(out), device="cpu", intra_threads=1)
    tokens = [hf_tok.convert_ids_to_tokens(hf_tok.encode(s)) for s in SENTENCES]
    results = engine.translate_batch(tokens, beam_size=1, max_decoding_length=20)
    theirs = [hf_tok.convert_tokens_to_ids(r.hypotheses[0]) for r in results]
    assert ours == theirs and any(ours)
    int8 = translator.parent / "ct2-int8"
    assert main(["export", str(translator), "--to", "ctranslate2", "--quantization", "int8", "--out", str(int8)]) == 0
    engine = ctranslate2.Translator(str(int8), device="cpu", compute_type="int8", intra_threads=1)
    assert engine.compute_type == "int8_float32"  # int8 weights really ran (not a silent float fallback)
    results = engine.translate_batch(tokens, beam_size=1, max_decoding_length=20)
    theirs = [hf_tok.convert_tokens_to_ids(r.hypotheses[0]) for r in results]
    ours_int8 = aiayn.for_decoding(model, "int8").generate(src, beam_size=1, max_new_tokens=20)
    # both engines quantize the weights per output row to int8 and the activations per call; here int8 changes
    # one fp32 token (row 4 starts with an extra word) in both alike, so this compares int8 with int8
    assert theirs == ours_int8 and any(theirs)


@needs_ct2
@pytest.mark.parametrize("shape", [None, dict(positions="learned", tie_embeddings=False, activation="gelu",
                                            scale_embeddings=False, final_logits_bias=True)])
def test_pre_ln_translator_exports_to_ctranslate2_with_the_same_greedy_tokens(pre_translator: Path, tmp_path: Path,
                                                                               shape: dict | None) -> None:
    """Pre-LN: the pre-norm TransformerSpec holds it, and the decoder starts from BOS. None: the trained pre-LN
    run; else a random pre-LN model of other options. Text goes in and out through the exported tokenizer."""
    model, tok, src = _aiayn_translator(pre_translator)
    folder = pre_translator
    if shape is not None:
        model = Transformer(model.cfg.replace(**shape)).eval()
        if model.cfg.final_logits_bias:
            torch.nn.init.normal_(model.final_logits_bias)
        folder = model.save(tmp_path / "pre", tokenizer=tok)
    assert main(["export", str(folder), "--to", "ctranslate2", "--out", str(tmp_path / "ct2")]) == 0
    # min_length=1: CTranslate2 never ends a translation at its first step (an empty one), aiayn may
    ours = model.generate(src, beam_size=1, max_new_tokens=20, min_length=1)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "ct2"))  # as the model card says
    engine = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu", intra_threads=1)
    tokens = [hf_tok.convert_ids_to_tokens(hf_tok.encode(s)) for s in SENTENCES]
    results = engine.translate_batch(tokens, beam_size=1, max_decoding_length=20)
    texts = [hf_tok.decode(hf_tok.convert_tokens_to_ids(r.hypotheses[0]), skip_special_tokens=True)
             for r in results]
    assert texts == [decode(tok, row) for row in ours] and any(texts)
    assert [hf_tok.convert_tokens_to_ids(r.hypotheses[0]) for r in results] == ours


# --- DecoderLM: post-LN (the paper's defaults) -> OPT, pre-LN (nanoGPT's) -> GPT-2 ---------------------


@pytest.fixture(scope="module", params=["post", "pre"])
def lm_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A character-level DecoderLM trained 40 steps on Shakespeare, post-LN with sinusoids or GPT-2-shaped."""
    tmp = tmp_path_factory.mktemp(f"lm-{request.param}")
    text = tmp / "small.txt"
    text.write_text(bundled_shakespeare()[:20_000], encoding="utf-8")
    shape = {} if request.param == "post" else dict(norm="pre", positions="learned", activation="gelu",
                                                    scale_embeddings=False)
    train_lm(LMTrainConfig(task="lm", data=str(text), out=str(tmp / "run"), **LM_TINY, **shape), log=lambda m: None)
    return tmp / "run"


def test_decoder_lm_runs_identically_in_transformers_and_ctranslate2(lm_run: Path) -> None:
    model, tok = aiayn.load(lm_run / "model"), load_tokenizer_plain(lm_run / "model")
    hf_folder = lm_run.parent / "hf"
    export_model(lm_run, "hf", hf_folder)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(hf_folder))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(hf_folder)).eval()
    assert type(hf).__name__ == ("OPTForCausalLM" if model.cfg.norm == "post" else "GPT2LMHeadModel")
    for prompt in PROMPTS:
        ids = tok.encode(prompt, add_special_tokens=False).ids
        assert hf_tok(prompt).input_ids == ids
        ours = model.generate(torch.tensor([ids]), max_new_tokens=15)[0]
        with torch.no_grad():
            out = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                              do_sample=False, num_beams=1, max_new_tokens=15)
        assert ours == _strip(out[0, len(ids):].tolist(), model.cfg.eos_id, -1)
        assert hf_tok.decode(ours, skip_special_tokens=True) == tok.decode(ours, skip_special_tokens=True)
        if ctranslate2 is not None:
            ct2_folder = lm_run.parent / "ct2"
            if not ct2_folder.exists():
                export_model(lm_run, "ctranslate2", ct2_folder)
            engine = ctranslate2.Generator(str(ct2_folder), device="cpu", intra_threads=1)
            result = engine.generate_batch([hf_tok.convert_ids_to_tokens(ids)], max_length=15, sampling_topk=1,
                                           include_prompt_in_result=False)
            assert result[0].sequences_ids[0] == ours


def load_tokenizer_plain(folder: Path):
    """A model folder's tokenizer.json as a tokenizers.Tokenizer (a char or WordPiece tokenizer)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json"))


# --- EncoderLM -> BertForMaskedLM ------------------------------------------------------------------------


def test_bert_shaped_encoder_lm_exports_to_bert(tmp_path: Path) -> None:
    tok = train_wordpiece_tokenizer(bundled_shakespeare()[:20_000], vocab_size=200)
    cfg = ModelConfig.preset("tiny", vocab_size=tok.get_vocab_size(), n_decoder_layers=0, dropout=0.0,
                             positions="learned", embedding_norm=True, scale_embeddings=False, activation="gelu")
    model = EncoderLM(cfg).eval()
    export_model(model.save(tmp_path / "model", tokenizer=tok), "hf", tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    hf = transformers.AutoModelForMaskedLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert type(hf).__name__ == "BertForMaskedLM" and hf_tok.mask_token == "[MASK]"
    text = "To be or not to [MASK], that is the question."
    ids = tok.encode(text, add_special_tokens=False).ids
    assert hf_tok(text).input_ids == ids
    with torch.no_grad():
        assert float((model(torch.tensor([ids])) - hf(torch.tensor([ids])).logits).abs().max()) < 1e-5
    assert hf_tok.decode(ids, skip_special_tokens=True) == tok.decode(ids)  # [MASK] is special in both


# --- What the target cannot represent is refused, and nothing is written -----------------------------------


def _save(model: aiayn.model.models.TransformerBase, folder: Path) -> Path:
    """The model saved with a tokenizer of its vocabulary size."""
    tok = train_wordpiece_tokenizer("the king and the land of god " * 20, vocab_size=64)
    model.cfg.vocab_size = max(model.cfg.vocab_size, tok.get_vocab_size())
    return model.save(folder, tokenizer=tok)


def _nothing_written(out: Path) -> None:
    """Neither out nor a temporary sibling of it exists."""
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []


@pytest.mark.parametrize("options, message", [
    (dict(norm="pre", positions="learned"), r"MarianMTModel needs norm='post' \(this model: 'pre'\).*"
     r"PegasusForConditionalGeneration needs positions='sinusoidal' \(this model: 'learned'\)"),
    (dict(positions="learned"), r"MarianMTModel needs positions='sinusoidal' \(this model: 'learned'\)"),
])
def test_translator_options_marian_cannot_hold_are_refused(tmp_path: Path, options: dict, message: str,
                                                            capsys: pytest.CaptureFixture) -> None:
    folder = _save(Transformer(ModelConfig.preset("tiny", **options)), tmp_path / "model")
    out = tmp_path / "out"
    assert main(["export", str(folder), "--to", "hf", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "aiayn export: error: cannot export" in err
    assert __import__("re").search(message, err)
    _nothing_written(out)


def test_encoder_lm_without_bert_options_is_refused(tmp_path: Path) -> None:
    folder = _save(EncoderLM(ModelConfig.preset("tiny", n_decoder_layers=0, norm="pre")), tmp_path / "model")
    with pytest.raises(ExportError, match=r"BertForMaskedLM needs norm='post'.*embedding_norm=True"):
        export_model(folder, "hf", tmp_path / "out")
    with pytest.raises(ExportError, match=r"an EncoderLM: the CTranslate2 export takes an encoder-decoder and a "
                                          r"DecoderLM, not its kind; export it with --to hf"):
        export_model(folder, "ctranslate2", tmp_path / "out")
    _nothing_written(tmp_path / "out")


def test_out_folder_rules(tmp_path: Path) -> None:
    folder = _save(DecoderLM(ModelConfig.preset("tiny", n_encoder_layers=0)), tmp_path / "model")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"exists and is not empty: .*--force"):
        export_model(folder, "hf", out)
    assert (out / "keep.txt").read_text() == "mine"
    export_model(folder, "hf", out, force=True)
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_model(folder, "hf", tmp_path / "file")
    with pytest.raises(ExportError, match="--quantization applies to --to ctranslate2 only"):
        export_model(folder, "hf", tmp_path / "q", quantization="int8")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ExportError, match="tokenizer.json is missing"):
        export_model(folder, "hf", tmp_path / "t")


def test_a_failure_while_writing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _save(DecoderLM(ModelConfig.preset("tiny", n_encoder_layers=0)), tmp_path / "model")

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("aiayn.io.export.write_tokenizer", broken)
    with pytest.raises(OSError):
        export_model(folder, "hf", tmp_path / "out")
    _nothing_written(tmp_path / "out")


def test_a_missing_optional_dependency_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    folder = _save(DecoderLM(ModelConfig.preset("tiny", n_encoder_layers=0)), tmp_path / "model")
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 now raises ImportError
    assert main(["export", str(folder), "--to", "ctranslate2", "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == ("aiayn export: error: this export needs ctranslate2: "
                                       "pip install 'aiayn[ct2]'\n")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ExportError, match=r"pip install 'aiayn\[hf\]'"):
        export_model(folder, "hf", tmp_path / "out")
    _nothing_written(tmp_path / "out")


@pytest.mark.slow
@needs_ct2
def test_ctranslate2_int8_bleu_within_half_a_point_of_fp32(tmp_path: Path) -> None:
    """A translator trained to a useful BLEU on the synthetic corpus: CTranslate2 int8 vs fp32, beam 4."""
    import sacrebleu

    corpus, held_out = write_corpus(tmp_path / "corpus.tsv", n=2000), write_corpus(tmp_path / "test.tsv", n=200, seed=7)
    # the small preset (d_model 256): a d_model-32 model loses ~2 BLEU to int8 (52.3 -> 50.3 after 1500 steps)
    flags = ["--preset", "small", "--vocab-size", "80", "--dev-size", "20", "--test-size", "20", "--batch-tokens",
             "800", "--warmup", "50", "--peak-lr", "1e-3", "--eval-every", "0", "--save-every", "0", "--beam", "4",
             "--threads", "1"]
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "run"), "--steps", "300", *flags]) == 0
    pairs = [line.split("\t")[1:] for line in held_out.read_text(encoding="utf-8").splitlines()]
    sources, references = [p[0] for p in pairs], [p[1] for p in pairs]
    bleu = {}
    for quantization in ("float32", "int8"):
        out = tmp_path / quantization
        export_model(tmp_path / "run", "ctranslate2", out, quantization=quantization)
        hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
        engine = ctranslate2.Translator(str(out), device="cpu", intra_threads=1)
        results = engine.translate_batch([hf_tok.convert_ids_to_tokens(hf_tok.encode(s)) for s in sources],
                                         beam_size=4, max_decoding_length=100)  # < max_positions
        hyps = [hf_tok.decode(hf_tok.convert_tokens_to_ids(r.hypotheses[0]), skip_special_tokens=True)
                for r in results]
        bleu[quantization] = sacrebleu.corpus_bleu(hyps, [references]).score
    print(f"CTranslate2 BLEU: float32 {bleu['float32']:.2f}, int8 {bleu['int8']:.2f}")
    assert bleu["float32"] > 30  # a model that translates, so the comparison means something
    assert abs(bleu["int8"] - bleu["float32"]) <= 0.5
