"""The one interface between `LipSyncPipeline` and a face generator network.

The pipeline knows nothing about Wav2Lip, TalkLip or our own generator. It asks a `LipSyncGenerator`:
  * its audio rate and native frame rate (`sampling_rate`, `fps`) and how many video frames an audio length needs
    (`num_video_frames`): all three come from the feature extractor saved with the model;
  * to prepare the whole utterance once (`prepare_audio`), so a generator may use a local mel window per frame
    (Wav2Lip) or a global audio encoder over the utterance (TalkLip);
  * then to generate batches of face crops: the pose frames (lower half already masked), identity reference
    frames, and the indices of the video frames they belong to.

Images crossing this interface are float tensors (batch, 3, size, size), RGB, values in [0, 1]. An adapter
converts to whatever its network wants (Wav2Lip works in BGR).

Adapters are found by the `model_type` in a model folder's config.json. An adapter class registers itself with
the `@register_generator("model_type")` decorator; the built-in ones live in `adapters/` and are registered when
that package is imported. Adding a generator means writing one adapter class, never a branch in the pipeline.
"""

import abc
import itertools
import logging
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import ModelLoadError
from ...utils.sources import resolve_source

logger = logging.getLogger(__name__)


@dataclass
class PreparedAudio:
    """Audio conditioning for a whole utterance, indexed by video frame.

    `per_frame` is indexed by video frame number along dim 0 (e.g. mel windows (frames, 1, 80, 16) or
    global audio embeddings (frames, dim)); `num_frames` is how many video frames the audio covers.
    """

    per_frame: torch.Tensor
    num_frames: int
    fps: float


class LipSyncGenerator(abc.ABC):
    """Adapter wrapping a generator network for `LipSyncPipeline`."""

    #: side of the square face crop the network works on
    img_size: int = 96
    #: number of consecutive frames the network generates in one pass (1 for Wav2Lip, k=5 for TalkFaceModel)
    frames_per_step: int = 1
    #: True when `generate` uses the audio only as `audio.per_frame[frame_indices]` and each face (each
    #: `frames_per_step` group) independently of the others in the call: then faces of several files may share a
    #: call (cross-file batching, execution.py). False (the safe default) runs every file in calls of its own.
    per_frame_audio: bool = False

    def __init__(self, model: torch.nn.Module, feature_extractor=None):
        self.model = model.eval()
        self.feature_extractor = feature_extractor

    def _first_tensor(self) -> torch.Tensor | None:
        for tensor in itertools.chain(self.model.parameters(), self.model.buffers()):
            if tensor.is_floating_point():
                return tensor
        return None  # e.g. every layer quantized to int8

    @property
    def device(self) -> torch.device:
        tensor = self._first_tensor()
        return torch.device("cpu") if tensor is None else tensor.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the network's inputs are cast to (float32 for an int8 network: it quantizes them itself)."""
        tensor = self._first_tensor()
        return torch.float32 if tensor is None else tensor.dtype

    @property
    def sampling_rate(self) -> int:
        """Audio rate (Hz) the network's features are computed at; the pipeline decodes the audio at this rate."""
        return int(self.feature_extractor.sampling_rate)

    @property
    def fps(self) -> float:
        """The frame rate the network was trained at: the pipeline's output rate unless the caller asks another."""
        return float(self.feature_extractor.fps)

    def num_video_frames(self, num_samples: int, fps: float) -> int:
        """Video frames at `fps` that `num_samples` of audio (at `sampling_rate`) need: the feature extractor's rule.

        `prepare_audio` of the same audio must give exactly this many frames; the pipeline checks it.
        """
        return int(self.feature_extractor.num_video_frames(int(num_samples), fps))

    def optimize_for_inference(self):
        """The exact fast path: BatchNorms folded into the convolutions, channels-last weights (in place).

        Outputs change only by float rounding; the model can no longer be trained or saved (load it again).
        """
        from ...networks.optimization import optimize_for_inference

        optimize_for_inference(self.model)
        return self

    def to(self, device=None, dtype=None):
        self.model.to(device=device, dtype=dtype)
        return self

    @classmethod
    @abc.abstractmethod
    def from_pretrained(cls, path_or_repo_id, **kwargs) -> "LipSyncGenerator":
        """Load the network (and its feature extractor) from a model folder or Hub id."""

    @abc.abstractmethod
    def prepare_audio(self, waveform: np.ndarray, sampling_rate: int, fps: float) -> PreparedAudio:
        """Turn the whole utterance (mono float32) into per-video-frame conditioning."""

    @abc.abstractmethod
    def generate(self, masked_faces: torch.Tensor, reference_faces: torch.Tensor, audio: PreparedAudio,
                 frame_indices: torch.Tensor) -> torch.Tensor:
        """Generate faces.

        masked_faces, reference_faces: (batch, 3, img_size, img_size) RGB in [0, 1]; masked_faces have the lower
        half set to 0. frame_indices: (batch,) long, the output frame each face belongs to (indexes
        `audio.per_frame`). Returns (batch, 3, img_size, img_size) RGB in [0, 1].
        """


#: config.json model_type -> adapter class, filled by `register_generator` (read it through `generator_adapters()`)
GENERATOR_ADAPTERS: dict[str, type[LipSyncGenerator]] = {}


def register_generator(model_type: str):
    """Class decorator: `load_generator` uses the decorated `LipSyncGenerator` for folders of this `model_type`.

        @register_generator("wav2lip")
        class Wav2LipGenerator(LipSyncGenerator): ...
    """

    def decorator(cls):
        if not (isinstance(cls, type) and issubclass(cls, LipSyncGenerator)):
            raise TypeError(f"@register_generator({model_type!r}) needs a LipSyncGenerator subclass, got {cls!r}")
        existing = GENERATOR_ADAPTERS.get(model_type)
        if existing is not None and (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"model_type {model_type!r} already has the generator adapter "
                             f"{existing.__module__}.{existing.__qualname__}")
        cls.model_type = model_type
        GENERATOR_ADAPTERS[model_type] = cls
        return cls

    return decorator


def generator_adapters() -> dict[str, type[LipSyncGenerator]]:
    """Every registered adapter by model_type, the built-in ones included."""
    from . import adapters  # noqa: F401  importing the package registers the built-in adapters

    return dict(GENERATOR_ADAPTERS)


GENERATOR_HINT = ("pass a folder made by `talkface convert` or a Hub id, e.g. talkface convert wav2lip --checkpoint "
                  "wav2lip_gan.pth --out models/wav2lip")


def load_generator(path_or_repo_id, **kwargs) -> LipSyncGenerator:
    """Load the generator adapter for the model folder or Hub id, chosen by its config's model_type."""
    source = resolve_source(path_or_repo_id, what="generator model", hint=GENERATOR_HINT)
    model_type = source.model_type(what="generator model", hint=GENERATOR_HINT)
    adapters = generator_adapters()
    if model_type not in adapters:
        raise ModelLoadError(
            f"{path_or_repo_id} holds a {model_type!r} model, which is not a generator; "
            f"use one of: {', '.join(sorted(adapters))}"
        )
    return adapters[model_type].from_pretrained(source.location, **kwargs)


__all__ = ["GENERATOR_ADAPTERS", "LipSyncGenerator", "PreparedAudio", "generator_adapters", "load_generator",
           "register_generator"]
