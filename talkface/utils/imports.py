"""Lazy imports: optional dependencies with an install hint, and talkface's own modules imported on first use.

This is the one module of talkface that uses `importlib`: `require` imports an optional dependency (gradio,
accelerate, a face backend, ...) or says what to install; `import_module` / `lazy_attribute` import a talkface
module by name only when it is needed (the PEP 562 attributes of `talkface`, the sub-commands of the CLI), so
`import talkface` and `talkface --help` stay light.
"""

import importlib

from ..errors import MissingDependencyError

# module name -> (pip requirement, what it is needed for)
_HINTS = {
    "mediapipe": ("mediapipe==0.10.21", "the default face backend"),
    "dlib": ("dlib face_recognition_models", "the dlib face backend"),
    "face_recognition_models": ("face_recognition_models", "the dlib face backend's landmark model"),
    "face_alignment": ("face_alignment", "the face_alignment (FAN) face backend"),
    "gradio": ("gradio", "the web demo"),
    "gradio_client": ("gradio_client", "the web demo tests"),
    "accelerate": ("accelerate", "training"),
    "matplotlib": ("matplotlib", "evaluation plots"),
    "sentencepiece": ("sentencepiece", "the AV-HuBERT lip-reading tokenizer"),
    "tensorboard": ("tensorboard", "training logs"),
    "skimage": ("scikit-image", "the reference mouth-crop transform"),
}


def require(module: str, purpose: str | None = None):
    """Import `module` or raise a `MissingDependencyError` that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        requirement, default_purpose = _HINTS.get(module, (module, "this feature"))
        raise MissingDependencyError(
            f"{module} is needed for {purpose or default_purpose}; install it with: pip install {requirement}"
        ) from err


def import_module(name: str):
    """Import the module `name` (absolute dotted name) now; for modules that are imported only when used."""
    return importlib.import_module(name)


def lazy_attribute(module: str, name: str):
    """The attribute `name` of the module `module`, importing the module first."""
    return getattr(importlib.import_module(module), name)
