"""Broken files and failed writes: a full disk mid-write, torn logs, config.json with unknown or missing
fields, a tokenizer.json from another model, pickled code: one clear error each, older files intact."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
import torch

import aiayn
from aiayn import CheckpointError, Transformer
from aiayn.cli import main
from aiayn.data.tokenizer import train_bpe
from aiayn.io import model_folder as saving
from aiayn.io.atomic import WriteError, atomic_write, atomic_write_text
from aiayn.training import checkpoints, list_checkpoints
from aiayn.training.checkpoints import load_trainer_state
from aiayn.training.run_folder import read_metrics
from aiayn.training.translation import TrainConfig, train

from .helpers_translation import EN, ES, write_corpus

SRC = Path(__file__).resolve().parents[1] / "src" / "aiayn"


def disk_full_after_half(real_write):
    """A writer that writes the first half of what `real_write` would, then fails as a full disk does."""
    def write(obj, filename, *args, **kwargs):
        real_write(obj, filename, *args, **kwargs)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))
    return write


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder (relative name -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- a full disk
def test_full_disk_while_saving_a_model_keeps_the_old_one(tmp_path: Path, tiny_cfg, monkeypatch) -> None:
    old = Transformer(tiny_cfg)
    folder = old.save(tmp_path / "m")
    before = snapshot(folder)
    monkeypatch.setattr(saving, "save_file", disk_full_after_half(saving.save_file))
    with pytest.raises(WriteError) as caught:
        Transformer(tiny_cfg).save(folder)
    message = str(caught.value)
    assert message.startswith(f"could not write {folder / 'model.safetensors'}: No space left on device")
    assert "previous version is unchanged" in message and "Free some disk space" in message
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert snapshot(folder) == before  # no temporary file left, the old weights byte for byte
    again = aiayn.load(folder)
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), again.state_dict().values()))


def test_full_disk_in_a_text_write_and_a_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    atomic_write_text(path, "old\n")

    def half_then_full(tmp: Path) -> None:
        tmp.write_text("ne", encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match="No space left on device; the previous version is unchanged"):
        atomic_write(path, half_then_full)
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with pytest.raises(WriteError, match=r"could not write .*new.txt: No space left on device\. Free"):
        atomic_write(tmp_path / "new.txt", half_then_full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing half-written appears


@pytest.fixture
def file_size_limit():
    """Set RLIMIT_FSIZE (the soft limit, restored after): the kernel then fails any write that grows a file
    past it with EFBIG (Python ignores SIGXFSZ), a real I/O error part-way through a write."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def set_limit(limit: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

    yield set_limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.parametrize("what", ["weights", "trainer state"])
def test_a_real_kernel_write_error_in_safetensors_or_torch_save_is_a_write_error(
        tmp_path: Path, tiny_cfg, file_size_limit, what: str) -> None:
    model = Transformer(tiny_cfg)
    target = tmp_path / ("model.safetensors" if what == "weights" else "trainer.pt")
    state = {"optimizer": torch.optim.Adam(model.parameters()).state_dict(), "weights": model.state_dict()}
    write = ((lambda tmp: saving.save_file(dict(model.state_dict()), str(tmp))) if what == "weights"
             else (lambda tmp: torch.save(state, tmp)))
    atomic_write(target, write)
    before = target.read_bytes()
    file_size_limit(len(before) // 2)
    try:
        with pytest.raises(WriteError) as caught:  # safetensors: SafetensorError, torch: RuntimeError, underneath
            atomic_write(target, write)
    finally:
        file_size_limit(2**62)
    assert str(caught.value).startswith(f"could not write {target}: ")
    assert "the previous version is unchanged. Free some disk space or write elsewhere" in str(caught.value)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [target.name]


def _tiny_run(tmp_path: Path, out: str, **changes) -> TrainConfig:
    corpus = tmp_path / "corpus.tsv"
    if not corpus.exists():
        write_corpus(corpus, n=200)
    values = {"out": str(tmp_path / out), "data": str(corpus), "preset": "tiny", "vocab_size": 60,
              "dev_size": 20, "test_size": 20, "batch_tokens": 300, "steps": 6, "warmup": 5, "peak_lr": 3e-3,
              "log_every": 1, "eval_every": 0, "save_every": 2, "final_test": False, "beam": 1, "seed": 3}
    return TrainConfig(**{**values, **changes})


def test_full_disk_during_a_checkpoint_stops_training_cleanly_and_resume_works(tmp_path: Path, monkeypatch,
                                                                              capsys) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def full_on_second_checkpoint(obj, f, *args, **kwargs):
        calls["n"] += 1
        (disk_full_after_half(real_save) if calls["n"] == 2 else real_save)(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "save", full_on_second_checkpoint)
    cfg = _tiny_run(tmp_path, "run")
    args = ["train", "--data", cfg.data, "--out", cfg.out, "--preset", "tiny", "--vocab-size", "60", "--dev-size",
            "20", "--test-size", "20", "--batch-tokens", "300", "--steps", "6", "--warmup", "5", "--save-every", "2",
            "--eval-every", "0", "--no-final-test", "--beam", "1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert re.search(r"error: could not write .*step_4\.tmp/trainer\.pt: No space left on device", err), err
    assert "Traceback" not in err
    run = Path(cfg.out)
    assert [p.name for p in list_checkpoints(run)] == ["step_2"]
    assert not list((run / "checkpoints").glob(".*"))  # the half-written step_4 folder is gone
    aiayn.load(run / "checkpoints" / "step_2")
    assert load_trainer_state(run / "checkpoints" / "step_2")["step"] == 2
    monkeypatch.setattr(checkpoints.torch, "save", real_save)  # space freed: resume from step 2
    assert main(["train", "--out", cfg.out, "--resume"]) == 0
    assert [p.name for p in list_checkpoints(run)][-1] == "step_6"


# ---------------------------------------------------------------- torn and corrupt run files
def test_a_metrics_line_torn_by_a_kill_is_skipped_and_resume_rewrites_it(tmp_path: Path) -> None:
    cfg = _tiny_run(tmp_path, "torn", steps=4)
    train(cfg, log=lambda _: None)
    metrics = Path(cfg.out) / "metrics.jsonl"
    whole = metrics.read_text()
    metrics.write_text(whole + '{"step": 5, "loss": 3.1')  # killed in the middle of an append
    assert read_metrics(cfg.out) == [json.loads(line) for line in whole.splitlines()]
    train(_tiny_run(tmp_path, "torn", steps=6), resume=True, log=lambda _: None)
    lines = metrics.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line whole again
    assert [r["step"] for r in read_metrics(cfg.out) if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_a_truncated_or_garbage_trainer_state_names_the_checkpoint_to_delete(tmp_path: Path) -> None:
    cfg = _tiny_run(tmp_path, "broken", steps=4)
    train(cfg, log=lambda _: None)
    last = list_checkpoints(cfg.out)[-1]
    state = last / "trainer.pt"
    state.write_bytes(state.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=rf"trainer.pt is truncated or corrupt .*delete {re.escape(str(last))}"):
        load_trainer_state(last)
    state.write_bytes(b"not a torch file" * 8)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_trainer_state(last)


# ---------------------------------------------------------------- config.json
def test_config_json_with_an_unknown_field_is_refused_by_name(tmp_path: Path, tiny_cfg) -> None:
    folder = Transformer(tiny_cfg).save(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_layers": 6}))
    with pytest.raises(CheckpointError, match=r"unknown ModelConfig field\(s\) \['n_layers'\]"):
        aiayn.load(folder)


@pytest.mark.parametrize("field", ["norm", "d_ff", "activation", "positions", "vocab_size"])
def test_config_json_missing_a_field_is_refused_not_defaulted(tmp_path: Path, tiny_cfg, field: str) -> None:
    model = Transformer(tiny_cfg.replace(norm="pre", activation="gelu", positions="learned")).eval()
    folder = model.save(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    del config[field]  # e.g. "norm": a default of "post" would load pre-LN weights into a post-LN model
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"config.json lacks the field\(s\) \['{field}'\]"):
        aiayn.load(folder)


def test_config_json_of_an_older_version_without_later_options_still_loads(tmp_path: Path, tiny_cfg) -> None:
    model = Transformer(tiny_cfg).eval()
    folder = model.save(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    for later in ("type_vocab_size", "embedding_norm", "position_offset", "sinusoid_layout", "final_logits_bias",
                  "extra", "layer_norm_eps", "attention_dropout"):
        config.pop(later)
    (folder / "config.json").write_text(json.dumps(config))
    ids = torch.randint(3, 64, (2, 5))
    assert torch.equal(aiayn.load(folder)(ids, ids), model(ids, ids))


# ---------------------------------------------------------------- tokenizer.json from another model
@pytest.fixture(scope="module")
def translator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model folder with its own tokenizer (untrained weights: only the files matter here)."""
    texts = [" ".join(EN[i:] + ES[:i]) for i in range(len(EN))] * 4
    tok = train_bpe(texts, vocab_size=90)
    folder = tmp_path_factory.mktemp("translator") / "model"
    Transformer(aiayn.ModelConfig.preset("tiny", vocab_size=tok.get_vocab_size())).save(folder, tokenizer=tok)
    return folder


def test_a_tokenizer_from_another_model_of_the_same_size_is_refused(translator: Path, tmp_path: Path,
                                                                     capsys) -> None:
    import shutil

    from tokenizers import Tokenizer

    own = Tokenizer.from_file(str(translator / "tokenizer.json"))
    other = train_bpe([f"zz{i} qq{i % 7} {EN[i % 16]}" for i in range(400)], vocab_size=own.get_vocab_size())
    assert other.get_vocab_size() == own.get_vocab_size()  # size and special ids fit: only the vocabulary differs
    folder = tmp_path / "swapped"
    shutil.copytree(translator, folder)
    other.save(str(folder / "tokenizer.json"))
    assert main(["translate", str(folder), "the king", "--greedy"]) == 1
    err = capsys.readouterr().err
    assert "tokenizer.json is not the tokenizer this model was saved with" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert main(["attention", str(folder), "the king", "--out", str(tmp_path / "pictures")]) == 1
    assert "is not the tokenizer this model was saved with" in capsys.readouterr().err
    lm_folder = tmp_path / "lm"  # the same for `aiayn generate` with a DecoderLM folder
    aiayn.DecoderLM(aiayn.ModelConfig.preset("tiny", vocab_size=own.get_vocab_size())).save(lm_folder, tokenizer=own)
    other.save(str(lm_folder / "tokenizer.json"))
    assert main(["generate", str(lm_folder), "the", "--max-new-tokens", "3"]) == 1
    err = capsys.readouterr().err
    assert "is not the tokenizer this model was saved with" in err and "Traceback" not in err
    own.save(str(folder / "tokenizer.json"), pretty=False)  # the same vocabulary, written differently: fine
    assert main(["translate", str(folder), "the king", "--greedy"]) == 0


def test_a_tokenizer_with_other_special_tokens_is_refused(translator: Path, tmp_path: Path, capsys) -> None:
    import shutil

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bert_like = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    bert_like.pre_tokenizer = pre_tokenizers.Whitespace()
    bert_like.train_from_iterator(EN * 5, trainers.WordPieceTrainer(
        vocab_size=40, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"], show_progress=False))
    folder = tmp_path / "bert_tok"
    shutil.copytree(translator, folder)
    bert_like.save(str(folder / "tokenizer.json"))
    assert main(["translate", str(folder), "the king"]) == 1
    err = capsys.readouterr().err
    assert "token <pad> has id None, expected 0" in err and "Traceback" not in err
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": ')  # truncated
    assert main(["translate", str(folder), "the king"]) == 1
    assert "is not a valid tokenizers JSON file" in capsys.readouterr().err


# ---------------------------------------------------------------- nothing loads pickled code (issue #10, item 5)
def test_the_source_loads_no_pickles_except_torch_load_weights_only() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\((?:[^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in match.group(0):
                offenders.append(f"{path.name}: {match.group(0)}")
        for pattern in (r"pickle\.loads?\(", r"Unpickler", r"allow_pickle\s*=\s*True", r"weights_only\s*=\s*False",
                        r"\bimport (dill|joblib|cloudpickle)",
                        r"(?<![\w.])(?<!def )eval\(", r"(?<![\w.])(?<!def )exec\("):  # a call, not a method's def
            offenders += [f"{path.name}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert not offenders, offenders
    assert re.search(r"torch\.load\(.*weights_only=True", (SRC / "training" / "checkpoints.py").read_text())


def test_a_trainer_state_carrying_pickled_code_is_refused_without_running_it(tmp_path: Path) -> None:
    import pickle

    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (ran,))  # what an attacker's pickle would call on load

    checkpoint = tmp_path / "step_1"
    checkpoint.mkdir()
    torch.save({"step": 1, "optimizer": Payload()}, checkpoint / "trainer.pt")
    with pytest.raises(CheckpointError, match="holds objects other than tensors and plain data"):
        load_trainer_state(checkpoint)
    assert not ran.exists()  # the payload never ran
    with (checkpoint / "trainer.pt").open("wb") as handle:  # a plain pickle, not even torch's zip format
        pickle.dump({"step": 1, "optimizer": Payload()}, handle)
    with pytest.raises(CheckpointError, match="trainer.pt"):
        load_trainer_state(checkpoint)
    assert not ran.exists()


# ---------------------------------------------------------------- durability of atomic writes
def test_atomic_write_syncs_the_file_and_folder_and_clears_temporaries_of_killed_writes(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    import os

    from aiayn.io.atomic import atomic_write_text

    target = tmp_path / "config.json"
    stale = [tmp_path / ".config.json.abc123.tmp", tmp_path / ".config.json.zz.tmp"]  # as a SIGKILL leaves them
    other = tmp_path / ".model.safetensors.q1.tmp"  # another file's temporary: not this write's business
    for path in (*stale, other):
        path.write_text("half")
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    atomic_write_text(target, "{}\n")
    assert target.read_text() == "{}\n"
    assert not any(path.exists() for path in stale) and other.exists()
    assert synced[-1] == str(tmp_path) and synced[0].startswith(str(tmp_path / ".config.json."))  # file, then folder
