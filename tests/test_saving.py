"""Model folders: round trip, and one clear error for each broken folder."""

import json

import pytest
import torch

import aiayn
from aiayn import CheckpointError, DecoderLM, EncoderLM, Transformer

from .conftest import random_ids


@pytest.mark.parametrize("model_class", [Transformer, EncoderLM, DecoderLM])
def test_round_trip_gives_identical_logits(tmp_path, tiny_cfg, model_class):
    model = model_class(tiny_cfg.replace(norm="pre")).eval()
    model.save(tmp_path / "m")
    again = aiayn.load(tmp_path / "m")
    assert type(again) is model_class and again.cfg == model.cfg
    ids = random_ids(2, 6)
    args = (ids, random_ids(2, 4)) if model_class is Transformer else (ids,)
    assert torch.equal(model(*args), again(*args))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


def test_missing_folder_and_files(tmp_path, tiny_cfg):
    with pytest.raises(CheckpointError, match="not a model folder"):
        aiayn.load(tmp_path / "nope")
    Transformer(tiny_cfg).save(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        aiayn.load(tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        aiayn.load(tmp_path / "m")


def test_truncated_and_corrupt_weights(tmp_path, tiny_cfg):
    folder = Transformer(tiny_cfg).save(tmp_path / "m")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        aiayn.load(folder)
    weights.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        aiayn.load(folder)


def test_weights_that_do_not_fit_the_config(tmp_path, tiny_cfg):
    Transformer(tiny_cfg).save(tmp_path / "a")
    Transformer(tiny_cfg.replace(d_ff=48)).save(tmp_path / "b")
    (tmp_path / "b" / "config.json").replace(tmp_path / "a" / "config.json")
    with pytest.raises(CheckpointError, match=r"does not fit its config.json: wrong shapes .*linear1.weight"):
        aiayn.load(tmp_path / "a")
    Transformer(tiny_cfg.replace(n_encoder_layers=1)).save(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text((tmp_path / "b" / "config.json").read_text()
                                                if (tmp_path / "b" / "config.json").exists()
                                                else json.dumps({"model_type": "transformer",
                                                                 **tiny_cfg.to_dict()}))
    with pytest.raises(CheckpointError, match="missing"):
        aiayn.load(tmp_path / "c")


def test_bad_config_json(tmp_path, tiny_cfg):
    folder = Transformer(tiny_cfg).save(tmp_path / "m")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        aiayn.load(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "transformer", "d_modle": 3}))
    with pytest.raises(CheckpointError, match="unknown ModelConfig field"):
        aiayn.load(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "gru"}))  # "rnn" is aiayn's recurrent baseline
    with pytest.raises(CheckpointError, match="unknown model_type 'gru'"):
        aiayn.load(folder)


def test_saving_over_an_existing_model_leaves_no_temporary_files(tmp_path, tiny_cfg):
    Transformer(tiny_cfg).save(tmp_path / "m")
    Transformer(tiny_cfg).save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


def test_saved_files_get_the_usual_permissions(tmp_path, tiny_cfg):
    import os
    import stat

    folder = Transformer(tiny_cfg).save(tmp_path / "m")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.json", "model.safetensors"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o666 & ~umask
