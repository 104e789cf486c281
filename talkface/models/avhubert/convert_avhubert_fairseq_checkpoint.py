"""Convert official AV-HuBERT fairseq checkpoints into talkface model folders, without fairseq.

    talkface convert avhubert --checkpoint base_vox_433h.pt --out avhubert-base-vsr [--push-to-hub REPO]

Handles both layouts released by facebookresearch/av_hubert (Base and Large alike):

* pretrained (e.g. `base_vox_iter5.pt`): bare `AVHubertModel` keys, config in `cfg["model"]` -> `AVHubertModel`;
* fine-tuned seq2seq (e.g. `base_vox_433h.pt`): `encoder.w2v_model.*` + `decoder.*`, encoder config in
  `cfg["model"]["w2v_args"]["model"]`, decoder config in `cfg["model"]` -> `AVHubertForLipReading` plus the
  SentencePiece tokenizer stored in `task_state["s2s_tokenizer"]`.

The file is read with `torch.load(weights_only=True)`; the fairseq/sentencepiece objects inside are rebuilt as inert
stubs (see `fairseq_stubs.py`), so no code from the file ever runs and anything else it asks for is refused.
The configuration comes from the checkpoint's `cfg` dict where it says something, and from tensor shapes otherwise
(released `cfg`s are sparse: they list only the yaml overrides). The weight-normed positional convolution is
folded into a plain kernel (`weight_g * weight_v / ||weight_v||`, norm over dims 0 and 1).
"""

import logging
import re
from pathlib import Path

import torch

from ...errors import ModelLoadError
from ..convert_utils import check_keys, load_original_checkpoint
from .configuration_avhubert import AVHubertConfig
from .fairseq_stubs import checkpoint_stub_classes, foreign_globals, stub_fields, stub_state
from .feature_extraction_avhubert import AVHubertFeatureExtractor
from .modeling_avhubert import AVHubertModel
from .modeling_avhubert_lip_reading import AVHubertForLipReading
from .tokenization_avhubert import AVHubertTokenizer

logger = logging.getLogger(__name__)

FINETUNED_ENCODER_PREFIX = "encoder.w2v_model."
LIP_READING_ENCODER_PREFIX = "avhubert."

# fmt: off
# Ordered (pattern, replacement) pairs applied to every original key; None drops the key. Everything not listed
# keeps its name: the native modules use the original names.
ORIGINAL_TO_CONVERTED_KEY_MAPPING = [
    (r"^encoder\.w2v_model\.", LIP_READING_ENCODER_PREFIX),              # fine-tuned encoder wrapper
    (r"(^|\.)encoder\.pos_conv\.0\.bias$", r"\1encoder.pos_conv.conv.bias"),
    (r"^decoder\.embed_positions\._float_tensor$", None),                  # fairseq device-tracking buffer
    (r"^decoder\.version$", None),                                         # fairseq bookkeeping, if present
]
# fmt: on

# The weight-normed positional convolution in its two spellings: legacy weight_norm and torch parametrizations.
_WEIGHT_NORM_PARTS = {
    "weight_g": "g", "weight_v": "v",
    "parametrizations.weight.original0": "g", "parametrizations.weight.original1": "v",
}
_POS_CONV_WEIGHT_NORM = re.compile(
    r"^(?P<prefix>(avhubert\.)?)encoder\.pos_conv\.0\.(?P<part>weight_g|weight_v|"
    r"parametrizations\.weight\.original0|parametrizations\.weight\.original1)$"
)

# Heads cannot be read from tensor shapes; these are the released values by width (TECH.md §1.3).
_ENCODER_HEADS_BY_WIDTH = {768: 12, 1024: 16}
_DECODER_HEADS_BY_WIDTH = {768: 4, 1024: 8}


# ----------------------------------------------------------------------------------------------------------------
# state dict
# ----------------------------------------------------------------------------------------------------------------


def is_lip_reading_state_dict(state_dict) -> bool:
    prefixes = (FINETUNED_ENCODER_PREFIX, "decoder.", LIP_READING_ENCODER_PREFIX)
    return any(key.startswith(prefixes) for key in state_dict)


def _is_converted(state_dict) -> bool:
    return any(key.endswith("encoder.pos_conv.conv.weight") for key in state_dict)


def fold_weight_norm(weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
    """Kernel of a `weight_norm(dim=2)` convolution: g * v / ||v||, the norm taken over dims 0 and 1 per tap."""
    # torch._weight_norm is the very function the legacy weight_norm hook calls, so the folded kernel is bit-identical
    # to the one fairseq computes at every forward
    return torch._weight_norm(weight_v.float(), weight_g.float(), 2).to(weight_v.dtype)


def convert_avhubert_state_dict(original_state_dict: dict, config: AVHubertConfig) -> dict:
    """Map an original AV-HuBERT state dict (pretrained or fine-tuned) onto the native model's keys.

    Returns keys of `AVHubertModel` for a pretrained dict and of `AVHubertForLipReading` for a fine-tuned one.
    Pretraining-only parameters the config does not ask for (`mask_emb`, `label_embs_concat`, `final_proj`) are
    dropped; BatchNorm `num_batches_tracked` counters missing from old files are added as zeros. Input that is
    already converted is returned unchanged.
    """
    if _is_converted(original_state_dict):
        return dict(original_state_dict)
    converted, weight_norm = {}, {}
    for key, tensor in original_state_dict.items():
        match = _POS_CONV_WEIGHT_NORM.match(key.replace(FINETUNED_ENCODER_PREFIX, LIP_READING_ENCODER_PREFIX, 1)
                                            if key.startswith(FINETUNED_ENCODER_PREFIX) else key)
        if match:
            weight_norm.setdefault(match["prefix"], {})[_WEIGHT_NORM_PARTS[match["part"]]] = tensor
            continue
        new_key = key
        for pattern, replacement in ORIGINAL_TO_CONVERTED_KEY_MAPPING:
            if re.search(pattern, new_key):
                if replacement is None:
                    new_key = None
                    break
                new_key = re.sub(pattern, replacement, new_key)
        if new_key is not None:
            converted[new_key] = tensor
    for prefix, parts in weight_norm.items():
        if set(parts) != {"g", "v"}:
            raise ModelLoadError(f"the positional convolution has only {sorted(parts)} of its weight-norm pair")
        converted[f"{prefix}encoder.pos_conv.conv.weight"] = fold_weight_norm(parts["g"], parts["v"])

    prefix = LIP_READING_ENCODER_PREFIX if is_lip_reading_state_dict(converted) else ""
    unwanted = []
    if not config.use_mask_embedding:
        unwanted.append(f"{prefix}mask_emb")
    if not config.num_label_embeddings:
        unwanted.append(f"{prefix}label_embs_concat")
    if not config.use_final_proj:
        unwanted += [f"{prefix}final_proj.weight", f"{prefix}final_proj.bias"]
    for key in unwanted:
        converted.pop(key, None)
    for key in [k for k in converted if k.endswith(".running_mean")]:
        counter = key[: -len("running_mean")] + "num_batches_tracked"
        converted.setdefault(counter, torch.zeros((), dtype=torch.long, device=converted[key].device))
    return converted


# ----------------------------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------------------------


def _as_dict(value) -> dict:
    """cfg sections are plain dicts in released files; old ones hold argparse.Namespace stubs."""
    if value is None:
        return {}
    return dict(stub_fields(value)) if not isinstance(value, dict) else value


def _count_layers(shapes: dict, prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    indices = {int(m.group(1)) for key in shapes if (m := pattern.match(key))}
    if indices != set(range(len(indices))):
        raise ModelLoadError(f"layer indices under {prefix!r} are not contiguous: {sorted(indices)}")
    return len(indices)


def _shape(shapes: dict, key: str) -> tuple:
    if key not in shapes:
        raise ModelLoadError(f"the checkpoint has no {key!r}; is this an AV-HuBERT checkpoint?")
    return tuple(shapes[key])


def config_from_fairseq_checkpoint(cfg, shapes: dict, keep_pretraining_modules: bool = True) -> AVHubertConfig:
    """Build the config from a checkpoint's `cfg` dict and its tensor shapes ({key: shape}, original keys).

    Architecture sizes come from shapes (layers, widths, kernel, groups, ResNet channels, vocabulary); what shapes
    cannot tell (attention heads, activation, pre/post-LN, dropout) comes from `cfg`, with fairseq's defaults for
    fields the sparse released cfgs leave out.
    """
    cfg = _as_dict(cfg)
    model_cfg = _as_dict(cfg.get("model"))
    lip_reading = is_lip_reading_state_dict(shapes)
    if lip_reading:
        encoder_cfg = _as_dict(_as_dict(model_cfg.get("w2v_args")).get("model"))
        decoder_cfg = model_cfg
        encoder_shapes = {k[len(FINETUNED_ENCODER_PREFIX):]: s for k, s in shapes.items()
                          if k.startswith(FINETUNED_ENCODER_PREFIX)}
    else:
        encoder_cfg, decoder_cfg, encoder_shapes = model_cfg, {}, dict(shapes)

    fc1 = _shape(encoder_shapes, "encoder.layers.0.fc1.weight")
    dim, ffn_dim = fc1[1], fc1[0]
    if "encoder.pos_conv.0.weight_v" in encoder_shapes:
        pos_conv_shape = _shape(encoder_shapes, "encoder.pos_conv.0.weight_v")
    elif "encoder.pos_conv.0.parametrizations.weight.original1" in encoder_shapes:
        pos_conv_shape = _shape(encoder_shapes, "encoder.pos_conv.0.parametrizations.weight.original1")
    else:
        pos_conv_shape = _shape(encoder_shapes, "encoder.pos_conv.0.weight")
    layer_norm_shape = _shape(encoder_shapes, "layer_norm.weight")
    trunk = "feature_extractor_video.resnet.trunk."
    resnet_channels = [_shape(encoder_shapes, f"{trunk}layer{stage}.0.conv1.weight")[0] for stage in range(1, 5)]
    resnet_blocks = [_count_layers(encoder_shapes, f"{trunk}layer{stage}.") for stage in range(1, 5)]

    kwargs = dict(
        encoder_layers=_count_layers(encoder_shapes, "encoder.layers."),
        encoder_embed_dim=dim,
        encoder_ffn_embed_dim=ffn_dim,
        encoder_attention_heads=encoder_cfg.get(
            "encoder_attention_heads", _ENCODER_HEADS_BY_WIDTH.get(dim, dim // 64)
        ),
        activation_fn=encoder_cfg.get("activation_fn", "gelu"),
        # fairseq's dataclass default is False; every released yaml sets it to true, and then it is in the cfg
        # (a file without any encoder cfg gets the released value)
        layer_norm_first=encoder_cfg.get("layer_norm_first", False) if encoder_cfg else True,
        conv_pos=pos_conv_shape[2],
        conv_pos_groups=dim // pos_conv_shape[1],
        audio_feat_dim=_shape(encoder_shapes, "feature_extractor_audio.proj.weight")[1],
        modality_fuse="concat" if layer_norm_shape[0] == 2 * dim else "add",
        resnet_relu_type="prelu" if "feature_extractor_video.resnet.frontend3D.2.weight" in encoder_shapes else "relu",
        video_frontend_channels=_shape(encoder_shapes, "feature_extractor_video.resnet.frontend3D.0.weight")[0],
        resnet_channels=resnet_channels,
        resnet_blocks=resnet_blocks,
        dropout=encoder_cfg.get("dropout", 0.1),
        attention_dropout=encoder_cfg.get("attention_dropout", 0.1),
        activation_dropout=encoder_cfg.get("activation_dropout", 0.0),
        dropout_input=encoder_cfg.get("dropout_input", 0.0),
        encoder_layerdrop=encoder_cfg.get("encoder_layerdrop", 0.0),
    )
    if lip_reading:
        # the fine-tuning config overrides the encoder's regularisation (AVHubertSeq2Seq.build_model)
        for name, source in (("dropout", "dropout"), ("attention_dropout", "attention_dropout"),
                             ("activation_dropout", "activation_dropout"), ("dropout_input", "dropout_input"),
                             ("encoder_layerdrop", "layerdrop")):
            if source in decoder_cfg:
                kwargs[name] = decoder_cfg[source]

    if keep_pretraining_modules:
        if "mask_emb" in encoder_shapes:
            kwargs["use_mask_embedding"] = True
            input_masking = encoder_shapes["mask_emb"][0] == kwargs["audio_feat_dim"]
            kwargs["masking_type"] = "input" if input_masking else "feature"
        if "label_embs_concat" in encoder_shapes:
            kwargs["num_label_embeddings"], kwargs["final_dim"] = encoder_shapes["label_embs_concat"]
        if "final_proj.weight" in encoder_shapes:
            kwargs["use_final_proj"] = True
            kwargs["final_dim"] = encoder_shapes["final_proj.weight"][0]

    if lip_reading:
        if decoder_cfg.get("decoder_learned_pos", False) or decoder_cfg.get("no_token_positional_embeddings", False):
            raise ModelLoadError(
                "this seq2seq checkpoint uses learned or no decoder positions; only the released sinusoidal "
                "decoders are supported"
            )
        vocab_size, decoder_dim = _shape(shapes, "decoder.embed_tokens.weight")
        kwargs.update(
            vocab_size=vocab_size,
            decoder_layers=_count_layers(shapes, "decoder.layers."),
            decoder_embed_dim=decoder_dim,
            decoder_ffn_embed_dim=_shape(shapes, "decoder.layers.0.fc1.weight")[0],
            decoder_attention_heads=decoder_cfg.get(
                "decoder_attention_heads", _DECODER_HEADS_BY_WIDTH.get(decoder_dim, 4)
            ),
            # the seq2seq cfg has no activation field, so fairseq's decoder layer falls back to ReLU
            decoder_activation_fn=decoder_cfg.get("activation_fn", "relu"),
            decoder_normalize_before="decoder.layer_norm.weight" in shapes,
            decoder_dropout=decoder_cfg.get("decoder_dropout", 0.0),  # fairseq dataclass defaults
            decoder_attention_dropout=decoder_cfg.get("decoder_attention_dropout", 0.0),
            decoder_activation_dropout=decoder_cfg.get("decoder_activation_dropout", 0.0),
            decoder_layerdrop=decoder_cfg.get("decoder_layerdrop", 0.0),
            max_target_positions=decoder_cfg.get("max_target_positions", 2048),
            scale_embedding=not decoder_cfg.get("no_scale_embedding", True),
            share_decoder_input_output_embed="decoder.embed_out" not in shapes,
        )
    return AVHubertConfig(**kwargs)


def feature_extractor_from_task_cfg(task_cfg) -> AVHubertFeatureExtractor:
    """Preprocessing parameters from the checkpoint's task config (stacking, normalisation, mouth crop)."""
    task_cfg = _as_dict(task_cfg)
    fps = task_cfg.get("sample_rate", 25)
    return AVHubertFeatureExtractor(
        stack_order=task_cfg.get("stack_order_audio", 4),
        normalize=task_cfg.get("normalize", True),
        fps=fps,
        hop_length=round(16000 / (fps * task_cfg.get("stack_order_audio", 4))),
        image_crop_size=task_cfg.get("image_crop_size", 88),
        image_mean=task_cfg.get("image_mean", 0.421),
        image_std=task_cfg.get("image_std", 0.165),
    )


def tokenizer_from_task_state(task_state) -> AVHubertTokenizer | None:
    """The SentencePiece tokenizer pickled in a fine-tuned checkpoint's task state (None for pretrained ones).

    Checks that every piece id equals its index in the fairseq target dictionary, which the decoder relies on.
    """
    task_state = _as_dict(task_state)
    bpe = task_state.get("s2s_tokenizer")
    if bpe is None:
        return None
    processor = stub_fields(bpe).get("sp")
    proto = stub_state(processor)
    if not isinstance(proto, (bytes, bytearray)):
        raise ModelLoadError("the checkpoint's s2s_tokenizer holds no SentencePiece model; cannot extract it")
    tokenizer = AVHubertTokenizer(bytes(proto))
    dictionary = stub_fields(task_state.get("target_dictionary"))
    symbols = dictionary.get("symbols")
    if symbols is not None:
        mismatched = [i for i, symbol in enumerate(symbols[: tokenizer.vocab_size])
                      if i >= dictionary.get("nspecial", 4) and tokenizer.id_to_piece(i) != symbol]
        if mismatched or len(symbols) != tokenizer.vocab_size:
            raise ModelLoadError(
                f"the target dictionary ({len(symbols)} symbols) does not match the SentencePiece model "
                f"({tokenizer.vocab_size} pieces; first mismatches at {mismatched[:3]}); the tokenizer cannot be used"
            )
    return tokenizer


# ----------------------------------------------------------------------------------------------------------------
# whole checkpoints
# ----------------------------------------------------------------------------------------------------------------


def load_fairseq_checkpoint(checkpoint_path) -> dict:
    """Read an AV-HuBERT `.pt` file safely (weights_only + inert fairseq/sentencepiece stubs)."""
    foreign = foreign_globals(checkpoint_path) if Path(checkpoint_path).is_file() else []
    if foreign:
        raise ModelLoadError(
            f"refused to load {checkpoint_path}: its pickle asks for {', '.join(foreign[:3])}, which no AV-HuBERT "
            "checkpoint contains; nothing from the file was run. Use the official .pt file"
        )
    checkpoint = load_original_checkpoint(checkpoint_path, safe_globals=checkpoint_stub_classes(checkpoint_path))
    if not isinstance(checkpoint, dict):
        raise ModelLoadError(f"{checkpoint_path} does not hold a checkpoint dict; is it an AV-HuBERT .pt file?")
    return checkpoint


def _original_state_dict(checkpoint: dict) -> dict:
    state_dict = checkpoint.get("model", checkpoint)
    if not isinstance(state_dict, dict) or not state_dict:
        raise ModelLoadError("the checkpoint holds no 'model' state dict; is this an AV-HuBERT checkpoint?")
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(state_dict):
        raise ModelLoadError(
            "the checkpoint's 'model' entry holds non-tensor values; is this an AV-HuBERT checkpoint?"
        )
    return tensors


def convert_fairseq_checkpoint(checkpoint: dict, keep_pretraining_modules: bool = True) -> list:
    """[model, feature extractor(, tokenizer)] from a loaded fairseq checkpoint dict.

    `checkpoint` is `{"cfg": ..., "model": state_dict, "task_state": ...}` as fairseq writes it (a bare state dict
    also works; it then gets the released defaults).
    """
    original = _original_state_dict(checkpoint)
    cfg = checkpoint.get("cfg")
    if cfg is None and checkpoint.get("args") is not None:
        args = _as_dict(checkpoint["args"])  # very old fairseq files: one flat namespace
        cfg = {"model": args, "task": args}
    shapes = {key: tuple(tensor.shape) for key, tensor in original.items()}
    config = config_from_fairseq_checkpoint(cfg, shapes, keep_pretraining_modules=keep_pretraining_modules)
    converted = convert_avhubert_state_dict(original, config)
    model_class = AVHubertForLipReading if is_lip_reading_state_dict(original) else AVHubertModel

    # Build on the meta device and adopt the converted tensors: no second copy of a 2 GB model in memory.
    with torch.device("meta"):
        model = model_class(config)
    check_keys(converted, model.state_dict().keys(), f"AV-HuBERT {model_class.__name__}")
    for key, tensor in converted.items():
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            converted[key] = tensor.float()
    model.load_state_dict(converted, strict=True, assign=True)
    model.eval()

    cfg = _as_dict(cfg)
    task_cfg = cfg.get("task")
    if model_class is AVHubertForLipReading:
        modalities = _as_dict(task_cfg).get("modalities")
        logger.info("fine-tuned for input modalities %s", modalities)
    objects = [model, feature_extractor_from_task_cfg(task_cfg)]
    tokenizer = tokenizer_from_task_state(checkpoint.get("task_state"))
    if tokenizer is not None:
        if tokenizer.vocab_size != config.vocab_size:
            raise ModelLoadError(
                f"the tokenizer has {tokenizer.vocab_size} pieces but the decoder {config.vocab_size} outputs"
            )
        objects.append(tokenizer)
    elif model_class is AVHubertForLipReading:
        logger.warning("the checkpoint has no s2s_tokenizer in its task_state; the lip reader is saved without one")
    return objects


def add_arguments(parser):
    parser.add_argument(
        "--drop-pretraining-modules",
        action="store_true",
        help="leave out mask_emb, label_embs_concat and final_proj (unused at inference; kept by default so that "
             "the conversion loses nothing)",
    )


def convert_checkpoint(checkpoint_path, args=None) -> list:
    """Entry point of `talkface convert avhubert`: [model, feature extractor(, tokenizer)]."""
    checkpoint = load_fairseq_checkpoint(checkpoint_path)
    keep = not getattr(args, "drop_pretraining_modules", False)
    return convert_fairseq_checkpoint(checkpoint, keep_pretraining_modules=keep)


__all__ = [
    "convert_avhubert_state_dict",
    "config_from_fairseq_checkpoint",
    "convert_fairseq_checkpoint",
    "convert_checkpoint",
    "load_fairseq_checkpoint",
    "tokenizer_from_task_state",
    "fold_weight_norm",
]
