"""The training config: every section and key `train/train.py` reads, with its default, and how overrides apply.

A run's config is `DEFAULTS` <- the recipe YAML <- command-line flags <- `--set section.key=value` overrides
(`train/train.py` does the layering; this module holds the rules). Sections in `CHECKED_SECTIONS` are checked key by
key against `DEFAULTS`, so a typo is an error instead of being ignored; `model`, `discriminator` and `losses` are
checked by the training recipe, the config classes and the loss builders that receive them.
"""

import copy

import yaml

from ..errors import TalkFaceUserError

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
    # `type` names the training recipe (talkface.training.recipes.RECIPES; default "talkface"), the rest is the
    # recipe's: for talkface, `syncnet` + any TalkFaceConfig field
    "model": {"syncnet": None},
    "discriminator": {},  # the recipe's discriminator config fields; null: no discriminator (and no gan loss)
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

CHECKED_SECTIONS = ("dataset", "optimizer", "training", "validation", "hub")


def merge_config(recipe: dict, base: dict = DEFAULTS) -> dict:
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


def set_entry(config: dict, dotted: str, value):
    """config["a"]["b"]["c"] = value for dotted "a.b.c", creating the sections on the way."""
    keys = dotted.split(".")
    node = config
    for key in keys[:-1]:
        if node.get(key) is None:
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def apply_overrides(config: dict, overrides: list[str]):
    """`--set KEY=VALUE` entries onto `config` (in place), each value read as YAML."""
    for override in overrides:
        if "=" not in override:
            raise TalkFaceUserError(f"--set {override!r}: use KEY=VALUE, e.g. --set losses.sync.weight=0.3")
        dotted, raw = override.split("=", 1)
        set_entry(config, dotted.strip(), yaml.safe_load(raw))


def flat_hparams(config: dict) -> dict:
    """TensorBoard hparams only take scalars: flatten the config, stringify the rest."""
    import json

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


__all__ = ["CHECKED_SECTIONS", "DEFAULTS", "apply_overrides", "flat_hparams", "merge_config", "set_entry"]
