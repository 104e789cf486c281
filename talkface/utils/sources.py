"""Where a model comes from: the ONE rule every loader in talkface follows.

A model is named by a string (or a path), the *spec*. `resolve_source(spec)` decides, in this order:

1. **an existing path** (folder or file, `~` expanded) is local;
   A local folder is checked for damage first (`check_model_files`: config JSON, safetensors headers and sizes).
2. **a registry name** (e.g. ``wav2lip-gan``): asked of `talkface.hub.registry` through `lookup_registry_name`
   (the hook below; until that module exists no spec is a name);
3. **a spec that looks local** and does not exist is an error at once (`ModelLoadError`, a `TalkFaceUserError`),
   never a Hub request: it is absolute, starts with ``.``, ``..`` or ``~``, holds a backslash, has no ``/`` or
   more than one, ends in a weights-file suffix (``.pth``, ``.safetensors``, ...), or is not a valid Hub id;
4. anything else (``owner/name``) is a **Hugging Face Hub id**, fetched through huggingface_hub when used.

`allow_hub=False` turns step 4 into an error too: a default folder that the user did not name (``models/...``)
is never looked up on the Hub.

The resolved `ModelSource` says which step matched; `source.location` is what to hand to ``from_pretrained``
(the local path or the Hub id), and `source.config_file()` / `source.read_config()` read its config.json from
either place with one error rule.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError

LOCAL = "local"
HUB = "hub"

#: file name endings of checkpoints and weights: a spec ending in one is a file path, never a Hub repository
WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".model", ".onnx", ".tar")
# Hub repository ids: owner/name, letters, digits, '-', '_', '.', at most 96 characters each side, no '--' or '..'
_REGISTRY_MODULE = __name__.rsplit(".", 2)[0] + ".hub.registry"  # talkface.hub.registry (issue 12)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


@dataclass(frozen=True)
class ModelSource:
    """A resolved model spec.

    spec: what the caller gave, as a string. kind: `LOCAL` (an existing folder or file) or `HUB` (a Hub id).
    location: the expanded local path, or the Hub id: pass it to ``from_pretrained``. name: the registry name the
    spec was (None when it was a path or a Hub id).
    """

    spec: str
    kind: str
    location: str
    name: str | None = None

    def __str__(self) -> str:
        return self.location

    def __fspath__(self) -> str:
        return self.location

    @property
    def is_local(self) -> bool:
        return self.kind == LOCAL

    @property
    def is_hub(self) -> bool:
        return self.kind == HUB

    @property
    def path(self) -> Path | None:
        """The local path (None for a Hub id)."""
        return Path(self.location) if self.is_local else None

    @property
    def is_file(self) -> bool:
        """A local single file (e.g. an original checkpoint), not a folder."""
        return self.is_local and Path(self.location).is_file()

    def file(self, filename: str, *, what: str = "model", hint: str = "", **hub_kwargs) -> Path:
        """The path of `filename` inside the folder: local, or downloaded from the Hub (cached by huggingface_hub).

        A missing file or an unreachable repository raises `ModelLoadError` naming `what` and the `hint`.
        """
        suffix = f"; {hint}" if hint else ""
        if self.is_local:
            path = Path(self.location) / filename
            if not path.is_file():
                raise ModelLoadError(f"{self.location} has no {filename}, so it is not a {what} folder{suffix}")
            return path
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(self.location, filename, **hub_kwargs))
        except Exception as err:  # the Hub raises many error types; all mean "cannot get the file"
            raise ModelLoadError(f"{what} {self.spec!r} is neither a local folder nor a reachable Hub repository "
                                 f"with {filename} ({type(err).__name__}); check the id and your connection{suffix}"
                                 ) from err

    def config_file(self, *, what: str = "model", hint: str = "") -> Path:
        """The folder's config.json (see `file`)."""
        return self.file("config.json", what=what, hint=hint)

    def read_config(self, *, what: str = "model", hint: str = "") -> dict:
        """The folder's config.json as a dict; an unreadable one raises `ModelLoadError`."""
        config_file = self.config_file(what=what, hint=hint)
        try:
            config = json.loads(Path(config_file).read_text())
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"{config_file} is not a valid config.json ({type(err).__name__}); is this a "
                                 f"talkface {what} folder?") from err
        if not isinstance(config, dict):
            raise ModelLoadError(f"{config_file} is not a valid config.json; is this a talkface {what} folder?")
        return config

    def model_type(self, *, what: str = "model", hint: str = "") -> str:
        """The config's model_type (a config without one raises `ModelLoadError`)."""
        model_type = self.read_config(what=what, hint=hint).get("model_type")
        if not isinstance(model_type, str):
            raise ModelLoadError(f"the config.json of {self.spec} has no valid model_type; is this a talkface "
                                 f"{what} folder?")
        return model_type


def is_hub_id(spec) -> bool:
    """Whether `spec` has the form of a Hub repository id (``owner/name``); says nothing about whether it exists."""
    text = str(spec)
    return bool(_HUB_ID.match(text)) and "--" not in text and ".." not in text and not text.lower().endswith(
        WEIGHT_FILE_SUFFIXES)


def looks_local(spec) -> bool:
    """Whether `spec` can only be a local path (absolute, ./ ../ ~, a backslash, not ``owner/name``, a weights file
    name). An existing path is local too, whatever its form."""
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else str(spec)
    if text.startswith((".", "~", "/")) or os.path.isabs(text) or "\\" in text or (os.sep != "/" and os.sep in text):
        return True
    return not is_hub_id(text)


def lookup_registry_name(spec: str):
    """Step 2 of the rule, the hook for registry names (issue 12).

    When `talkface.hub.registry` exists and defines ``resolve_name(spec)``, that function decides: it returns None
    when `spec` is not a registry name, the local folder (str or path) of a downloaded one, or raises a
    `TalkFaceUserError` for a name that is not usable yet (e.g. one line with the exact `talkface download NAME`
    command). Without that module (or that function) no spec is a name and this returns None.
    Only specs that could be names reach it: no ``/`` or backslash and not starting with ``.`` or ``~``.
    """
    try:
        from ..hub.registry import resolve_name
    except ImportError as err:  # no registry module, or one without resolve_name
        if err.name != _REGISTRY_MODULE:
            raise
        return None
    return resolve_name(spec)


def check_model_files(folder, *, name: str | None = None) -> None:
    """Raise `ModelLoadError` (one line naming the folder and the fix) when a local model folder is damaged: a
    config file that is not JSON, or a `.safetensors` file that is cut short or has a broken header (an
    interrupted copy, a full disk). Reads only the JSON files and the safetensors headers."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    fix = (f"download it again: talkface download {name} --force" if name else
           "convert the original checkpoint again (talkface convert KIND --checkpoint FILE --out "
           f"{folder} --overwrite) or download it again")
    for path in sorted(folder.iterdir()):
        problem = None
        if path.suffix == ".json" and path.name.endswith("config.json"):
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                problem = f"{path.name} is not valid JSON ({type(err).__name__})"
        elif path.suffix == ".safetensors":
            problem = _safetensors_problem(path)
        if problem:
            raise ModelLoadError(f"the model folder {folder} is damaged: {problem}; {fix}")


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's layout (8-byte header length, JSON header, data), or None."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            header_length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            if header_length < 2 or 8 + header_length > size:
                return f"{path.name} is truncated ({size} bytes, its header is incomplete)"
            header = json.loads(handle.read(header_length))
    except (OSError, ValueError) as err:
        return f"{path.name} has an unreadable header ({type(err).__name__})"
    if not isinstance(header, dict):
        return f"{path.name} has an unreadable header"
    try:
        data_end = max((int(entry["data_offsets"][1]) for key, entry in header.items()
                        if key != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return f"{path.name} has an unreadable header"
    if 8 + header_length + data_end > size:
        return f"{path.name} is truncated ({size} of {8 + header_length + data_end} bytes)"
    return None


def _could_be_name(text: str) -> bool:
    return bool(text) and "/" not in text and "\\" not in text and not text.startswith((".", "~"))


def resolve_registry_name(spec, *, what: str = "model", hint: str = "") -> Path | None:
    """Step 2 of the rule alone: the checked folder of a downloaded registry name; None when `spec` is an existing
    path or cannot be a name. A name not downloaded yet raises (`ModelNotDownloadedError`, one line with the exact
    `talkface download NAME` command), before any Hub request. `from_pretrained` of the model classes uses this
    (talkface.hub.mixin), so folders and Hub ids reach transformers as they were given."""
    text = (os.fspath(spec) if isinstance(spec, os.PathLike) else str(spec)).strip()
    if not _could_be_name(text) or Path(text).expanduser().exists():
        return None
    found = lookup_registry_name(text)
    if found is None:
        return None
    suffix = f"; {hint}" if hint else ""
    found_path = Path(os.fspath(found)).expanduser()
    if not found_path.exists():
        raise ModelLoadError(f"{what} {text!r}: its folder {found_path} does not exist{suffix}")
    check_model_files(found_path, name=text)
    return found_path


def resolve_source(spec, *, what: str = "model", hint: str = "", allow_hub: bool = True) -> ModelSource:
    """Apply the rule (module docstring) to `spec` (a str, a path or a `ModelSource`).

    what: the kind of model, for messages ("SyncNet LSE model"); hint: how to get one (appended to errors).
    allow_hub: False for a default location the user did not name: it must exist locally.
    Raises `ModelLoadError` for an empty spec and for a local-looking one that does not exist (no Hub request).
    """
    if isinstance(spec, ModelSource):
        return spec
    suffix = f"; {hint}" if hint else ""
    text = "" if spec is None else (os.fspath(spec) if isinstance(spec, os.PathLike) else str(spec)).strip()
    if not text:
        raise ModelLoadError(f"no {what} given{suffix}")
    path = Path(text).expanduser()
    if path.exists():
        check_model_files(path)
        return ModelSource(text, LOCAL, str(path))
    found_path = resolve_registry_name(text, what=what, hint=hint)
    if found_path is not None:
        return ModelSource(text, LOCAL, str(found_path), name=text)
    if looks_local(spec) or not allow_hub:
        raise ModelLoadError(f"{what} not found at {path}{suffix}")
    return ModelSource(text, HUB, text)


def model_display_name(spec) -> str | None:
    """How outputs name a model (a generated video's metadata, score/lipread JSON, evaluation reports, the demo):
    its registry name, its Hub id, or the base name of its local folder or file, never the full local path (which
    carries user names and the folder layout). Works on a spec (str, path) or a `ModelSource`; None stays None.

    >>> model_display_name("/home/alice/work/models/wav2lip-gan")
    'wav2lip-gan'
    """
    if spec is None:
        return None
    if isinstance(spec, ModelSource):
        if spec.name:
            return spec.name
        return spec.location if spec.is_hub else _base_name(spec.location)
    text = (os.fspath(spec) if isinstance(spec, os.PathLike) else str(spec)).strip()
    path = Path(text).expanduser()
    if text and path.exists():
        return _base_name(path)
    if is_hub_id(text) or _could_be_name(text):  # a Hub id, a registry name (or a plain name such as a class's)
        return text
    return _base_name(path)  # a local path that does not exist (any more)


def _base_name(path) -> str:
    path = Path(path).expanduser()
    return path.name or path.resolve().name or str(path)  # "." -> the folder's own name


__all__ = ["HUB", "LOCAL", "ModelSource", "WEIGHT_FILE_SUFFIXES", "check_model_files", "is_hub_id", "looks_local",
           "lookup_registry_name", "model_display_name", "resolve_registry_name", "resolve_source"]
