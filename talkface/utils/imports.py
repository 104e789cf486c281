"""Lazy imports: optional dependencies with an install hint, and talkface's own modules imported on first use.

This is the one module of talkface that uses `importlib`: `require` imports an optional dependency (gradio,
accelerate, a face backend, ...) or says what to install; `import_module` / `lazy_attribute` import a talkface
module by name only when it is needed (the PEP 562 attributes of `talkface`, the sub-commands of the CLI), so
`import talkface` and `talkface --help` stay light.
"""

import importlib
import sys
import threading
import types

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


# Modules an optional dependency imports at its top level for features talkface never uses, and that cost start-up
# time: mediapipe's package __init__ imports its drawing utilities, which import matplotlib.pyplot (about half of
# mediapipe's ~1.4 s import, issue 14) to plot landmarks in 3-D. While `require` imports the dependency, these are
# stand-ins (`_DeferredModule`) that import the real module the first time anything is asked of them.
_DEFERRED_IMPORTS = {"mediapipe": ("matplotlib", "matplotlib.pyplot")}
_DEFERRING = threading.Lock()


class _DeferredModule(types.ModuleType):
    """Stands in for a module while another one imports it; the first attribute asked of it imports the real
    module (a stand-in is in `sys.modules` only during that import) and answers from it."""

    def __getattr__(self, name):
        return getattr(importlib.import_module(self.__name__), name)


def _import_deferring(module: str, deferred: tuple):
    """Import `module` with the modules `deferred` (a package first, then its submodules) as stand-ins, unless one
    of them is imported already (then nothing is gained and the import is a plain one)."""
    with _DEFERRING:
        if module in sys.modules or any(name in sys.modules for name in deferred):
            return importlib.import_module(module)
        stand_ins = {name: _DeferredModule(name) for name in deferred}
        for name, stand_in in stand_ins.items():
            parent, _, child = name.rpartition(".")
            if parent in stand_ins:  # `import package.sub` reads package.sub: it must not ask the package itself
                setattr(stand_ins[parent], child, stand_in)
        sys.modules.update(stand_ins)
        try:
            return importlib.import_module(module)
        finally:
            for name, stand_in in stand_ins.items():
                if sys.modules.get(name) is stand_in:
                    del sys.modules[name]


def require(module: str, purpose: str | None = None):
    """Import `module` or raise a `MissingDependencyError` that says what to install."""
    try:
        if module in _DEFERRED_IMPORTS:
            return _import_deferring(module, _DEFERRED_IMPORTS[module])
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
