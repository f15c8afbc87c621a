"""Decoding: the KV cache against full recomputation, greedy/beam/sampling behaviour, §6.1 defaults, errors."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from aiayn import DecoderLM, ModelConfig, Transformer
from aiayn.inference.decoding import (
    Hypothesis,
    _beam_search,
    _Seq2SeqSteps,
    _Source,
    filter_logits,
    length_penalty,
    sample_next,
)

from .conftest import random_ids

EOS = 2


def eos_prone(model: Transformer, boost: float = 3.0) -> Transformer:
    """Make EOS a frequent argmax of a random model, so searches end at varied lengths."""
    with torch.no_grad():
        table = model.token_embedding.weight
        table[EOS] = table[EOS] * boost
    return model


@pytest.fixture(scope="module")
def copy_model() -> Transformer:
    """A tiny model trained to copy its source (so greedy/beam outputs are known: the source itself)."""
    torch.manual_seed(1)
    cfg = ModelConfig.preset("tiny", vocab_size=16, dropout=0.0, d_model=64, d_ff=128)
    model = Transformer(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    for _ in range(600):  # 300 steps left near-ties that one CPU's rounding decided either way
        lengths = torch.randint(3, 9, (32,))
        src = torch.randint(3, 16, (32, 8))
        src[torch.arange(8)[None, :] >= lengths[:, None]] = cfg.pad_id
        tgt = torch.cat([src, torch.zeros(32, 1, dtype=torch.long)], 1)
        tgt[torch.arange(32), lengths] = cfg.eos_id  # target + EOS, then padding
        tgt_in = torch.cat([torch.full((32, 1), cfg.bos_id), tgt[:, :-1]], 1)
        logits = model(src, tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=cfg.pad_id)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


# --------------------------------------------------------------------------------------- KV cache


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_cached_steps_equal_full_recomputation_at_every_step(tiny_cfg, norm):
    model = eos_prone(Transformer(tiny_cfg.replace(norm=norm)).eval())
    src = random_ids(3, 9)
    src[1, 6:] = tiny_cfg.pad_id  # a padded row: the cross-attention mask must hold in the cache too
    src_keep = src != tiny_cfg.pad_id
    memory = model.encode(src)
    caches = model.new_caches(4)  # smaller than needed: the cache must grow, keeping what it holds
    tgt = torch.full((3, 1), tiny_cfg.bos_id)
    with torch.no_grad():
        for step in range(12):
            cached = model.decode(tgt[:, -1:], memory, src_mask=src_keep, caches=caches, start=step)[:, -1]
            full = model(src, tgt)[:, -1]  # no cache: the whole prefix again
            assert (cached - full).abs().max() < 1e-5, step
            assert torch.equal(cached.argmax(-1), full.argmax(-1))
            tgt = torch.cat([tgt, full.argmax(-1, keepdim=True)], 1)
    # and greedy search (which runs the cached step) returns exactly these tokens, cut at EOS
    expected = [[t for t in row[1:]] for row in tgt.tolist()]
    expected = [row[:row.index(EOS)] if EOS in row else row for row in expected]
    got = model.generate(src, beam_size=1, max_new_tokens=12)
    assert got == expected


def test_decoder_lm_cached_steps_equal_full_recomputation(tiny_cfg):
    model = DecoderLM(tiny_cfg).eval()
    prompt = random_ids(2, 5)
    caches = model.new_caches(8)
    ids = prompt
    with torch.no_grad():
        logits = model(prompt, caches=caches)[:, -1]
        for step in range(10):
            full = model(ids)[:, -1]
            assert (logits - full).abs().max() < 1e-5, step
            ids = torch.cat([ids, full.argmax(-1, keepdim=True)], 1)
            logits = model(ids[:, -1:], caches=caches, start=ids.shape[1] - 1)[:, -1]
    new = ids[:, 5:].tolist()
    expected = [row[:row.index(EOS)] if EOS in row else row for row in new]
    assert model.generate(prompt, max_new_tokens=10) == expected


def test_beam_reorder_keeps_cache_rows_consistent(tiny_cfg):
    """Every finished beam's log-probability equals the sum recomputed without a cache."""
    model = eos_prone(Transformer(tiny_cfg).eval(), 2.5)
    src = random_ids(2, 6)
    src[0, 4:] = tiny_cfg.pad_id
    results = model.generate(src, beam_size=4, n_best=4, return_scores=True, max_new_tokens=10)
    with torch.no_grad():
        for row, hyps in enumerate(results):
            for hyp in hyps:
                ended = len(hyp.tokens) < 10
                out = hyp.tokens + ([EOS] if ended else [])
                tgt = torch.tensor([[tiny_cfg.bos_id] + out[:-1]])
                log_probs = model(src[row:row + 1], tgt)[0].log_softmax(-1)
                total = float(log_probs[torch.arange(len(out)), torch.tensor(out)].sum())
                assert hyp.log_prob == pytest.approx(total, abs=1e-4)


# --------------------------------------------------------------------------------------- beam search


def test_length_penalty_at_hand_computed_values():
    # GNMT form (§6.1 cites Wu et al. 2016): ((5 + |Y|) / 6)^alpha
    assert length_penalty(10, 0.6) == pytest.approx((15 / 6) ** 0.6)
    assert length_penalty(10, 0.6) == pytest.approx(1.7328621, abs=1e-6)
    assert length_penalty(1, 0.6) == pytest.approx(1.0)  # ((5 + 1) / 6)^a = 1 for one token
    assert length_penalty(7, 0.0) == 1.0
    # the plain form of Hugging Face and fairseq: |Y|^alpha
    assert length_penalty(10, 0.6, "plain") == pytest.approx(3.9810717, abs=1e-6)
    assert length_penalty(4, 1.0, "plain") == 4.0
    with pytest.raises(ValueError, match="gnmt"):
        length_penalty(3, 0.6, "nmt")


@pytest.mark.parametrize("form", ["gnmt", "plain"])
def test_beam_scores_are_log_prob_over_the_penalty_best_first(tiny_cfg, form):
    model = eos_prone(Transformer(tiny_cfg).eval())
    hyps = model.generate(random_ids(1, 5), beam_size=4, n_best=4, return_scores=True,
                          length_penalty_form=form, max_new_tokens=15)[0]
    assert len(hyps) == 4 and all(isinstance(h, Hypothesis) for h in hyps)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    for h in hyps:
        length = len(h.tokens) + (1 if len(h.tokens) < 15 else 0)  # |Y| counts the EOS
        expected = {"gnmt": ((5 + length) / 6) ** 0.6, "plain": length ** 0.6}[form]
        assert h.score == pytest.approx(h.log_prob / expected, rel=1e-6)


def test_beam_size_one_equals_greedy(tiny_cfg):
    model = eos_prone(Transformer(tiny_cfg).eval())
    src = random_ids(4, 7)
    src[2, 3:] = tiny_cfg.pad_id
    greedy = model.generate(src, beam_size=1)
    with torch.no_grad():
        source = _Source(model, src, None)
        beam = _beam_search(model.cfg, _Seq2SeqSteps(model, source, max(source.limits)), source.limits, src.device,
                            1, 0.6, "gnmt", 0, 1)
    assert [row[0].tokens for row in beam] == greedy
    assert any(len(row) < 50 for row in greedy)  # some rows stopped at EOS, not only at the limit


def test_beam_result_is_the_same_alone_or_in_a_padded_batch(tiny_cfg):
    model = eos_prone(Transformer(tiny_cfg).eval(), 2.5)
    lengths = [5, 9, 2, 7]
    sources = [random_ids(1, n)[0].tolist() for n in lengths]
    batch = torch.zeros(len(sources), max(lengths), dtype=torch.long)
    for i, row in enumerate(sources):
        batch[i, :len(row)] = torch.tensor(row)
    together = model.generate(batch, n_best=2, return_scores=True)
    for i, row in enumerate(sources):
        alone = model.generate(torch.tensor([row]), n_best=2, return_scores=True)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]], abs=1e-4)
    assert len({len(h[0].tokens) for h in together}) > 1  # the rows really ended at different steps


def test_trained_copy_model_translates_exactly_with_beam_and_greedy(copy_model):
    src = torch.tensor([[5, 6, 7, 8, 9, 10, 11], [12, 4, 3, 0, 0, 0, 0], [15, 14, 13, 12, 0, 0, 0]])
    expected = [[5, 6, 7, 8, 9, 10, 11], [12, 4, 3], [15, 14, 13, 12]]
    assert copy_model.generate(src) == expected  # §6.1 defaults: beam 4, alpha 0.6
    assert copy_model.generate(src, beam_size=1) == expected
    assert copy_model.generate(src, length_penalty_form="plain", beam_size=3) == expected
    nbest = copy_model.generate(src[:1], n_best=3, return_scores=True)[0]
    assert nbest[0].tokens == expected[0] and nbest[1].tokens != expected[0]
    assert nbest[0].score > nbest[1].score >= nbest[2].score


def test_max_length_is_source_length_plus_50_capped_by_max_positions(tiny_cfg):
    model = Transformer(tiny_cfg).eval()
    src = random_ids(3, 10)
    src[1, 4:] = tiny_cfg.pad_id
    out = model.generate(src, beam_size=1, min_length=200)  # EOS suppressed: every row runs to its limit
    assert [len(row) for row in out] == [60, 54, 60]  # §6.1: input length + 50, per sentence
    beam = model.generate(src, beam_size=2, min_length=200)
    assert [len(row) for row in beam] == [60, 54, 60]
    long = random_ids(1, 100)  # 100 + 50 > max_positions=128 decoder positions
    assert len(model.generate(long, beam_size=1, min_length=200)[0]) == 128
    assert [len(r) for r in model.generate(src, beam_size=2, max_new_tokens=3, min_length=5)] == [3, 3, 3]
    assert model.generate(src, max_new_tokens=0) == [[], [], []]


def test_eos_ends_a_row_and_is_not_returned(tiny_cfg):
    model = Transformer(tiny_cfg).eval()
    with torch.no_grad():
        model.token_embedding.weight[EOS] *= 40  # EOS wins every step
    assert model.generate(random_ids(2, 4), beam_size=1) == [[], []]
    assert model.generate(random_ids(2, 4)) == [[], []]
    lengths = [len(r) for r in model.generate(random_ids(2, 4), beam_size=1, min_length=3, max_new_tokens=6)]
    assert all(3 <= n <= 6 for n in lengths)  # no EOS before min_length


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(1, 0, dtype=torch.long), "empty"),
    (torch.tensor([[5, 6, 7], [0, 0, 0]]), r"row\(s\) \[1\] hold only padding"),
    (torch.randint(3, 60, (1, 129)), "max_positions=128"),
    (torch.tensor([[5, 64]]), "outside"),
])
def test_bad_sources_raise_clear_errors(tiny_cfg, bad, message):
    model = Transformer(tiny_cfg)
    for beam in (1, 4):
        with pytest.raises(ValueError, match=message):
            model.generate(bad, beam_size=beam)


def test_bad_options_raise_clear_errors(tiny_cfg):
    model = Transformer(tiny_cfg)
    src = random_ids(1, 3)
    with pytest.raises(TypeError, match="unknown option"):
        model.generate(src, beams=4)
    with pytest.raises(ValueError, match="n_best"):
        model.generate(src, beam_size=2, n_best=3)
    with pytest.raises(ValueError, match="length_penalty_form"):
        model.generate(src, length_penalty_form="wu")
    with pytest.raises(ValueError, match="temperature"):
        model.generate(src, do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="beam_size"):
        model.generate(src, beam_size=0)


def test_generate_restores_training_mode(tiny_cfg):
    model = Transformer(tiny_cfg).train()
    model.generate(random_ids(1, 3), max_new_tokens=2)
    assert model.training


# --------------------------------------------------------------------------------------- sampling


def test_top_k_and_top_p_keep_the_hand_computed_sets():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.15), math.log(0.05)]])
    kept = lambda **kw: torch.isfinite(filter_logits(logits, **kw))[0].tolist()
    assert kept(top_k=2) == [True, True, False, False]
    assert kept(top_p=0.7) == [True, True, False, False]  # 0.5 < 0.7 <= 0.5 + 0.3
    assert kept(top_p=0.85) == [True, True, True, False]
    assert kept(top_p=0.1) == [True, False, False, False]  # the most likely token always stays
    assert kept(top_p=1.0) == [True] * 4
    assert torch.allclose(filter_logits(logits, temperature=2.0), logits / 2.0)


def test_sampling_follows_the_filtered_distribution():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.15), math.log(0.05)]]).expand(20000, 4)
    draws = sample_next(logits, top_k=2, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=4).tolist()
    assert counts[2] == counts[3] == 0
    assert counts[0] / 20000 == pytest.approx(0.5 / 0.8, abs=0.02)  # renormalised over the two kept


def test_seeded_sampling_is_reproducible_for_both_models(tiny_cfg):
    model, lm = Transformer(tiny_cfg).eval(), DecoderLM(tiny_cfg).eval()
    src = random_ids(3, 6)
    runs = [model.generate(src, do_sample=True, seed=s, top_p=0.9, temperature=1.5, max_new_tokens=20)
            for s in (7, 7, 8)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    generator = torch.Generator().manual_seed(7)
    assert model.generate(src, do_sample=True, generator=generator, top_p=0.9, temperature=1.5,
                          max_new_tokens=20) == runs[0]
    lm_runs = [lm.generate(src, do_sample=True, seed=s, top_k=20, max_new_tokens=20) for s in (3, 3, 4)]
    assert lm_runs[0] == lm_runs[1] and lm_runs[0] != lm_runs[2]
    # top_k=1 is greedy
    assert model.generate(src, do_sample=True, top_k=1, seed=0) == model.generate(src, beam_size=1)
    assert lm.generate(src, do_sample=True, top_k=1, seed=0) == lm.generate(src)


# --------------------------------------------------------------------------------------- DecoderLM


def test_lm_prompts_of_different_lengths_decode_as_if_alone(tiny_cfg):
    lm = DecoderLM(tiny_cfg).eval()
    prompts = [[5, 6, 7, 8], [9, 10], [11, 12, 13], [14, 15]]
    alone = [lm.generate([p], max_new_tokens=8)[0] for p in prompts]
    assert lm.generate(prompts, max_new_tokens=8) == alone
    left = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10], [0, 11, 12, 13]])  # left-padded with pad_id
    right = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0], [11, 12, 13, 0]])
    assert lm.generate(left, max_new_tokens=8) == lm.generate(right, max_new_tokens=8) == alone[:3]


def test_lm_pad_id_in_the_middle_of_a_prompt_is_hidden_alike_in_forward_and_generate(tiny_cfg, monkeypatch):
    """pad_id (0, no real token here) inside a prompt: forward hides that key; generate keeps its position and
    hides it too, so every cached step's logits are forward's on the same ids."""
    import aiayn.inference.decoding

    lm = DecoderLM(tiny_cfg).eval()
    prompt = torch.tensor([[5, 6, 0, 7, 8], [9, 0, 0, 10, 11]])
    with torch.no_grad():
        hidden = lm(prompt)
        assert torch.equal(hidden, lm(prompt, mask=prompt != 0))  # the default mask hides pad_id
        assert float((hidden - lm(prompt, mask=torch.ones_like(prompt, dtype=torch.bool))).abs().max()) > 1e-3
    seen: list[torch.Tensor] = []

    def recording_argmax(options, device):
        return lambda logits: seen.append(logits.clone()) or logits.argmax(-1)

    monkeypatch.setattr(aiayn.inference.decoding, "_chooser", recording_argmax)
    for row in prompt:
        seen.clear()
        [new] = lm.generate(row[None], max_new_tokens=6)
        assert len(seen) == len(new) == 6
        ids = row[None]
        with torch.no_grad():
            for logits, token in zip(seen, new):
                assert torch.allclose(logits[0], lm(ids)[0, -1], atol=1e-5)
                ids = torch.cat([ids, torch.tensor([[token]])], 1)
    monkeypatch.undo()
    got = lm.generate(prompt, max_new_tokens=8)
    assert lm.generate(prompt.tolist(), max_new_tokens=8) == got  # id lists alike


def test_lm_cached_forward_takes_a_keep_mask_over_every_position(tiny_cfg):
    lm = DecoderLM(tiny_cfg).eval()
    ids = random_ids(2, 7)
    keep = torch.ones(2, 7, dtype=torch.bool)
    keep[0, 2], keep[1, 4] = False, False
    with torch.no_grad():
        full = lm(ids, mask=keep)
        caches = lm.new_caches(7)
        first = lm(ids[:, :5], mask=keep[:, :5], caches=caches)
        rest = [lm(ids[:, t:t + 1], mask=keep[:, :t + 1], caches=caches, start=t) for t in (5, 6)]
    assert torch.allclose(torch.cat([first, *rest], 1), full, atol=1e-5)
    with pytest.raises(ValueError, match=r"keep-mask over every position so far"):
        lm(ids[:, :1], mask=keep[:, :1], caches=lm.new_caches(4), start=3)


def test_lm_limits_and_errors(tiny_cfg):
    lm = DecoderLM(tiny_cfg).eval()
    assert [len(r) for r in lm.generate([[5] * 120], max_new_tokens=50, min_length=50)] == [8]  # max_positions
    assert lm.generate([[5, 6]], max_new_tokens=0) == [[]]
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        lm.generate([[5], []])
    with pytest.raises(ValueError, match="max_positions"):
        lm.generate([[5] * 128])
    with pytest.raises(TypeError, match="unknown option"):
        lm.generate([[5]], n_best=2)




# --------------------------------------------------------------------------------------- Hugging Face


def _marian_builder():
    """benchmarks/decode.py's aiayn -> MarianMTModel weight copy (an independent implementation)."""
    pytest.importorskip("transformers")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "decode.py"
    spec = importlib.util.spec_from_file_location("bench_decode", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.marian_from_aiayn


def test_greedy_and_beam_match_hugging_face_generate(tiny_cfg):
    model = eos_prone(Transformer(tiny_cfg.replace(max_positions=64)).eval(), 2.5)
    hf = _marian_builder()(model)
    src = random_ids(4, 8)
    with torch.no_grad():
        for beams in (1, 4):
            ours = model.generate(src, beam_size=beams, length_penalty_form="plain", length_penalty=1.0,
                                  max_new_tokens=20)
            theirs = hf.generate(input_ids=src, num_beams=beams, do_sample=False, max_new_tokens=20,
                                 length_penalty=1.0, early_stopping=True)
            theirs = [[t for t in row[1:] if t not in (0, EOS)] for row in theirs.tolist()]
            assert ours == theirs, beams


# --------------------------------------------------------------------------------------- lean step pieces


def test_cross_attention_with_beams_sharing_a_memory_row_equals_repeated_memory():
    from aiayn import KVCache, MultiHeadAttention

    mha = MultiHeadAttention(32, 4).eval()
    x, memory = torch.randn(6, 2, 32), torch.randn(2, 5, 32)  # 2 sources x 3 beams
    keep = torch.tensor([[True] * 5, [True, True, True, False, False]])
    repeated, _ = mha(x, memory=memory.repeat_interleave(3, 0), mask=keep.repeat_interleave(3, 0)[:, None, None])
    shared, _ = mha(x, memory=memory, mask=keep[:, None, None])
    assert torch.allclose(shared, repeated, atol=1e-6)
    _, weights = mha(x, memory=memory, mask=keep[:, None, None], need_weights=True)
    _, weights_repeated = mha(x, memory=memory.repeat_interleave(3, 0),
                              mask=keep.repeat_interleave(3, 0)[:, None, None], need_weights=True)
    assert torch.allclose(weights, weights_repeated, atol=1e-6)
    cache = KVCache()
    first, _ = mha(x, memory=memory, mask=keep[:, None, None], cache=cache)  # fills the static cache
    again, _ = mha(x, memory=memory, mask=keep[:, None, None], cache=cache)  # reads it
    assert cache.keys.shape[0] == 2 and torch.allclose(first, repeated, atol=1e-6)
    assert torch.allclose(again, repeated, atol=1e-6)


@pytest.mark.parametrize("tie", [True, False])
def test_output_projection_equals_the_models_own(tiny_cfg, tie):
    model = Transformer(tiny_cfg.replace(tie_embeddings=tie)).eval()
    hidden = torch.randn(5, 1, tiny_cfg.d_model)
    assert torch.allclose(model.step_projection()(hidden), model.output_logits(hidden)[:, -1], atol=1e-5)


def test_kv_cache_appends_grows_and_reorders_between_two_blocks():
    from aiayn import KVCache

    cache = KVCache(capacity=2)
    steps = [torch.randn(3, 2, 1, 4) for _ in range(3)]
    for step in steps:
        keys, values = cache.append_stacked(torch.stack([step, -step]))
    assert cache.block.shape[3] == 4  # grew past capacity 2, doubling
    assert torch.equal(keys, torch.cat(steps, 2)) and torch.equal(values, -torch.cat(steps, 2))
    block = cache.block
    cache.reorder(torch.tensor([2, 0]))  # beam parents / finished rows leaving: rows 2 and 0 remain
    assert cache.block.data_ptr() != block.data_ptr()  # gathered into the spare block
    keys, values = cache.get()
    assert torch.equal(keys, torch.cat(steps, 2)[[2, 0]]) and torch.equal(values, -keys)
    cache.reorder(torch.tensor([1, 1]))  # both rows follow the old row 0 (beam search's parents)
    assert cache.block.data_ptr() == block.data_ptr()  # back in the first block: nothing allocated again
    keys, values = cache.get()
    assert torch.equal(keys, torch.cat(steps, 2)[[0, 0]]) and torch.equal(values, -keys)
    keys, values = cache.append_stacked(torch.stack([steps[0][:2], -steps[0][:2]]))  # appends after a reorder
    assert torch.equal(keys, torch.cat([torch.cat(steps, 2)[[0, 0]], steps[0][:2]], 2))


# ------------------------------------------------------------------------------------ step threads


def test_a_bad_thread_count_is_refused():
    model = Transformer(ModelConfig.preset("tiny", vocab_size=20, dropout=0.0)).eval()
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            model.generate(torch.tensor([[4, 5]]), threads=bad)


def test_generate_on_a_given_thread_count_gives_the_same_tokens_and_restores_the_count(tiny_cfg):
    model = eos_prone(Transformer(tiny_cfg).eval())
    lm = DecoderLM(tiny_cfg).eval()
    seen: list[int] = []
    hook = model.decoder.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    src = random_ids(3, 7)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results = {}
        for threads in (None, 1, 2):
            seen.clear()
            results[threads] = (model.generate(src, beam_size=1, max_new_tokens=4, threads=threads),
                                model.generate(src, beam_size=3, max_new_tokens=4, threads=threads),
                                lm.generate(src, max_new_tokens=4, threads=threads))
            assert torch.get_num_threads() == 2  # put back after the search
            assert set(seen) == {2 if threads is None else threads}  # torch's count unless one is given
        assert results[None] == results[1] == results[2]
        with pytest.raises(ValueError, match="empty source"):  # an error inside the search restores too
            model.generate(torch.full((1, 3), tiny_cfg.pad_id), threads=1)
        assert torch.get_num_threads() == 2
    finally:
        hook.remove()
        torch.set_num_threads(before)


def test_generate_after_a_fused_optimizer_step_uses_the_new_weights(tiny_cfg):
    # The fused Adam updates weights without bumping their version counters: nothing derived from the
    # weights may be kept across searches (a cached transposed output table once decoded with old weights).
    model = eos_prone(Transformer(tiny_cfg))
    src = random_ids(2, 6)
    before = model.eval().generate(src, beam_size=1, max_new_tokens=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5, fused=True)
    model.train()
    model(src, random_ids(2, 5)).square().mean().backward()
    version = model.token_embedding.weight._version
    optimizer.step()
    assert model.token_embedding.weight._version == version  # the reason for the rule above
    fresh = Transformer(tiny_cfg).eval()
    fresh.load_state_dict(model.state_dict())
    after = model.eval().generate(src, beam_size=1, max_new_tokens=8)
    assert after == fresh.generate(src, beam_size=1, max_new_tokens=8)
    assert after != before  # the step changed the outputs, so the comparison above means something
