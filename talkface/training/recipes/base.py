"""The training recipe interface: what differs between generator families, behind one class that train.py drives.

`train/train.py` owns the loop (Accelerate, `prepare`, accumulation, mixed precision, checkpoints, logging,
validation) and asks the recipe named by the config's `model.type` for everything else:

* networks: `build_generator()`, `build_discriminator()` (None: no adversarial training);
* losses: `build_losses(discriminator)`, the `losses` section as `ScheduledLoss`es; `describe_schedule()`;
* data: `build_datasets(losses)` (train, validation) and `collate_fn`;
* one training step: `on_step()` (staged schedules), `generator_step()` (one forward and the weighted loss),
  `discriminator_step()`;
* validation: `generator_forward()` on validation batches, and `inference_generator()`, the lip-sync pipeline's
  adapter around the model being trained, which regenerates whole validation videos for LSE / AVS;
* output: `save_final()`, the generator's `save_pretrained` folder with its preprocessing and a model card.

Adding a recipe is one class:

    from talkface.training.recipes import TrainingRecipe, register_recipe

    @register_recipe
    class MyRecipe(TrainingRecipe):
        name = "mine"                      # model.type: mine
        num_frames, img_size = 5, 96       # window length k and face size (properties or class attributes)
        card_kind = "wav2lip"              # model card template of the final folder
        generator_class = MyGeneratorModel

        def build_generator(self, log=logger): ...
        def generator_forward(self, generator, batch, step): ...   # -> (generated (B, k, 3, S, S), extras)
        def inference_generator(self, model): ...                  # -> a LipSyncGenerator adapter
        def feature_extractor(self): ...

Images crossing the interface follow the training batch (`TalkFaceBatch`): float RGB in [0, 1], windows
(batch, k, 3, S, S).
"""

import abc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from ...errors import TalkFaceUserError
from ..data import TalkFaceBatch, collate_talkface
from ..data.builders import build_datasets
from ..losses.core import GeneratorLossInputs, ScheduledLoss, build_generator_losses, discriminator_loss

logger = logging.getLogger(__name__)

#: model.type -> recipe class, filled by `register_recipe`
RECIPES: dict[str, type["TrainingRecipe"]] = {}
DEFAULT_RECIPE = "talkface"


def register_recipe(cls: type["TrainingRecipe"]) -> type["TrainingRecipe"]:
    """Class decorator: make `cls` the recipe of `model.type: <cls.name>`."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a `name` (the model.type it trains) to be registered")
    existing = RECIPES.get(name)
    # the same class defined again (a reloaded module) replaces itself; two different classes cannot share a name
    if existing is not None and (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"model.type {name!r} is already trained by {existing.__module__}.{existing.__qualname__}")
    RECIPES[name] = cls
    return cls


def recipe_for(config: dict) -> "TrainingRecipe":
    """The recipe named by `config["model"]["type"]` (default talkface), built on the whole config."""
    model_type = (config.get("model") or {}).get("type", DEFAULT_RECIPE)
    if model_type not in RECIPES:
        raise TalkFaceUserError(f"model.type={model_type!r} is unknown; use one of {', '.join(sorted(RECIPES))}")
    return RECIPES[model_type](config)


@dataclass
class GeneratorStepOutput:
    """One generator step: the weighted loss to backpropagate, the generated windows, and what to log.

    loss: () float32 total; generated: (batch, k, 3, S, S) RGB in [0, 1]; logs: name -> detached tensor
    ("loss/<name>" per active term, "metric/<name>" for what the terms report, "loss/generator_total").
    """

    loss: torch.Tensor
    generated: torch.Tensor
    logs: dict = field(default_factory=dict)


class TrainingRecipe(abc.ABC):
    """Base class of training recipes (see the module docstring).

    Args:
        config: the whole resolved training config (`talkface.training.config.DEFAULTS` layout).
    """

    #: the `model.type` this recipe trains
    name: ClassVar[str]
    #: template of the model card written into the final folder (talkface.hub.cards)
    card_kind: ClassVar[str]
    #: class of the generator network; checkpoints tell the generator from the discriminator by it
    generator_class: ClassVar[type]
    #: staged schedules leave some parameters without gradients in some steps: DDP must be told
    ddp_find_unused_parameters: ClassVar[bool] = False
    #: the batches of `build_datasets`' datasets
    collate_fn = staticmethod(collate_talkface)

    def __init__(self, config: dict):
        self.config = config

    # -- networks ---------------------------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def num_frames(self) -> int:
        """k: frames per training window."""

    @property
    @abc.abstractmethod
    def img_size(self) -> int:
        """Side of the square face crops the generator works on."""

    @property
    def needs_context(self) -> bool:
        """Whether the generator itself reads the utterance context of a batch (losses declare their own needs)."""
        return False

    @abc.abstractmethod
    def build_generator(self, log=logger) -> torch.nn.Module:
        """The generator to train (a `PreTrainedModel`), built after the seed is set."""

    def build_discriminator(self) -> torch.nn.Module | None:
        """The discriminator trained against the generator, or None (no `gan` loss then)."""
        return None

    # -- losses and data --------------------------------------------------------------------------------------------

    def build_losses(self, discriminator=None) -> list[ScheduledLoss]:
        """The `losses` section as scheduled loss terms; refuses a `gan` loss without a discriminator."""
        losses = build_generator_losses(self.config["losses"])
        if discriminator is None and any(loss.name == "gan" for loss in losses):
            raise TalkFaceUserError("the gan loss needs a discriminator; set a discriminator section (or remove the "
                                    "gan loss)")
        return losses

    def describe_schedule(self, losses: list[ScheduledLoss]) -> str:
        return f"{self.name} losses: " + "; ".join(
            f"{loss.name} (weight {loss.weight:g}) from step {loss.start_step}" for loss in losses)

    def build_datasets(self, losses: list[ScheduledLoss]):
        """(train, validation) datasets from the `dataset` section, with context when a loss or the model needs it."""
        needs_context = self.needs_context or any(loss.term.needs_context for loss in losses)
        return build_datasets(self.config, needs_context, self.num_frames, self.img_size)

    # -- one training step ------------------------------------------------------------------------------------------

    def on_step(self, generator: torch.nn.Module, step: int, log=logger):
        """Apply a staged schedule before `step` (idempotent, so a resumed run lands in the right stage)."""

    @abc.abstractmethod
    def generator_forward(self, generator, batch: TalkFaceBatch, step: int) -> tuple[torch.Tensor, dict]:
        """One generator forward: (generated (batch, k, 3, S, S) RGB in [0, 1], extras for the loss terms)."""

    def generator_step(self, generator, batch: TalkFaceBatch, step: int, losses: list[ScheduledLoss],
                       fake_logits=None) -> GeneratorStepOutput:
        """Forward and the weighted sum of the loss terms active at `step`.

        fake_logits: a function frames -> discriminator logits that does not update the discriminator (the `gan`
        loss), or None.
        """
        generated, extras = self.generator_forward(generator, batch, step)
        inputs = GeneratorLossInputs(generated_frames=generated, batch=batch, fake_logits=fake_logits, step=step,
                                     extras=extras)
        total = generated.new_zeros((), dtype=torch.float32)
        logs = {}
        for loss in losses:
            if not loss.active(step):
                continue
            value = loss.term(inputs)
            total = total + loss.weight * value.float()
            logs[f"loss/{loss.name}"] = value.detach()
            logs.update({f"metric/{key}": metric for key, metric in loss.term.last_metrics().items()})
        if not total.requires_grad:
            # no loss active at this step (a staged schedule): a zero that still reaches every parameter, so the
            # optimizer and DDP see a normal step
            total = total + 0.0 * generated.sum()
        logs["loss/generator_total"] = total.detach()
        return GeneratorStepOutput(loss=total, generated=generated, logs=logs)

    def discriminator_step(self, discriminator, batch: TalkFaceBatch, generated: torch.Tensor):
        """(loss, logs) of the discriminator on real and generated windows; `generated` must be detached."""
        # one forward on real and fake faces: the generator gets no gradient here, and DDP sees a single forward
        # per backward
        faces = torch.cat([batch.target_frames.to(generated.dtype), generated])
        logits = discriminator(faces).logits
        real_logits, fake_logits = logits.split(generated.shape[0])
        loss = discriminator_loss(real_logits, fake_logits)
        logs = {"loss/discriminator": loss.detach(),
                "metric/d_real": torch.sigmoid(real_logits.detach().float()).mean(),
                "metric/d_fake": torch.sigmoid(fake_logits.detach().float()).mean()}
        return loss, logs

    # -- inference and output ---------------------------------------------------------------------------------------

    @abc.abstractmethod
    def inference_generator(self, model: torch.nn.Module):
        """The lip-sync pipeline's adapter (`talkface.pipelines.lipsync.generator.LipSyncGenerator`) around `model`,
        the unwrapped generator being trained; validation regenerates whole videos through it."""

    @abc.abstractmethod
    def feature_extractor(self):
        """The audio preprocessing saved beside the trained weights (what `inference_generator` uses)."""

    def save_final(self, generator, folder, config: dict, step: int, figures: dict | None = None) -> Path:
        """Write the trained generator as a generator folder: weights, preprocessing, recipe and model card.

        figures: final losses / validation metrics ("loss/l1" -> value) for the card.
        """
        import yaml

        from ...hub.cards import write_model_card

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        generator.save_pretrained(folder)
        self.feature_extractor().save_pretrained(folder)
        (folder / "training_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        card_figures = {f"final_{k.replace('/', '_')}": round(v, 5) for k, v in (figures or {}).items()}
        card_info = {"repo_id": config["hub"]["push_to_hub"]} if config["hub"]["push_to_hub"] else {}
        write_model_card(folder, self.card_kind, model=generator, source_checkpoint=f"train/train.py, {step} steps",
                         training_steps=step, **card_info, **card_figures)
        return folder


__all__ = ["DEFAULT_RECIPE", "GeneratorStepOutput", "RECIPES", "TrainingRecipe", "recipe_for", "register_recipe"]
