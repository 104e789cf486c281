"""Training recipes: one class per generator family behind `TrainingRecipe` (base.py), found by `model.type`.

Importing this package registers every recipe below in `RECIPES`.
"""

from .base import DEFAULT_RECIPE, RECIPES, GeneratorStepOutput, TrainingRecipe, recipe_for, register_recipe
from .talkface import TalkFaceTrainingRecipe
from .talklip import TalkLipTrainingRecipe

__all__ = [
    "DEFAULT_RECIPE",
    "RECIPES",
    "GeneratorStepOutput",
    "TalkFaceTrainingRecipe",
    "TalkLipTrainingRecipe",
    "TrainingRecipe",
    "recipe_for",
    "register_recipe",
]
