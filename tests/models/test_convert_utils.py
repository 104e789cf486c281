"""Safe loading of original checkpoints (talkface/models/convert_utils.py)."""

import pickle

import pytest
import torch

from talkface.errors import ModelLoadError, TalkFaceUserError
from talkface.models.convert_utils import load_original_checkpoint, unwrap_state_dict


def test_plain_state_dict_loads(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save({"state_dict": {"module.a": torch.ones(2)}}, path)
    state = unwrap_state_dict(load_original_checkpoint(path))
    assert list(state) == ["a"] and torch.equal(state["a"], torch.ones(2))


def test_missing_and_non_checkpoint_files(tmp_path):
    with pytest.raises(TalkFaceUserError, match="checkpoint not found"):
        load_original_checkpoint(tmp_path / "missing.pth")
    not_a_checkpoint = tmp_path / "photo.png"
    not_a_checkpoint.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelLoadError, match="is not a PyTorch checkpoint"):
        load_original_checkpoint(not_a_checkpoint)


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch SHOULD_NOT_EXIST",))


def test_code_running_pickle_is_refused_and_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": _RunsCode()}, handle, protocol=2)
    with pytest.raises(ModelLoadError, match=r"refused to load .*system"):
        load_original_checkpoint(path)
    assert not (tmp_path / "SHOULD_NOT_EXIST").exists()
