"""--scheduled-sampling (Mihaylova & Liu 2019): the two-pass step's inputs and loss, against loops by hand."""

import json
from pathlib import Path

import pytest
import torch

from aiayn.cli import main
from aiayn.training import label_smoothed_loss
from aiayn.training.scheduled_sampling import mixed_decoder_input
from aiayn.training.translation import Trainer

from .test_training import _cfg


class Recorder(torch.nn.Module):
    """Stands in for Trainer.net: the model, with every decoder input it was called on kept."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.inputs = model, []

    def forward(self, src, tgt, **options):
        self.inputs.append(tgt.clone())
        return self.model(src, tgt, **options)


def _trainer(tmp_path: Path, **changes) -> Trainer:
    cfg = _cfg(tmp_path, "run", dropout=0.0, label_smoothing=0.1, precision="fp32", **changes)
    trainer = Trainer(cfg, log=lambda _: None)
    trainer.net = Recorder(trainer.model)
    return trainer


@pytest.mark.parametrize("arch", ["transformer", "rnn"])
def test_p1_feeds_the_teacher_forced_argmax_and_scores_the_true_labels(tmp_path: Path, arch: str) -> None:
    trainer = _trainer(tmp_path, arch=arch, scheduled_sampling=1.0)
    batch = trainer._next_batch()
    model, pad = trainer.model, trainer.model.cfg.pad_id
    with torch.no_grad():
        guess = model(batch.src, batch.tgt_in).argmax(-1).tolist()  # teacher-forced: the guess for t + 1
    rows = batch.tgt_in.tolist()
    expected = [[token if t == 0 or token == pad else guess[b][t - 1] for t, token in enumerate(row)]
                for b, row in enumerate(rows)]
    loss = trainer._loss_sum(batch).detach()
    assert len(trainer.net.inputs) == 2
    assert torch.equal(trainer.net.inputs[0], batch.tgt_in)  # pass 1: teacher forced
    assert trainer.net.inputs[1].tolist() == expected  # pass 2: every real non-BOS position replaced
    assert expected != rows  # a random model's guesses are not the targets
    # the loss: pass 2's logits against the true labels, summed over the real ones
    mixed = torch.tensor(expected)
    with torch.no_grad():
        logits = model(batch.src, mixed, tgt_mask=batch.tgt_in != pad)  # (B, T, V)
    real = batch.labels != pad
    by_hand = label_smoothed_loss(logits[real], batch.labels[real], 0.1, pad)
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)
    shifted = torch.cat([mixed[:, 1:], mixed[:, :1]], 1)  # the mixed inputs as if they were the labels
    assert float(loss) != pytest.approx(float(label_smoothed_loss(logits[real], shifted[real], 0.1, pad)), rel=1e-3)


def test_p0_is_the_teacher_forced_step(tmp_path: Path) -> None:
    """The two-pass path at p = 0 gives the default step's loss bit for bit; the default makes one pass."""
    trainer = _trainer(tmp_path)
    batch = trainer._next_batch()
    default = trainer._loss_sum(batch)
    assert len(trainer.net.inputs) == 1
    assert torch.equal(trainer._scheduled_loss_sum(batch, 0.0), default)


def test_mixing_keeps_bos_and_padding_and_replaces_about_p() -> None:
    tgt_in = torch.tensor([[1, 5, 6, 7, 8, 9, 10, 11], [1, 5, 6, 0, 0, 0, 0, 0]]).repeat(500, 1)  # (1000, 8)
    predictions = torch.full_like(tgt_in, 40)
    mixed = mixed_decoder_input(tgt_in, predictions, 0.25, 0, torch.Generator().manual_seed(0))
    assert (mixed[:, 0] == 1).all() and (mixed[tgt_in == 0] == 0).all()
    changed = (mixed != tgt_in).sum().item() / (tgt_in[:, 1:] != 0).sum().item()
    assert changed == pytest.approx(0.25, abs=0.02)
    assert torch.equal(mixed_decoder_input(tgt_in, predictions, 0.0, 0), tgt_in)


def test_the_flag_trains_the_rnn_and_is_recorded_and_checked(tmp_path: Path, capsys) -> None:
    corpus = _cfg(tmp_path, "unused").data
    flags = ["train", "--data", corpus, "--arch", "rnn", "--preset", "tiny", "--vocab-size", "60", "--dev-size",
             "20", "--test-size", "20", "--batch-tokens", "300", "--steps", "2", "--warmup", "1", "--eval-every", "0",
             "--no-final-test", "--threads", "1"]
    with pytest.raises(SystemExit) as error:
        main([*flags, "--out", str(tmp_path / "bad"), "--scheduled-sampling", "1.5"])
    assert error.value.code != 0 and "scheduled" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    main([*flags, "--out", str(tmp_path / "ok"), "--scheduled-sampling", "0.5"])
    assert json.loads((tmp_path / "ok" / "train.json").read_text())["scheduled_sampling"] == 0.5
    assert (tmp_path / "ok" / "model" / "model.safetensors").is_file()
