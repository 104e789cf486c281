"""Inert stand-ins for the fairseq / sentencepiece objects pickled inside AV-HuBERT checkpoints.

A released AV-HuBERT `.pt` file is a fairseq checkpoint: besides tensors and plain dicts it pickles a few objects
(`fairseq.data.dictionary.Dictionary`, `fairseq.data.encoders.sentencepiece_bpe.SentencepieceBPE`,
`sentencepiece.SentencePieceProcessor`, and `argparse.Namespace` in old files). `torch.load(weights_only=True)`
refuses them, and loading with `weights_only=False` would need fairseq installed and would run whatever code the
file names. Instead we allow-list *stub* classes that carry the same module and class names: the unpickler builds
a stub, hands it the pickled state, and nothing else happens. A stub has no behaviour at all, so a file that
names, say, `os.system` or `builtins.eval` is still refused by torch's restricted unpickler.
"""

import torch

# Classes that released AV-HuBERT checkpoints are known to pickle.
KNOWN_CHECKPOINT_CLASSES = (
    "fairseq.data.dictionary.Dictionary",
    "fairseq.data.encoders.sentencepiece_bpe.SentencepieceBPE",
    "sentencepiece.SentencePieceProcessor",
    "argparse.Namespace",
)
# Other names inside these packages also get an inert stub (e.g. other fairseq data classes in older files).
STUBBED_PACKAGES = ("fairseq.", "sentencepiece.")


class PickledObjectStub:
    """Holds the pickled state of an object whose real class is not imported. Runs no code of that class.

    `state` is what the pickle passed to `__setstate__` (for plain classes, the instance `__dict__`;
    for a SentencePieceProcessor, the serialized model proto bytes); `args` / `kwargs` hold constructor arguments
    when the pickle builds the object by calling its class.
    """

    # class-level defaults: an object rebuilt with NEWOBJ gets `__new__` but never `__init__`
    args: tuple = ()
    kwargs: dict = {}
    state = None

    def __init__(self, *args, **kwargs):
        self.__dict__["args"] = args
        self.__dict__["kwargs"] = kwargs
        self.__dict__["state"] = None

    def __setstate__(self, state):
        self.__dict__["state"] = state

    def __getstate__(self):
        return self.__dict__.get("state")

    def __repr__(self):
        return f"<stub of {type(self).__module__}.{type(self).__qualname__}>"


_STUB_CACHE: dict[str, type] = {}


def make_stub_class(full_name: str) -> type:
    """A `PickledObjectStub` subclass named like `full_name` ("package.module.Class"), cached per name."""
    if full_name not in _STUB_CACHE:
        module, _, qualname = full_name.rpartition(".")
        if not module or not qualname.isidentifier():
            raise ValueError(f"not a module-qualified class name: {full_name!r}")
        _STUB_CACHE[full_name] = type(qualname, (PickledObjectStub,), {"__module__": module, "__qualname__": qualname})
    return _STUB_CACHE[full_name]


# numpy scalars (e.g. a best validation loss in `extra_state`) are rebuilt from a dtype and raw bytes; torch's
# documentation lists these reconstructors as safe to allow-list. numpy arrays and anything else stay refused.
_NUMPY_SCALAR_GLOBALS = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype")


def _numpy_global(full_name: str):
    """The real numpy object for an allowed numpy scalar/dtype global, else None."""
    import numpy as np

    if full_name in ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"):
        return np.core.multiarray.scalar
    if full_name == "numpy.dtype":
        return np.dtype
    module, _, name = full_name.rpartition(".")
    if module == "numpy.dtypes" and name.endswith("DType") and isinstance(getattr(np.dtypes, name, None), type):
        return getattr(np.dtypes, name)
    return None


def is_stubbable(full_name: str) -> bool:
    return full_name in KNOWN_CHECKPOINT_CLASSES or full_name.startswith(STUBBED_PACKAGES)


def is_allowed(full_name: str) -> bool:
    """Whether a checkpoint global gets a stub or is a harmless numpy scalar/dtype reconstructor."""
    return is_stubbable(full_name) or _numpy_global(full_name) is not None


def foreign_globals(path) -> list[str]:
    """Globals named by the pickle in `path` that neither torch allows nor a stub covers (read without running it).

    Empty for legitimate checkpoints; e.g. ["posix.system"] for a file crafted to run a shell command. Legacy
    (non-zip) files cannot be inspected this way and give []; torch's restricted unpickler still guards them.
    """
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError, OSError):
        return []
    return sorted(name for name in names if not is_allowed(name))


def checkpoint_stub_classes(path=None) -> list[type]:
    """The stub classes to allow-list when loading `path`.

    Always the known classes; plus, when the file is a zip checkpoint, a stub for every other `fairseq.*` /
    `sentencepiece.*` global it names (found by reading the pickle's opcodes, without running it) and numpy's
    scalar/dtype reconstructors if it uses them. Other globals get nothing, so `torch.load(weights_only=True)`
    refuses them.
    """
    names, numpy_globals = set(KNOWN_CHECKPOINT_CLASSES), []
    if path is not None:
        try:
            found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except (ValueError, RuntimeError, OSError):
            found = []  # legacy (non-zip) format or unreadable: the loader reports the real problem
        names.update(name for name in found if is_stubbable(name))
        numpy_globals = [_numpy_global(name) for name in found if not is_stubbable(name) and _numpy_global(name)]
        if "numpy.dtype" in found:
            # np.dtype(...) yields instances of the concrete dtype classes, which the unpickler then checks
            import numpy as np

            numpy_globals += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")
                              and isinstance(getattr(np.dtypes, name), type)]
    return [make_stub_class(name) for name in sorted(names)] + numpy_globals


def stub_state(obj):
    """The pickled state of a stub (or the object itself when it is plain data)."""
    return obj.state if isinstance(obj, PickledObjectStub) else obj


def stub_fields(obj) -> dict:
    """The attribute dict of a stubbed plain object (`Dictionary`, `SentencepieceBPE`, `Namespace`), or {}."""
    state = stub_state(obj)
    if isinstance(state, dict):
        return state
    if isinstance(obj, dict):
        return obj
    return {}
