"""One search loop for every model: the language model's beam search against Hugging Face's, and the Steps
protocol both kinds of model run on."""

from __future__ import annotations

import pytest
import torch

import aiayn
from aiayn.inference import decoding
from aiayn.inference.protocols import Steps

transformers = pytest.importorskip("transformers")
V = 50


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """(aiayn DecoderLM, HF GPT2LMHeadModel) with the same random weights, via a saved folder."""
    torch.manual_seed(3)
    config = transformers.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=40,
                                     bos_token_id=V - 1, eos_token_id=V - 1, initializer_range=0.3)
    theirs = transformers.GPT2LMHeadModel(config).eval()
    folder = tmp_path_factory.mktemp("gpt2")
    theirs.save_pretrained(folder)
    return aiayn.from_huggingface(folder), theirs


def test_lm_beam_search_matches_hugging_face(gpt2):
    """EOS suppressed for 8 tokens and alpha 0: both keep the 4 best prefixes by summed log-probability."""
    ours, theirs = gpt2
    prompt = torch.randint(0, V - 1, (3, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, min_new_tokens=8,
                              do_sample=False, num_beams=4, length_penalty=0.0, early_stopping=True,
                              pad_token_id=V - 1)
    expected = [row[5:] for row in out.tolist()]
    got = ours.generate(prompt, max_new_tokens=8, min_length=8, beam_size=4, length_penalty=0.0)
    assert got == expected
    assert got != ours.generate(prompt, max_new_tokens=8, min_length=8)  # not greedy search's output


def test_lm_beam_one_is_greedy_and_prompts_of_other_lengths_decode_as_alone(gpt2):
    ours, _ = gpt2
    prompts = [[3, 4, 5, 6], [7, 8], [9, 10, 11]]
    batched = ours.generate(prompts, max_new_tokens=6, beam_size=3)
    assert batched == [ours.generate([p], max_new_tokens=6, beam_size=3)[0] for p in prompts]
    assert ours.generate(prompts, max_new_tokens=6, beam_size=1) == ours.generate(prompts, max_new_tokens=6)


def test_both_kinds_of_steps_are_steps(gpt2):
    lm, _ = gpt2
    lm_steps = decoding._LMSteps(lm, torch.tensor([[1, 2, 3]]), None, 4, 2)
    translator = aiayn.Transformer(aiayn.ModelConfig.preset("tiny", vocab_size=20, dropout=0.0)).eval()
    source = decoding._Source(translator, torch.tensor([[4, 5, 6]]), 4)
    for steps in (lm_steps, decoding._Seq2SeqSteps(translator, source, 4)):
        assert isinstance(steps, Steps)
    assert lm_steps.logits(torch.zeros(2, 1, dtype=torch.long), 0).shape == (2, V)  # the prompt, for 2 beams


def test_lm_sampling_draws_from_one_generator_across_prompt_lengths(gpt2):
    """Prompts of different lengths decode as separate groups; seed= seeds one generator for all of them, as
    generator= does (a generator per group would repeat the first group's draws)."""
    ours, _ = gpt2
    prompts = [[3, 4], [5, 6, 7], [8, 9]]
    seeded = ours.generate(prompts, max_new_tokens=6, do_sample=True, seed=5)
    assert seeded == ours.generate(prompts, max_new_tokens=6, do_sample=True,
                                   generator=torch.Generator().manual_seed(5))
