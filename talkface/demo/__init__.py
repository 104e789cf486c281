"""The web demo's logic without the page (app.py builds the page over `TalkFaceDemo`); see talkface/demo/demo.py.

    from talkface.demo import DemoConfig, TalkFaceDemo
"""

from .config import DemoConfig, check_ffmpeg, config_from_args, create_tiny_random_models, parse_generator_specs
from .demo import TalkFaceDemo
from .generate import GenerateResult
from .models import LazyModelCache, ModelStatus
from .score import ScoreResult

__all__ = ["DemoConfig", "GenerateResult", "LazyModelCache", "ModelStatus", "ScoreResult", "TalkFaceDemo",
           "check_ffmpeg", "config_from_args", "create_tiny_random_models", "parse_generator_specs"]
