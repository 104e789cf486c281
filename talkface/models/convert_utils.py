"""Shared pieces of the checkpoint converters: safe loading, unwrapping, and writing a model folder.

Converters themselves are pure `state_dict -> state_dict` functions beside each model; this module holds what
they all need around that: reading the original file without running its code, finding the state dict inside
the container, and saving the result atomically (a failed conversion never leaves a half-written folder).
"""

import json
import os
import pickle
import re
from pathlib import Path

import torch

from ..errors import ModelLoadError, OutputError, TalkFaceUserError
from ..utils.io import SafeOutput, check_output


def load_original_checkpoint(path, safe_globals=()):
    """Load an original checkpoint with `torch.load(weights_only=True)`.

    `safe_globals` lists extra classes (allow-listed stand-ins for e.g. fairseq objects) that the unpickler may
    construct. Anything else that the file asks for is refused: no arbitrary code ever runs.
    """
    path = Path(path)
    if not path.is_file():
        raise TalkFaceUserError(f"checkpoint not found: {path}; pass the path of the original .pth/.pt/.model file")
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic not in (b"PK", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):  # torch zip, or legacy pickle
        raise ModelLoadError(f"{path} is not a PyTorch checkpoint; pass the original .pth/.pt/.model weight file")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        unsupported = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(err))
        reason = f"it asks for {unsupported.group(1)}" if unsupported else str(err).strip().splitlines()[0][:200]
        raise ModelLoadError(
            f"refused to load {path}: it needs objects that are not on the allow-list ({reason}); "
            "only plain tensors and known checkpoint classes are loaded, never arbitrary code"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise ModelLoadError(f"cannot read checkpoint {path}: {str(err).splitlines()[0][:300]}") from err


def unwrap_state_dict(checkpoint, container_keys=("state_dict", "model"), strip_prefixes=("module.",)):
    """Find the state dict inside a checkpoint container and strip DataParallel-style prefixes."""
    state_dict = checkpoint
    for key in container_keys:
        if isinstance(state_dict, dict) and key in state_dict and isinstance(state_dict[key], dict):
            state_dict = state_dict[key]
            break
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ModelLoadError("the checkpoint holds no state dict of tensors; is this the right file?")
    for prefix in strip_prefixes:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def check_keys(converted: dict, expected_keys, what: str):
    """Fail loudly, naming a few keys, when the converted state dict does not match the model exactly."""
    converted_keys, expected_keys = set(converted), set(expected_keys)
    missing = sorted(expected_keys - converted_keys)
    unexpected = sorted(converted_keys - expected_keys)
    if missing or unexpected:
        raise ModelLoadError(
            f"the checkpoint does not match the {what} architecture: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]}); is this the right file?"
        )


def load_state_dict_strictly(model, state_dict: dict, what: str, wrong_kind_hints: dict | None = None):
    """Load `state_dict` into `model` with `strict=True`, turning key and shape mismatches into one actionable error.

    wrong_kind_hints: key -> text; when the keys do not match and the file holds one of these keys (which the model
    lacks), the error adds "It looks like <text>." (e.g. the checkpoint of a sibling network and its converter).
    """
    expected = model.state_dict()
    try:
        check_keys(state_dict, expected.keys(), what)
    except ModelLoadError as err:
        hint = next((text for key, text in (wrong_kind_hints or {}).items()
                     if key in state_dict and key not in expected), None)
        if hint:
            raise ModelLoadError(f"{err} It looks like {hint}.") from err
        raise
    wrong_shapes = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in state_dict.items()
                    if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong_shapes:
        key, got, want = wrong_shapes[0]
        raise ModelLoadError(
            f"the checkpoint's tensor shapes do not match the {what} config: {len(wrong_shapes)} differ (e.g. {key}: "
            f"{got} in the file, {want} in the model); pass --config with the architecture it was trained with"
        )
    model.load_state_dict(state_dict, strict=True)
    return model


def check_replaceable_model_folder(folder) -> None:
    """Raise `OutputError` unless `--overwrite` may replace `folder`: it must hold a talkface model (a config.json
    with a known model_type) and be neither the current folder, the home folder, the root nor one of their parents.
    (A folder that contains an input is refused by `talkface.utils.io.check_output` before this is asked.)"""
    from . import MODEL_CLASSES

    folder = Path(folder).expanduser()
    real = folder.resolve()
    for name, protected in (("the current folder", Path.cwd()), ("your home folder", Path.home()),
                            ("the root folder", Path(real.anchor))):
        protected = protected.resolve()
        if real == protected or real in protected.parents:
            which = name if real == protected else f"a folder above {name}"
            raise OutputError(f"--out {folder} is {which}; --overwrite replaces only a model folder: pass the "
                              "model's own folder (e.g. models/wav2lip) or a new one")
    model_type = None
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        pass
    if model_type not in MODEL_CLASSES:
        raise OutputError(f"--out {folder} holds no talkface model (no config.json with a known model_type), so "
                          "--overwrite will not replace it; pass a new folder or the model's own folder")


def _replace_check(overwrite: bool):
    def check(folder):
        if not overwrite:
            raise OutputError(f"--out {folder} exists and is not empty; choose another --out or pass --overwrite "
                              "(which replaces only a talkface model folder)")
        check_replaceable_model_folder(folder)
    return check


def check_model_folder_output(out_dir, inputs=None, overwrite: bool = False) -> Path:
    """Everything `save_model_folder` will refuse, checked before a long conversion starts."""
    out_dir = Path(out_dir).expanduser()
    existing = next((p for p in out_dir.absolute().parents if p.exists()), None)
    if not out_dir.parent.exists():  # save_model_folder creates the missing parents, once the conversion worked
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"cannot create --out {out_dir}: {existing} is not a writable folder; choose another "
                              "--out")
        return out_dir
    check_output(out_dir, inputs, flag="--out", folder=True)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        _replace_check(overwrite)(out_dir)
    return out_dir


def save_model_folder(objects, out_dir, kind: str, overwrite: bool = False, card_info: dict | None = None,
                      inputs=None):
    """Save `objects` (anything with `save_pretrained`) into `out_dir` atomically, with a model card.

    The folder is built as a hidden temporary sibling (`talkface.utils.io.SafeOutput`) and swapped in at the end,
    with modes from the umask; a failure or a signal leaves `out_dir` as it was. An existing non-empty `out_dir`
    is replaced only with `overwrite` and only when it holds a talkface model (`check_replaceable_model_folder`);
    `inputs` (e.g. {"--checkpoint": path}) may be neither the folder nor inside it.
    """
    from ..hub.cards import write_model_card

    out_dir = Path(out_dir).expanduser()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with SafeOutput(out_dir, inputs=inputs, flag="--out", folder=True,
                    replace_folder=_replace_check(overwrite)) as output:
        model = None
        for obj in objects:
            obj.save_pretrained(output.tmp_path)
            if model is None and hasattr(obj, "config"):
                model = obj
        write_model_card(output.tmp_path, kind, model=model, **(card_info or {}))
    return out_dir


def push_folder_to_hub(folder, repo_id: str, private: bool = False, commit_message: str = "Upload talkface model"):
    """Upload a saved model folder (weights, configs, card) to the Hugging Face Hub (`talkface.hub.upload`)."""
    from ..hub.upload import upload_folder_to_hub

    return upload_folder_to_hub(folder, repo_id, private=private, commit_message=commit_message)
