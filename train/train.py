"""Train the talkface generator (GAN + L1 + VGG-19 perceptual + AV-HuBERT lip-sync loss) with Accelerate.

    accelerate launch train/train.py --config train/configs/talkface_avhubert.yaml
    accelerate launch --config_file train/configs/accelerate_multi_gpu.yaml train/train.py --config ...
    python train/train.py --config ... --resume                      # continue from the last checkpoint
    python train/train.py --dataset synthetic --max-steps 4 --output-dir /tmp/run   # CPU smoke run

The recipe (model sizes, losses and their weights/schedules, optimiser, data) lives in a YAML config; command-line
flags override it, and `--set section.key=value` overrides any entry (e.g. `--set losses.sync.variant=multimodal`).
Without `--config`, `--dataset synthetic` runs the tiny random-weights recipe of train/configs/smoke_tiny.yaml,
and a real run uses the paper recipe of train/configs/talkface_avhubert.yaml.

Output folder:
    config.yaml                 the resolved config of the run
    logs/                       TensorBoard (losses, validation metrics, sample grids)
    checkpoint-<step>/          accelerator.save_state: generator/ and discriminator/ (save_pretrained folders,
                                safetensors), optimizer, RNG and sampler states, training progress
    final/                      the trained generator (save_pretrained + feature extractor + model card)
"""

import argparse
import collections
import copy
import json
import logging
import math
import re
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

from talkface.training.data import SyntheticTalkFaceDataset, TalkFaceDataset, collate_talkface
from talkface.errors import TalkFaceUserError
from talkface.training.losses.core import GeneratorLossInputs, build_generator_losses, discriminator_loss
from talkface.models.talkface_gan import (
    TalkFaceConfig,
    TalkFaceDiscriminator,
    TalkFaceDiscriminatorConfig,
    TalkFaceModel,
    audio_encoder_kwargs,
)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PAPER_CONFIG = CONFIG_DIR / "talkface_avhubert.yaml"
SMOKE_CONFIG = CONFIG_DIR / "smoke_tiny.yaml"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")

# model.type -> "module:Class" of a training recipe for another generator family (see
# talkface/models/talklip/training_talklip.py for the interface); "talkface" (the default) is this script's own model.
TRAINING_RECIPES = {
    "talklip": "talkface.training.recipes.talklip:TalkLipTrainingRecipe",
}

# Every key a config may hold, with its default. Configs are merged onto this, so a recipe only lists what it
# changes, and an unknown key (a typo) is an error instead of being ignored.
DEFAULTS = {
    "seed": 42,
    "output_dir": "runs/talkface",
    "dataset": {
        "name": "preprocessed",  # "preprocessed" (train/preprocess.py output) or "synthetic"
        "root": None,
        "train_list": None,  # optional files of video ids; otherwise a hash split with val_fraction
        "val_list": None,
        "val_fraction": 0.05,
        "num_frames": 5,  # k
        "context_frames": None,  # frames of utterance context for the sync loss (None: the whole utterance)
        "samples_per_video": 1,
        "num_workers": 2,
        "synthetic_length": 64,
        "synthetic_val_length": 8,
        "synthetic_context_frames": 25,
    },
    "model": {"syncnet": None},  # + any TalkFaceConfig field
    "discriminator": {},  # TalkFaceDiscriminatorConfig fields; null: no discriminator (and no gan loss)
    "losses": {"l1": {"weight": 10.0}},
    "optimizer": {"lr": 1e-4, "discriminator_lr": 1e-4, "betas": [0.5, 0.999], "weight_decay": 0.0,
                  "max_grad_norm": None},
    "training": {
        "batch_size": 8,
        "gradient_accumulation_steps": 1,
        "max_steps": 1000,
        "mixed_precision": None,  # "no" | "fp16" | "bf16"; None: what `accelerate launch` was configured with
        "checkpointing_steps": 1000,
        "checkpoints_total_limit": 3,
        "logging_steps": 50,
        "image_logging_steps": 1000,
        "report_to": "tensorboard",  # "tensorboard" | "none"
        "cpu": False,
        "save": True,  # False: no checkpoints and no final model (benchmarks, dry runs)
    },
    "validation": {
        "steps": 1000,  # 0 disables periodic validation (it still runs at the end unless batches == 0)
        "batches": 8,
        "videos": 2,  # whole validation videos generated for the video metrics
        "lse_model": None,  # converted SyncNet (talkface convert syncnet-lse) for LSE-C / LSE-D
        "avs_model": None,  # converted AV-HuBERT for AVS_u / AVS_m / AVS_v
    },
    "hub": {"push_to_hub": None, "private": True},
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


# sections whose entries are checked against DEFAULTS; model / discriminator / losses are checked by the config
# classes and loss builders that receive them
CHECKED_SECTIONS = ("dataset", "optimizer", "training", "validation", "hub")


def _merge(base: dict, recipe: dict) -> dict:
    """Recipe sections onto the defaults, refusing unknown sections and entries (typos)."""
    merged = copy.deepcopy(base)
    for section, value in (recipe or {}).items():
        if section == "config_file":
            continue
        if section not in DEFAULTS:
            raise TalkFaceUserError(f"unknown config section {section!r}; known: {', '.join(DEFAULTS)}")
        if section in CHECKED_SECTIONS:
            unknown = sorted(set(value or {}) - set(DEFAULTS[section]))
            if unknown:
                raise TalkFaceUserError(f"unknown config entries {section}.{unknown[0]} (known: "
                                        f"{', '.join(DEFAULTS[section])})")
            merged[section].update(copy.deepcopy(value or {}))
        elif section in ("model", "discriminator") and value is not None:
            merged[section] = {**merged[section], **copy.deepcopy(value)}
        else:
            merged[section] = copy.deepcopy(value)
    return merged


def _set_path(config: dict, dotted: str, value):
    keys = dotted.split(".")
    node = config
    for key in keys[:-1]:
        if node.get(key) is None:
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


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

    flag_paths = {
        "dataset": "dataset.name", "data_root": "dataset.root", "output_dir": "output_dir",
        "max_steps": "training.max_steps", "batch_size": "training.batch_size", "learning_rate": "optimizer.lr",
        "gradient_accumulation_steps": "training.gradient_accumulation_steps",
        "mixed_precision": "training.mixed_precision", "seed": "seed", "num_workers": "dataset.num_workers",
        "checkpointing_steps": "training.checkpointing_steps", "validation_steps": "validation.steps",
        "report_to": "training.report_to", "push_to_hub": "hub.push_to_hub",
    }
    for flag, dotted in flag_paths.items():
        value = getattr(args, flag)
        if value is not None:
            _set_path(recipe, dotted, value)
    if args.data_root is not None and args.dataset is None:
        _set_path(recipe, "dataset.name", "preprocessed")
    if args.cpu:
        _set_path(recipe, "training.cpu", True)
    for override in args.set:
        if "=" not in override:
            raise TalkFaceUserError(f"--set {override!r}: use KEY=VALUE, e.g. --set losses.sync.weight=0.3")
        dotted, raw = override.split("=", 1)
        _set_path(recipe, dotted.strip(), yaml.safe_load(raw))
    config = _merge(DEFAULTS, recipe)  # validates sections and entries, overrides included
    config["config_file"] = str(config_path)
    return config


# --- building blocks -----------------------------------------------------------------------------------------------


def build_generator(model_config: dict, logger) -> TalkFaceModel:
    """TalkFaceModel from the `model` section; its frozen audio encoder comes from the lip-sync expert."""
    fields = dict(model_config)
    fields.pop("type", None)
    syncnet_path = fields.pop("syncnet", None)
    if syncnet_path:
        from talkface.models.syncnet import SyncNetConfig

        fields.update(audio_encoder_kwargs(SyncNetConfig.from_pretrained(syncnet_path)))
    generator = TalkFaceModel(TalkFaceConfig(**fields))
    if syncnet_path:
        generator.load_audio_encoder_from(syncnet_path)
        logger.info(f"audio encoder loaded from the lip-sync expert {syncnet_path}")
    else:
        logger.warning("model.syncnet is not set: the frozen audio encoder keeps RANDOM weights (fine for smoke "
                       "tests only); convert the Wav2Lip expert with `talkface convert syncnet` and set model.syncnet")
    return generator


def build_recipe(config: dict):
    """The training recipe named by model.type, or None for talkface's own generator."""
    model_type = (config.get("model") or {}).get("type", "talkface")
    if model_type == "talkface":
        return None
    if model_type not in TRAINING_RECIPES:
        raise TalkFaceUserError(f"model.type={model_type!r} is unknown; use talkface or one of "
                                f"{', '.join(sorted(TRAINING_RECIPES))}")
    import importlib

    module_name, class_name = TRAINING_RECIPES[model_type].split(":")
    return getattr(importlib.import_module(module_name), class_name)(config)


def _check_data_config(data: dict):
    if data["name"] == "synthetic":
        return
    if data["name"] != "preprocessed":
        raise TalkFaceUserError(f"dataset.name={data['name']!r}: use 'preprocessed' or 'synthetic'")
    if not data["root"]:
        raise TalkFaceUserError("no training data: pass --data-root DIR (made by train/preprocess.py) or "
                                "--dataset synthetic for a smoke run")
    if not (Path(data["root"]) / "manifest.jsonl").is_file():
        raise TalkFaceUserError(f"no manifest.jsonl in {data['root']}; preprocess the videos first (python "
                                f"train/preprocess.py --input-dir VIDEOS --output-dir {data['root']}) or pass "
                                "--data-root")
    for key in ("train_list", "val_list"):
        if data[key] and not Path(data[key]).is_file():
            raise TalkFaceUserError(f"dataset.{key}: {data[key]} not found; give a file of video ids or null")


def build_datasets(config: dict, needs_context: bool, num_frames: int, img_size: int):
    data = config["dataset"]
    seed = config["seed"]
    if data["name"] == "synthetic":
        kwargs = dict(num_frames=num_frames, img_size=img_size, context=needs_context,
                      context_frames=data["synthetic_context_frames"])
        return (SyntheticTalkFaceDataset(length=data["synthetic_length"], seed=seed, **kwargs),
                SyntheticTalkFaceDataset(length=data["synthetic_val_length"], seed=seed + 1, **kwargs))
    if data["name"] != "preprocessed":
        raise TalkFaceUserError(f"dataset.name={data['name']!r}: use 'preprocessed' or 'synthetic'")
    if not data["root"]:
        raise TalkFaceUserError("no training data: pass --data-root DIR (made by train/preprocess.py) or "
                                "--dataset synthetic for a smoke run")

    def ids(list_file):
        if list_file is None:
            return None
        return [line.split()[0] for line in Path(list_file).read_text(encoding="utf-8").splitlines() if line.strip()]

    common = dict(num_frames=num_frames, img_size=img_size, context=needs_context,
                  context_frames=data["context_frames"], val_fraction=data["val_fraction"])
    train = TalkFaceDataset(data["root"], split="train", ids=ids(data["train_list"]), seed=seed,
                            samples_per_video=data["samples_per_video"], **common)
    val = TalkFaceDataset(data["root"], split="val", ids=ids(data["val_list"]), seed=seed + 1, allow_empty=True,
                          **common)
    return train, val


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


def image_grid(batch, generated, max_rows=4) -> torch.Tensor:
    """(3, rows * S, 4 * S) grid of [reference | masked | generated | target] for the first frame of each sample."""
    rows = []
    for index in range(min(max_rows, generated.shape[0])):
        tiles = [batch.reference_frames[index, 0], batch.masked_frames[index, 0], generated[index, 0],
                 batch.target_frames[index, 0]]
        rows.append(torch.cat([t.detach().float().cpu().clamp(0, 1) for t in tiles], dim=2))
    return torch.cat(rows, dim=1)


def psnr(generated, target) -> torch.Tensor:
    """Per-sample PSNR in dB for images in [0, 1]: (batch,)."""
    mse = ((generated.float() - target.float()) ** 2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-10))


# --- training ------------------------------------------------------------------------------------------------------


def training_function(config: dict, args) -> dict:
    from accelerate import Accelerator
    from accelerate.logging import get_logger
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration, set_seed

    logger = get_logger("talkface.train")
    training = config["training"]
    output_dir = Path(config["output_dir"])
    report_to = training["report_to"]
    recipe = build_recipe(config)
    kwargs_handlers = []
    if recipe is not None and recipe.ddp_find_unused_parameters:
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

    _check_data_config(config["dataset"])  # fail on a missing data folder before loading any network

    # Models are built after seeding so every process starts from the same weights.
    generator = build_generator(config["model"], logger) if recipe is None else recipe.build_generator(logger)
    generator_class = TalkFaceModel if recipe is None else recipe.generator_class
    discriminator = None
    if recipe is not None:
        discriminator = recipe.build_discriminator(config["discriminator"])
    elif config["discriminator"] is not None:
        discriminator_fields = {"img_size": generator.config.img_size, **config["discriminator"]}
        discriminator = TalkFaceDiscriminator(TalkFaceDiscriminatorConfig(**discriminator_fields))
    losses = build_generator_losses(config["losses"])
    if discriminator is None and any(loss.name == "gan" for loss in losses):
        raise TalkFaceUserError("the gan loss needs a discriminator; set a discriminator section (or remove the "
                                "gan loss)")
    for loss in losses:
        # frozen networks (VGG-19, AV-HuBERT, the expert) are moved to the device but never prepared or optimised
        loss.term.to(accelerator.device).eval()
    needs_context = any(loss.term.needs_context for loss in losses)
    if recipe is None:
        num_frames, img_size, collate_fn = generator.config.num_frames, generator.config.img_size, collate_talkface
    else:
        needs_context = needs_context or recipe.needs_context
        num_frames, img_size, collate_fn = recipe.num_frames, recipe.img_size, recipe.collate_fn
        losses = recipe.prepare_losses(losses)
        logger.info(recipe.describe_schedule(losses), main_process_only=True)

    train_dataset, val_dataset = build_datasets(config, needs_context, num_frames, img_size)
    if recipe is not None:
        train_dataset, val_dataset = recipe.wrap_datasets(train_dataset, val_dataset, losses)
    batch_size = training["batch_size"]
    if len(train_dataset) < batch_size * accelerator.num_processes:
        raise TalkFaceUserError(f"{len(train_dataset)} training items are fewer than one batch of {batch_size} per "
                                f"process; lower --batch-size or raise dataset.samples_per_video")
    num_workers = config["dataset"]["num_workers"]
    train_loader = torch.utils.data.DataLoader(
        train_dataset, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=collate_fn,
        num_workers=num_workers, persistent_workers=False,  # new workers each epoch pick up dataset.set_epoch
    )
    val_loader = None
    if len(val_dataset):
        val_loader = torch.utils.data.DataLoader(val_dataset, batch_size=batch_size, shuffle=False,
                                                 collate_fn=collate_fn, num_workers=num_workers)
    else:
        logger.warning("no validation videos (raise dataset.val_fraction or give dataset.val_list): validation is "
                       "skipped")

    optimizer_config = config["optimizer"]
    # the frozen audio encoder has requires_grad=False and stays out of the optimizer
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
    def save_model_hook(models, weights, checkpoint_dir):
        for model in models:
            unwrapped = accelerator.unwrap_model(model)
            name = "generator" if isinstance(unwrapped, generator_class) else "discriminator"
            if accelerator.is_main_process:
                unwrapped.save_pretrained(Path(checkpoint_dir) / name)
            weights.pop()  # saved above; accelerate must not save it again

    def load_model_hook(models, checkpoint_dir):
        while models:
            unwrapped = accelerator.unwrap_model(models.pop())
            name = "generator" if isinstance(unwrapped, generator_class) else "discriminator"
            loaded = type(unwrapped).from_pretrained(Path(checkpoint_dir) / name)
            unwrapped.load_state_dict(loaded.state_dict())

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)
    progress = TrainingProgress()
    accelerator.register_for_checkpointing(progress)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        if report_to != "none":
            accelerator.init_trackers("talkface", config=_flat_hparams(config))

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

    def generator_forward(batch, step):
        """(generated (batch, k, 3, S, S) RGB, extras shared by the loss terms)."""
        if recipe is None:
            output = generator(batch.reference_frames, batch.masked_frames, batch.mel_windows)
            return output.generated_frames, {"generator_output": output}
        return recipe.generator_step(generator, batch, step)

    def checkpoint():
        step = progress.global_step
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
            for old in list_checkpoints(output_dir)[:-training["checkpoints_total_limit"]]:
                shutil.rmtree(old)
            logger.info(f"saved {final}")
        accelerator.wait_for_everyone()

    announced = set()
    # per-step losses for the caller (tests, notebooks); bounded so long runs do not grow memory
    step_times, last_logs, history = [], {}, collections.deque(maxlen=10000)
    start_step = progress.global_step
    logger.info(f"training from step {start_step} to {max_steps}: {len(train_dataset)} items, {steps_per_epoch} "
                f"steps per epoch, batch {batch_size} x {accelerator.num_processes} process(es) x {accumulation} "
                f"accumulation", main_process_only=True)
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
            if recipe is not None:
                recipe.on_step(accelerator.unwrap_model(generator), step, logger)  # staged schedule
            with accelerator.accumulate(*[m for m in (generator, discriminator) if m is not None]):
                # --- generator step ---
                with accelerator.autocast():
                    generated, extras = generator_forward(batch, step)
                    inputs = GeneratorLossInputs(generated_frames=generated, batch=batch,
                                                 fake_logits=frozen_discriminator_logits, step=step, extras=extras)
                    generator_loss = generated.new_zeros((), dtype=torch.float32)
                    logs = {}
                    for loss in losses:
                        if not loss.active(step):
                            continue
                        value = loss.term(inputs)
                        generator_loss = generator_loss + loss.weight * value.float()
                        logs[f"loss/{loss.name}"] = value.detach()
                        logs.update({f"metric/{k}": v for k, v in loss.term.last_metrics().items()})
                    if not generator_loss.requires_grad:
                        # no loss active at this step (a staged schedule): a zero that still reaches every
                        # parameter, so the optimizer and DDP see a normal step
                        generator_loss = generator_loss + 0.0 * generated.sum()
                accelerator.backward(generator_loss)
                if accelerator.sync_gradients and optimizer_config["max_grad_norm"]:
                    accelerator.clip_grad_norm_(generator.parameters(), optimizer_config["max_grad_norm"])
                generator_optimizer.step()
                generator_optimizer.zero_grad(set_to_none=True)
                logs["loss/generator_total"] = generator_loss.detach()

                # --- discriminator step ---
                if discriminator is not None:
                    with accelerator.autocast():
                        # one forward on real and (detached) fake faces: the generator gets no gradient here, and
                        # DDP sees a single forward per backward
                        faces = torch.cat([batch.target_frames.to(generated.dtype), generated.detach()])
                        logits = discriminator(faces).logits
                        real_logits, fake_logits = logits.split(generated.shape[0])
                        d_loss = discriminator_loss(real_logits, fake_logits)
                    accelerator.backward(d_loss)
                    if accelerator.sync_gradients and optimizer_config["max_grad_norm"]:
                        accelerator.clip_grad_norm_(discriminator.parameters(), optimizer_config["max_grad_norm"])
                    discriminator_optimizer.step()
                    discriminator_optimizer.zero_grad(set_to_none=True)
                    logs["loss/discriminator"] = d_loss.detach()
                    logs["metric/d_real"] = torch.sigmoid(real_logits.detach().float()).mean()
                    logs["metric/d_fake"] = torch.sigmoid(fake_logits.detach().float()).mean()

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
                _log_images(accelerator, "train/samples", image_grid(batch, generated), step)
            if val_loader is not None and validation["steps"] and step % validation["steps"] == 0 and \
                    step < max_steps:
                _validate(accelerator, generator, val_loader, losses, config, step, logger, generator_forward, recipe)
            if training["save"] and training["checkpointing_steps"] and step % training["checkpointing_steps"] == 0:
                checkpoint()
            if step >= max_steps:
                break

    checkpoints = list_checkpoints(output_dir)
    if training["save"] and (not checkpoints or not checkpoints[-1].name.endswith(f"-{progress.global_step}")):
        checkpoint()  # the end state is always resumable (e.g. to train further with a larger --max-steps)
    val_metrics = {}
    if validation["batches"] and val_loader is not None:
        val_metrics = _validate(accelerator, generator, val_loader, losses, config, progress.global_step, logger,
                                generator_forward, recipe)

    final_dir = output_dir / "final"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and training["save"]:
        _save_final(accelerator.unwrap_model(generator), final_dir, config, progress.global_step, last_logs,
                    val_metrics, recipe)
        if config["hub"]["push_to_hub"]:
            _push_to_hub(final_dir, config["hub"]["push_to_hub"], config["hub"]["private"], logger)
    accelerator.end_training()
    peak_memory = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    return {"global_step": progress.global_step, "start_step": start_step, "final_dir": str(final_dir),
            "step_times": step_times, "saved": training["save"], "last_losses": last_logs, "history": list(history),
            "validation": val_metrics,
            "peak_cuda_memory_bytes": peak_memory}


def _flat_hparams(config: dict) -> dict:
    """TensorBoard hparams only take scalars: flatten the config, stringify the rest."""
    flat = {}

    def visit(prefix, node):
        if isinstance(node, dict):
            for key, value in node.items():
                visit(f"{prefix}{key}.", value)
        else:
            key = prefix.rstrip(".")
            flat[key] = node if isinstance(node, (int, float, str, bool)) else json.dumps(node)

    visit("", config)
    return flat


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


def _log_images(accelerator, tag, grid, step):
    if not accelerator.is_main_process:
        return
    tracker = accelerator.get_tracker("tensorboard", unwrap=True)
    if hasattr(tracker, "add_image"):
        tracker.add_image(tag, grid, step)


@torch.no_grad()
def _validate(accelerator, generator, val_loader, losses, config, step, logger, generator_forward,
              recipe=None) -> dict:
    """L1, PSNR and the sync losses on validation batches; LSE / AVS on whole videos when their models are set."""
    validation = config["validation"]
    generator.eval()
    sums = {}
    count = 0
    sample_grid = None
    for index, batch in enumerate(val_loader):
        if index >= validation["batches"]:
            break
        with accelerator.autocast():
            generated, extras = generator_forward(batch, step)
        per_sample = {
            "val/l1": (generated.float() - batch.target_frames).abs().flatten(1).mean(dim=1),
            "val/psnr": psnr(generated, batch.target_frames),
        }
        for loss in losses:
            if loss.name == "sync":  # the lip-sync loss doubles as a validation metric
                with accelerator.autocast():
                    value = loss.term(GeneratorLossInputs(generated_frames=generated, batch=batch, step=step,
                                                          extras=extras))
                per_sample[f"val/loss_{loss.name}"] = value.float().reshape(1).expand(generated.shape[0])
                for key, metric in loss.term.last_metrics().items():
                    per_sample[f"val/{key}"] = metric.float().reshape(1).expand(generated.shape[0])
        gathered = accelerator.gather_for_metrics(per_sample)
        for key, values in gathered.items():
            sums[key] = sums.get(key, 0.0) + float(values.sum())
        count += int(next(iter(gathered.values())).numel())
        if sample_grid is None:
            sample_grid = image_grid(batch, generated)
    metrics = {key: value / max(count, 1) for key, value in sums.items()}
    if accelerator.is_main_process and (recipe is None or recipe.supports_video_metrics):
        metrics.update(_video_metrics(accelerator, generator, val_loader.dataset, validation, logger))
    generator.train()
    if metrics:
        accelerator.log(metrics, step=step)
        accelerator.print(f"validation at step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if sample_grid is not None and config["training"]["report_to"] == "tensorboard":
        _log_images(accelerator, "val/samples", sample_grid, step)
    return metrics


def _video_metrics(accelerator, generator, dataset, validation, logger) -> dict:
    """LSE-C/LSE-D (talkface.metrics.sync) and AVS (talkface.metrics.avs) of whole generated validation videos.

    Each video is regenerated k frames at a time with its first k frames as identity reference. Skipped (and
    logged) when the metric modules or their models are not available, or for synthetic data.
    """
    wanted = {"lse": validation["lse_model"], "avs": validation["avs_model"]}
    if not any(wanted.values()) or not validation["videos"]:
        logger.info("validation video metrics skipped: set validation.lse_model / validation.avs_model to compute "
                    "LSE-C/LSE-D and AVS", main_process_only=True)
        return {}
    if not isinstance(dataset, TalkFaceDataset):
        logger.info("validation video metrics skipped: they need real videos (dataset.name: preprocessed)")
        return {}
    scorers = {}
    try:
        if wanted["lse"]:
            from talkface.metrics.sync import LSEScorer

            scorers["lse"] = LSEScorer.from_pretrained(wanted["lse"], device=accelerator.device)
        if wanted["avs"]:
            from talkface.metrics.avs import AVSScorer

            scorers["avs"] = AVSScorer.from_pretrained(wanted["avs"], device=accelerator.device)
    except ImportError as err:
        logger.warning(f"validation video metrics skipped: {err}")
        return {}

    import numpy as np

    from talkface.training.data.layout import AFFINES_NAME, AUDIO_NAME, FaceFrames, read_wav, video_folder
    from talkface.faces.mouth_roi import crop_mouth_differentiable

    model = accelerator.unwrap_model(generator)
    k = model.config.num_frames
    totals, counted = {}, 0
    for record in dataset.records[: validation["videos"]]:
        folder = video_folder(dataset.root, record.id)
        faces = FaceFrames(folder, record.storage)
        num_frames = (min(len(faces), record.num_frames) // k) * k
        frames = torch.from_numpy(np.array(faces[:num_frames])).permute(0, 3, 1, 2).float() / 255
        frames = torch.nn.functional.interpolate(frames, size=model.config.img_size, mode="area") \
            if frames.shape[-1] != model.config.img_size else frames
        waveform, sampling_rate = read_wav(folder / AUDIO_NAME)
        extractor = dataset.audio_feature_extractor
        mels = torch.from_numpy(extractor.frame_mel_windows(extractor.mel_spectrogram(waveform, sampling_rate),
                                                            fps=record.fps, num_frames=num_frames))
        masked = frames.clone()
        masked[:, :, model.config.img_size // 2:] = 0
        reference = frames[:k].repeat(num_frames // k, 1, 1, 1)
        generated = []
        for start in range(0, num_frames, 8 * k):
            stop = min(start + 8 * k, num_frames)
            shape = (-1, k, *frames.shape[1:])
            output = model(reference[start:stop].reshape(shape).to(accelerator.device),
                           masked[start:stop].reshape(shape).to(accelerator.device),
                           mels[start:stop].reshape(-1, k, *mels.shape[1:]).to(accelerator.device))
            generated.append(output.generated_frames.float().reshape(-1, *frames.shape[1:]).cpu())
        generated = torch.cat(generated)
        if "lse" in scorers:
            frames_uint8 = (generated.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
            score = scorers["lse"].score_frames(frames_uint8, waveform, sampling_rate, channel_order="rgb")
            totals["val/lse_d"] = totals.get("val/lse_d", 0.0) + float(score.lse_d)
            totals["val/lse_c"] = totals.get("val/lse_c", 0.0) + float(score.lse_c)
        if "avs" in scorers:
            affines = torch.from_numpy(np.load(folder / AFFINES_NAME)[:num_frames].astype(np.float32))
            scale = model.config.img_size / faces[0].shape[0]
            affines = torch.cat([affines[:, :, :2] * scale, (affines[:, :, 2:] + 0.5) * scale - 0.5], dim=2)
            generated_mouths = crop_mouth_differentiable(generated, affines)[:, 0].numpy()
            real_mouths = crop_mouth_differentiable(frames, affines)[:, 0].numpy()
            result = scorers["avs"].score(generated_mouths, audio=waveform, reference=real_mouths)
            for name, value in result.scores.items():
                totals[f"val/{name}"] = totals.get(f"val/{name}", 0.0) + value
        counted += 1
    return {key: value / max(counted, 1) for key, value in totals.items()}


def _save_final(generator, final_dir: Path, config: dict, step: int, last_losses: dict, val_metrics: dict,
                recipe=None):
    from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
    from talkface.hub.cards import write_model_card

    final_dir.mkdir(parents=True, exist_ok=True)
    generator.save_pretrained(final_dir)
    feature_extractor = TalkingFaceAudioFeatureExtractor() if recipe is None else recipe.feature_extractor()
    feature_extractor.save_pretrained(final_dir)
    (final_dir / "training_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    figures = {f"final_{k.replace('/', '_')}": round(v, 5) for k, v in {**last_losses, **val_metrics}.items()}
    card_info = {"repo_id": config["hub"]["push_to_hub"]} if config["hub"]["push_to_hub"] else {}
    kind = "talkface" if recipe is None else recipe.card_kind
    write_model_card(final_dir, kind, model=generator, source_checkpoint=f"train/train.py, {step} steps",
                     training_steps=step, **card_info, **figures)


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


if __name__ == "__main__":
    main()
