"""Checkpoints of a training run: `accelerator.save_state` folders that hold `save_pretrained` model folders.

    checkpoint-<step>/generator/        save_pretrained folder (usable on its own)
    checkpoint-<step>/discriminator/    save_pretrained folder
    checkpoint-<step>/optimizer*.bin, random_states_<rank>.pkl, custom_checkpoint_0.pkl (the step counter), ...

A checkpoint is written to `checkpoint-<step>.partial` and renamed once complete, so a run killed in the middle of a
save (even with SIGKILL) leaves the previous checkpoint intact and never shows a half-written one under the final
name. The `accelerator` arguments are `accelerate.Accelerator`s (duck-typed: accelerate stays an optional
dependency of the library).
"""

import logging
import re
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


class TrainingProgress:
    """The step counter, saved with every checkpoint (accelerator.register_for_checkpointing)."""

    def __init__(self):
        self.global_step = 0

    def state_dict(self):
        return {"global_step": self.global_step}

    def load_state_dict(self, state):
        self.global_step = int(state["global_step"])


def list_checkpoints(output_dir) -> list[Path]:
    """Complete checkpoints, oldest first (a folder is only renamed to checkpoint-<step> once fully written)."""
    folders = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)]
    return sorted(folders, key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)))


def register_pretrained_hooks(accelerator, generator_class: type):
    """Make `save_state` / `load_state` write and read `generator/` and `discriminator/` save_pretrained folders
    instead of accelerate's anonymous model files. A model is the generator when it is a `generator_class`."""

    def folder_name(model) -> str:
        return "generator" if isinstance(model, generator_class) else "discriminator"

    def save_model_hook(models, weights, checkpoint_dir):
        for model in models:
            unwrapped = accelerator.unwrap_model(model)
            if accelerator.is_main_process:
                unwrapped.save_pretrained(Path(checkpoint_dir) / folder_name(unwrapped))
            weights.pop()  # saved above; accelerate must not save it again

    def load_model_hook(models, checkpoint_dir):
        while models:
            unwrapped = accelerator.unwrap_model(models.pop())
            loaded = type(unwrapped).from_pretrained(Path(checkpoint_dir) / folder_name(unwrapped))
            unwrapped.load_state_dict(loaded.state_dict())

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)


def save_checkpoint(accelerator, output_dir, step: int, total_limit: int) -> Path:
    """`checkpoint-<step>` in `output_dir` (through a `.partial` folder), keeping the newest `total_limit`."""
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step}"
    partial = output_dir / f"checkpoint-{step}.partial"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)  # only complete checkpoints carry the final name
        for old in list_checkpoints(output_dir)[:-total_limit]:
            shutil.rmtree(old)
        logger.info(f"saved {final}")
    accelerator.wait_for_everyone()
    return final


__all__ = ["CHECKPOINT_PATTERN", "TrainingProgress", "list_checkpoints", "register_pretrained_hooks",
           "save_checkpoint"]
