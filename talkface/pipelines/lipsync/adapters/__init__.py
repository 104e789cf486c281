"""The built-in generator adapters; importing this package registers them (`@register_generator`)."""

from .talkface_gan import TalkFaceGenerator
from .talklip import TalkLipGenerator
from .wav2lip import Wav2LipGenerator

__all__ = ["TalkFaceGenerator", "TalkLipGenerator", "Wav2LipGenerator"]
