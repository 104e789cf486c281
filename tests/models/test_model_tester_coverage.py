"""Every registered talkface model is run through the shared ModelTesterMixin checks."""

import importlib
import inspect
from pathlib import Path

import talkface.models
from talkface.models import avhubert
from tests.models.model_tester import ModelTesterMixin


def test_every_model_class_has_a_model_tester():
    tested = set()
    for path in sorted(Path(__file__).parent.glob("test_modeling_*.py")):
        module = importlib.import_module(f"tests.models.{path.stem}")
        tested |= {cls.model_class for _, cls in inspect.getmembers(module, inspect.isclass)
                   if issubclass(cls, ModelTesterMixin) and cls.model_class is not None}
    expected = {model_class for _, model_class in talkface.models.MODEL_CLASSES.values()}
    expected.add(avhubert.AVHubertForLipReading)
    missing = sorted(cls.__name__ for cls in expected - tested)
    assert not missing, f"add a ModelTesterMixin test class for {', '.join(missing)} in tests/models/"
