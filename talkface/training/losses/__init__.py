"""Training losses: the generator's terms (core.py) and TalkLip's lip-reading and contrastive terms (talklip.py).

Importing this package registers every loss below in `GENERATOR_LOSSES`.
"""

from . import talklip  # noqa: F401  (registers "lip_reading" and "contrastive")
from .core import (
    GENERATOR_LOSSES,
    GeneratorLossInputs,
    LossTerm,
    ScheduledLoss,
    build_generator_losses,
    register_generator_loss,
)

__all__ = ["GENERATOR_LOSSES", "GeneratorLossInputs", "LossTerm", "ScheduledLoss", "build_generator_losses",
           "register_generator_loss"]
