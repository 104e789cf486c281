"""Train a lip-sync generator with Accelerate: our TalkFace generator (GAN + L1 + VGG-19 perceptual + AV-HuBERT
lip-sync loss), TalkLip, or any generator with a training recipe (`model.type` in the config).

    accelerate launch train/train.py --config train/configs/talkface_avhubert.yaml
    accelerate launch train/train.py --config train/configs/talklip.yaml --data-root data/lrs2
    accelerate launch --config_file train/configs/accelerate_multi_gpu.yaml train/train.py --config ...
    python train/train.py --config ... --resume                      # continue from the last checkpoint
    python train/train.py --dataset synthetic --max-steps 4 --output-dir /tmp/run   # CPU smoke run

The recipe (model sizes, losses and their weights/schedules, optimiser, data) lives in a YAML config; command-line
flags override it, and `--set section.key=value` overrides any entry (e.g. `--set losses.sync.variant=multimodal`).
Without `--config`, `--dataset synthetic` runs the tiny random-weights recipe of train/configs/smoke_tiny.yaml,
and a real run uses the paper recipe of train/configs/talkface_avhubert.yaml. Every key and its default:
`talkface.training.config.DEFAULTS`.

This script is the loop; what differs between generator families (networks, losses, data, one generator step,
one discriminator step, staged schedules, the pipeline adapter used for validation videos, what is saved) is the
`TrainingRecipe` that `model.type` names (talkface/training/recipes/: `talkface` (default), `talklip`).

Output folder:
    config.yaml                 the resolved config of the run
    logs/                       TensorBoard (losses, validation metrics, sample grids)
    checkpoint-<step>/          accelerator.save_state: generator/ and discriminator/ (save_pretrained folders,
                                safetensors), optimizer, RNG and sampler states, training progress
    final/                      the trained generator (save_pretrained + feature extractor + model card)
"""

import argparse
import collections
import logging
import math
import sys
import time
from pathlib import Path

import torch
import yaml

from talkface.errors import TalkFaceUserError
from talkface.training.checkpointing import (
    TrainingProgress,
    list_checkpoints,
    register_pretrained_hooks,
    save_checkpoint,
)
from talkface.training.config import DEFAULTS, apply_overrides, flat_hparams, merge_config, set_entry
from talkface.training.data.builders import check_data_config
from talkface.training.recipes import RECIPES, recipe_for
from talkface.training.validation import image_grid, log_images, validate

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PAPER_CONFIG = CONFIG_DIR / "talkface_avhubert.yaml"
SMOKE_CONFIG = CONFIG_DIR / "smoke_tiny.yaml"

# flag -> the config entry it sets
FLAG_ENTRIES = {
    "dataset": "dataset.name", "data_root": "dataset.root", "output_dir": "output_dir",
    "max_steps": "training.max_steps", "batch_size": "training.batch_size", "learning_rate": "optimizer.lr",
    "gradient_accumulation_steps": "training.gradient_accumulation_steps",
    "mixed_precision": "training.mixed_precision", "seed": "seed", "num_workers": "dataset.num_workers",
    "checkpointing_steps": "training.checkpointing_steps", "validation_steps": "validation.steps",
    "report_to": "training.report_to", "push_to_hub": "hub.push_to_hub",
}


# --- configuration -------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="recipe YAML (default: see above)")
    parser.add_argument("--dataset", choices=["preprocessed", "synthetic"], default=None)
    parser.add_argument("--data-root", default=None, help="preprocessed set (train/preprocess.py --output-dir)")
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps to train for (in all)")
    parser.add_argument("--batch-size", type=int, default=None, help="per-device batch size")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=None)
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--checkpointing-steps", type=int, default=None)
    parser.add_argument("--validation-steps", type=int, default=None)
    parser.add_argument("--report-to", choices=["tensorboard", "none"], default=None)
    parser.add_argument("--cpu", action="store_true", help="train on CPU even when a GPU is there")
    parser.add_argument("--resume", nargs="?", const="latest", default=None,
                        help="resume from the last checkpoint in --output-dir, or from the given checkpoint folder")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="upload the final model to the Hub")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config entry, e.g. --set losses.sync.weight=0.3 (value parsed as YAML)")
    return parser.parse_args(argv)


def load_config(args) -> dict:
    """DEFAULTS <- YAML recipe <- command-line flags <- --set overrides."""
    if args.config is not None:
        config_path = Path(args.config)
    elif args.dataset == "synthetic":
        config_path = SMOKE_CONFIG
    else:
        config_path = PAPER_CONFIG
    if not config_path.is_file():
        raise TalkFaceUserError(f"config not found: {config_path}; pass --config train/configs/talkface_avhubert.yaml")
    recipe = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    for flag, entry in FLAG_ENTRIES.items():
        value = getattr(args, flag)
        if value is not None:
            set_entry(recipe, entry, value)
    if args.data_root is not None and args.dataset is None:
        set_entry(recipe, "dataset.name", "preprocessed")
    if args.cpu:
        set_entry(recipe, "training.cpu", True)
    apply_overrides(recipe, args.set)
    config = merge_config(recipe)  # validates sections and entries, overrides included
    config["config_file"] = str(config_path)
    return config


# --- training ------------------------------------------------------------------------------------------------------


def training_function(config: dict, args) -> dict:
    from accelerate import Accelerator
    from accelerate.logging import get_logger
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration, set_seed

    logger = get_logger("talkface.train")
    training = config["training"]
    output_dir = Path(config["output_dir"])
    report_to = training["report_to"]
    # model.type -> the recipe of that generator family (talkface/training/recipes/)
    recipe = recipe_for(config)
    kwargs_handlers = []
    if recipe.ddp_find_unused_parameters:
        # staged schedules leave some parameters without gradients in some steps
        kwargs_handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    accelerator = Accelerator(
        kwargs_handlers=kwargs_handlers,
        cpu=training["cpu"],
        mixed_precision=training["mixed_precision"],
        gradient_accumulation_steps=training["gradient_accumulation_steps"],
        log_with=None if report_to == "none" else report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # the sampler's order is a function of (seed, epoch): resumed runs see the same batches
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config["seed"]),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(config["seed"])  # before building anything random

    check_data_config(config["dataset"])  # fail on a missing data folder before loading any network

    # Models are built after seeding so every process starts from the same weights.
    generator = recipe.build_generator(logger)
    discriminator = recipe.build_discriminator()
    losses = recipe.build_losses(discriminator)
    for loss in losses:
        # frozen networks (VGG-19, AV-HuBERT, the expert) are moved to the device but never prepared or optimised
        loss.term.to(accelerator.device).eval()
    logger.info(recipe.describe_schedule(losses), main_process_only=True)

    train_dataset, val_dataset = recipe.build_datasets(losses)
    batch_size = training["batch_size"]
    if len(train_dataset) < batch_size * accelerator.num_processes:
        raise TalkFaceUserError(f"{len(train_dataset)} training items are fewer than one batch of {batch_size} per "
                                f"process; lower --batch-size or raise dataset.samples_per_video")
    num_workers = config["dataset"]["num_workers"]
    train_loader = torch.utils.data.DataLoader(
        train_dataset, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=recipe.collate_fn,
        num_workers=num_workers, persistent_workers=False,  # new workers each epoch pick up dataset.set_epoch
    )
    val_loader = None
    if val_dataset is not None and len(val_dataset):
        val_loader = torch.utils.data.DataLoader(val_dataset, batch_size=batch_size, shuffle=False,
                                                 collate_fn=recipe.collate_fn, num_workers=num_workers)
    else:
        logger.warning("no validation videos (raise dataset.val_fraction or give dataset.val_list): validation is "
                       "skipped")

    optimizer_config = config["optimizer"]
    # frozen parts (the expert's audio encoder) have requires_grad=False and stay out of the optimizer
    generator_optimizer = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad],
                                           lr=optimizer_config["lr"], betas=tuple(optimizer_config["betas"]),
                                           weight_decay=optimizer_config["weight_decay"])
    discriminator_optimizer = None
    if discriminator is not None:
        discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=optimizer_config["discriminator_lr"],
                                                   betas=tuple(optimizer_config["betas"]))
    # one prepare for everything: models (DDP), optimizers (mixed precision, accumulation) and loaders (sharding)
    to_prepare = [generator, generator_optimizer, train_loader, val_loader, discriminator, discriminator_optimizer]
    present = [index for index, item in enumerate(to_prepare) if item is not None]
    prepared = accelerator.prepare(*(to_prepare[index] for index in present))
    prepared = prepared if isinstance(prepared, tuple) else (prepared,)
    for index, item in zip(present, prepared):
        to_prepare[index] = item
    generator, generator_optimizer, train_loader, val_loader, discriminator, discriminator_optimizer = to_prepare

    # Checkpoints hold save_pretrained folders (usable on their own) instead of accelerate's anonymous model files.
    register_pretrained_hooks(accelerator, recipe.generator_class)
    progress = TrainingProgress()
    accelerator.register_for_checkpointing(progress)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        if report_to != "none":
            accelerator.init_trackers("talkface", config=flat_hparams(config))

    if args.resume is not None:
        if args.resume == "latest":
            checkpoints = list_checkpoints(output_dir)
            resume_from = checkpoints[-1] if checkpoints else None
            if resume_from is None:
                logger.warning(f"--resume: no checkpoint in {output_dir}, starting from scratch")
        else:
            resume_from = Path(args.resume)
            if not resume_from.is_dir():
                raise TalkFaceUserError(f"--resume {resume_from}: no such checkpoint folder")
        if resume_from is not None:
            accelerator.load_state(str(resume_from))
            logger.info(f"resumed from {resume_from} at step {progress.global_step}", main_process_only=True)

    accumulation = training["gradient_accumulation_steps"]
    # accelerate also steps at the end of the loader, so an epoch has ceil(batches / accumulation) steps
    steps_per_epoch = math.ceil(len(train_loader) / accumulation)
    max_steps = training["max_steps"]
    validation = config["validation"]
    frozen_discriminator_logits = _frozen_logits_fn(accelerator, discriminator)

    def checkpoint():
        save_checkpoint(accelerator, output_dir, progress.global_step, training["checkpoints_total_limit"])

    def run_validation(step):
        return validate(accelerator, recipe, generator, val_loader, losses, config, step)

    announced = set()
    # per-step losses for the caller (tests, notebooks); bounded so long runs do not grow memory
    step_times, last_logs, history = [], {}, collections.deque(maxlen=10000)
    start_step = progress.global_step
    logger.info(f"training {recipe.name} from step {start_step} to {max_steps}: {len(train_dataset)} items, "
                f"{steps_per_epoch} steps per epoch, batch {batch_size} x {accelerator.num_processes} process(es) x "
                f"{accumulation} accumulation", main_process_only=True)
    generator.train()
    if discriminator is not None:
        discriminator.train()
    tick = time.perf_counter()
    while progress.global_step < max_steps:
        epoch, step_in_epoch = divmod(progress.global_step, steps_per_epoch)
        train_loader.set_epoch(epoch)  # sampler order and dataset draws of this epoch
        loader = train_loader
        if step_in_epoch:
            loader = accelerator.skip_first_batches(train_loader, step_in_epoch * accumulation)
        for batch in loader:
            step = progress.global_step
            for loss in losses:
                if loss.start_step == step and step > 0 and loss.name not in announced:
                    announced.add(loss.name)
                    logger.info(f"step {step}: the {loss.name} loss is now active (weight {loss.weight})")
            recipe.on_step(accelerator.unwrap_model(generator), step, logger)  # staged schedule
            with accelerator.accumulate(*[m for m in (generator, discriminator) if m is not None]):
                # --- generator step ---
                with accelerator.autocast():
                    output = recipe.generator_step(generator, batch, step, losses, frozen_discriminator_logits)
                accelerator.backward(output.loss)
                if accelerator.sync_gradients and optimizer_config["max_grad_norm"]:
                    accelerator.clip_grad_norm_(generator.parameters(), optimizer_config["max_grad_norm"])
                generator_optimizer.step()
                generator_optimizer.zero_grad(set_to_none=True)
                logs = dict(output.logs)

                # --- discriminator step ---
                if discriminator is not None:
                    with accelerator.autocast():
                        # .detach(): the discriminator's loss must not reach the generator
                        d_loss, d_logs = recipe.discriminator_step(discriminator, batch, output.generated.detach())
                    accelerator.backward(d_loss)
                    if accelerator.sync_gradients and optimizer_config["max_grad_norm"]:
                        accelerator.clip_grad_norm_(discriminator.parameters(), optimizer_config["max_grad_norm"])
                    discriminator_optimizer.step()
                    discriminator_optimizer.zero_grad(set_to_none=True)
                    logs.update(d_logs)

            if not accelerator.sync_gradients:
                continue
            progress.global_step += 1
            step = progress.global_step
            now = time.perf_counter()
            step_times.append(now - tick)
            tick = now
            last_logs = {k: float(v) for k, v in logs.items()}
            history.append({"step": step, **last_logs})
            if step % training["logging_steps"] == 0 or step == max_steps or step == start_step + 1:
                reduced = {k: accelerator.reduce(v.float().reshape(1), reduction="mean").item()
                           for k, v in logs.items()}
                reduced["train/steps_per_second"] = 1.0 / max(step_times[-1], 1e-9)
                accelerator.log(reduced, step=step)
                accelerator.print(f"step {step}/{max_steps} " + " ".join(
                    f"{k.split('/')[-1]}={v:.4f}" for k, v in reduced.items()))
            if report_to == "tensorboard" and training["image_logging_steps"] and \
                    step % training["image_logging_steps"] == 0:
                log_images(accelerator, "train/samples", image_grid(batch, output.generated), step)
            if val_loader is not None and validation["steps"] and step % validation["steps"] == 0 and \
                    step < max_steps:
                run_validation(step)
            if training["save"] and training["checkpointing_steps"] and step % training["checkpointing_steps"] == 0:
                checkpoint()
            if step >= max_steps:
                break

    checkpoints = list_checkpoints(output_dir)
    if training["save"] and (not checkpoints or not checkpoints[-1].name.endswith(f"-{progress.global_step}")):
        checkpoint()  # the end state is always resumable (e.g. to train further with a larger --max-steps)
    val_metrics = {}
    if validation["batches"] and val_loader is not None:
        val_metrics = run_validation(progress.global_step)

    final_dir = output_dir / "final"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and training["save"]:
        recipe.save_final(accelerator.unwrap_model(generator), final_dir, config, progress.global_step,
                          {**last_logs, **val_metrics})
        if config["hub"]["push_to_hub"]:
            _push_to_hub(final_dir, config["hub"]["push_to_hub"], config["hub"]["private"], logger)
    accelerator.end_training()
    peak_memory = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    return {"global_step": progress.global_step, "start_step": start_step, "final_dir": str(final_dir),
            "step_times": step_times, "saved": training["save"], "last_losses": last_logs, "history": list(history),
            "validation": val_metrics, "recipe": recipe.name,
            "peak_cuda_memory_bytes": peak_memory}


def _frozen_logits_fn(accelerator, discriminator):
    """Discriminator logits for the generator's GAN loss, without touching the discriminator: its parameters are
    detached (no gradients to them, nothing for DDP to reduce) and it runs in eval mode (no spectral-norm update)."""
    if discriminator is None:
        return None

    def logits(frames):
        module = accelerator.unwrap_model(discriminator)
        parameters = {name: p.detach() for name, p in module.named_parameters()}
        was_training = module.training
        module.eval()
        try:
            return torch.func.functional_call(module, parameters, (frames,)).logits
        finally:
            module.train(was_training)

    return logits


def _push_to_hub(folder: Path, repo_id: str, private: bool, logger):
    from talkface.hub.cards import upload_folder_to_hub

    upload_folder_to_hub(folder, repo_id, private=private,
                         commit_message="talkface generator trained with train/train.py")
    logger.info(f"pushed {folder} to https://huggingface.co/{repo_id}")


def main(argv=None):
    args = parse_args(argv)
    try:
        config = load_config(args)
        return training_function(config, args)
    except TalkFaceUserError as err:
        print(f"error: {err}", file=sys.stderr)
        if argv is not None:
            raise
        sys.exit(2)


__all__ = ["DEFAULTS", "RECIPES", "list_checkpoints", "load_config", "main", "parse_args", "training_function"]

if __name__ == "__main__":
    main()
