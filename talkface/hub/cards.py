"""Model cards of talkface model folders.

Every talkface network is a transformers model, so `save_pretrained` / `from_pretrained` work with folders and Hub ids
as usual. This module adds what transformers does not know about our models:

* `render_model_card(kind, model=None, folder=None, **info)` renders the model card of a kind ("wav2lip",
  "avhubert", ...) from its template in `talkface/hub/templates/<kind>.md` (string.Template placeholders,
  no Jinja). The figures it states are computed, never typed in: parameter counts come from the model (or, without
  one, from the standard configurations that the model classes state in `card_variants()`, built on the meta
  device), and the preprocessing tables from the folder's `preprocessor_config.json` (or the defaults of the feature
  extractor that states the card's `card_preprocessing`; see `talkface.hub.mixin`). Facts that cannot be computed
  (licence, data sets, published results) live in `MODEL_FACTS` and in the templates. This module imports no model
  class: the reference cards (model=None) need `talkface.models` imported by the caller.
* `write_model_card(folder, kind, model=None, **info)` writes that card as `folder/README.md`. `talkface convert`
  and `train/train.py` call it; `info` carries what the caller knows (`source_checkpoint`, `repo_id`, training
  figures such as `training_steps` and `final_*` values).
* Uploads live in `talkface.hub.upload` (`push_to_hub`, `upload_folder_to_hub`, also importable from here), and
  `model.push_to_hub(repo)` is defined by `talkface.hub.mixin.TalkFaceHubMixin`, a base of every model class, so
  it uploads our card instead of transformers' generic one.

`tools/render_model_cards.py` renders every kind into `model_cards/`; a test checks those files are up to date.
"""

from __future__ import annotations

import json
import logging
import re
import string
from pathlib import Path

import yaml

from .mixin import TalkFaceHubMixin, card_feature_extractor, card_model_classes
from .upload import push_to_hub, upload_folder_to_hub

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).with_name("templates")

WAV2LIP_LICENSE_NOTE = (
    "Wav2Lip's README: \"The software can only be used for personal/research/non-commercial purposes\", and, as "
    "the models are trained on LRS2, \"any form of commercial use is strictly prohibited\"."
)
AVHUBERT_LICENSE_NOTE = (
    "The AV-HuBERT checkpoints are released by Meta under the AV-HuBERT licence: non-commercial research use only, "
    "with an attribution notice."
)

# kind -> facts a card states that cannot be computed from code. The YAML header is built from these.
MODEL_FACTS = {
    "wav2lip": {
        "title": "Wav2Lip generator",
        "model_types": ["wav2lip"],
        "license": "other", "license_name": "wav2lip-non-commercial",
        "license_link": "https://github.com/Rudrabha/Wav2Lip#license-and-citation",
        "license_note": WAV2LIP_LICENSE_NOTE,
        "datasets": ["LRS2"], "metrics": ["lse-d", "lse-c", "fid"],
        "tags": ["lip-sync", "talking-face-generation", "wav2lip"],
        "generator": True, "preprocessing": "mel", "model_path": "models/wav2lip-gan",
    },
    "wav2lip-discriminator": {
        "title": "Wav2Lip visual-quality discriminator",
        "model_types": ["wav2lip_discriminator"],
        "license": "other", "license_name": "wav2lip-non-commercial",
        "license_link": "https://github.com/Rudrabha/Wav2Lip#license-and-citation",
        "license_note": WAV2LIP_LICENSE_NOTE,
        "datasets": ["LRS2"], "metrics": [],
        "tags": ["lip-sync", "talking-face-generation", "wav2lip", "discriminator"],
        "pipeline_tag": "image-classification", "preprocessing": "face", "model_path": "models/wav2lip-disc",
    },
    "syncnet": {
        "title": "Wav2Lip lip-sync expert (SyncNet)",
        "model_types": ["syncnet"],
        "license": "other", "license_name": "wav2lip-non-commercial",
        "license_link": "https://github.com/Rudrabha/Wav2Lip#license-and-citation",
        "license_note": WAV2LIP_LICENSE_NOTE,
        "datasets": ["LRS2"], "metrics": [],
        "tags": ["lip-sync", "audio-visual", "wav2lip", "syncnet"],
        "pipeline_tag": "feature-extraction", "preprocessing": "mel", "model_path": "models/wav2lip-expert",
    },
    "syncnet-lse": {
        "title": "SyncNet for LSE-C / LSE-D (syncnet_python)",
        "model_types": ["syncnet_lse"],
        "license": "mit",
        "license_note": "syncnet_python (code and the `syncnet_v2.model` download it points to) is released under "
                        "the MIT licence by Joon Son Chung.",
        "datasets": [], "metrics": ["lse-d", "lse-c"],
        "tags": ["lip-sync", "audio-visual", "syncnet", "evaluation"],
        "pipeline_tag": "feature-extraction", "preprocessing": "mfcc", "model_path": "models/syncnet-lse",
    },
    "avhubert": {
        "title": "AV-HuBERT (encoder and lip reader)",
        "model_types": ["avhubert"],
        "license": "other", "license_name": "av-hubert-license",
        "license_link": "https://github.com/facebookresearch/av_hubert/blob/main/LICENSE",
        "license_note": AVHUBERT_LICENSE_NOTE,
        "datasets": ["LRS3", "VoxCeleb2"], "metrics": ["wer"],
        "tags": ["audio-visual", "lip-reading", "visual-speech-recognition", "avhubert"],
        "pipeline_tag": "feature-extraction", "preprocessing": "avhubert",
        "model_path": "models/avhubert-base-vox-433h",
    },
    "talkface": {
        "title": "talkface generator (AV-HuBERT lip-sync loss)",
        "model_types": ["talkface"],
        "license": "other", "license_name": "non-commercial",
        "license_note": "The generator contains the Wav2Lip lip-sync expert's audio encoder (frozen, saved with it) "
                        "and is trained on LRS2 with an AV-HuBERT loss: the Wav2Lip and AV-HuBERT licences and the "
                        "LRS2 terms all restrict use to non-commercial research.",
        "datasets": ["LRS2"], "metrics": ["ssim", "psnr", "lmd", "lse-c", "lse-d", "avs_u", "avs_m", "avs_v"],
        "tags": ["lip-sync", "talking-face-generation", "avhubert"],
        "generator": True, "preprocessing": "mel", "model_path": "outputs/talkface/final",
    },
    "talkface-discriminator": {
        "title": "talkface discriminator",
        "model_types": ["talkface_discriminator"],
        "license": "other", "license_name": "non-commercial",
        "license_note": "Trained together with the talkface generator on LRS2 (research use only).",
        "datasets": ["LRS2"], "metrics": [],
        "tags": ["talking-face-generation", "discriminator"],
        "pipeline_tag": "image-classification", "preprocessing": "face",
        "model_path": "outputs/talkface/discriminator",
    },
    "talklip": {
        "title": "TalkLip generator",
        "model_types": ["talklip"],
        "license": "other", "license_name": "talklip-non-commercial",
        "license_link": "https://github.com/Sxjdwang/TalkLip",
        "license_note": "The TalkLip repository states no licence. Its weights contain a whole AV-HuBERT model "
                        "(AV-HuBERT licence, non-commercial) and were trained on LRS2 (BBC terms, non-commercial "
                        "research), so treat them as non-commercial research weights.",
        "datasets": ["LRS2"], "metrics": ["lse-d", "lse-c", "wer", "ssim", "psnr"],
        "tags": ["lip-sync", "talking-face-generation", "talklip", "avhubert"],
        "generator": True, "preprocessing": "avhubert", "model_path": "models/talklip",
    },
    "vgg19": {
        "title": "VGG-19 (torchvision ImageNet weights) for the perceptual loss",
        "model_types": ["vgg19"],
        "license": "bsd-3-clause",
        "license_note": "torchvision is BSD-3-Clause. The weights were trained on ImageNet, whose terms allow "
                        "non-commercial research use; torchvision's documentation asks users to check the data "
                        "set's licence for their use.",
        "datasets": ["imagenet-1k"], "metrics": ["accuracy"],
        "tags": ["vgg", "perceptual-loss", "image-feature-extraction"],
        "pipeline_tag": "image-feature-extraction", "preprocessing": "vgg19", "model_path": "models/vgg19",
    },
    "fid-inception": {
        "title": "FID Inception-v3 (pytorch-fid weights)",
        "model_types": ["fid_inception"],
        "license": "apache-2.0",
        "license_note": "pytorch-fid is Apache-2.0; its weight file is a port of the TensorFlow FID Inception graph "
                        "(TensorFlow models, Apache-2.0), trained on ImageNet.",
        "datasets": ["imagenet-1k"], "metrics": ["fid"],
        "tags": ["inception", "fid", "evaluation", "image-feature-extraction"],
        "pipeline_tag": "image-feature-extraction", "preprocessing": "fid", "model_path": "models/fid_inception",
    },
    "gfpgan": {
        "title": "GFPGAN v1.4 (clean architecture) face restoration",
        "model_types": ["gfpgan"],
        "license": "other", "license_name": "gfpgan-with-nvidia-stylegan2-terms",
        "license_link": "https://github.com/TencentARC/GFPGAN/blob/master/License_GFPGAN.txt",
        "license_note": "GFPGAN is Apache-2.0 \"except for the third-party components\" (License_GFPGAN.txt); its "
                        "StyleGAN2 part derives from NVIDIA's StyleGAN2, whose licence limits use to non-commercial "
                        "research or evaluation. The release does not say which licence the weight file itself "
                        "carries, and it was trained on FFHQ (NVIDIA, non-commercial terms), so treat the weights as "
                        "non-commercial.",
        "datasets": ["FFHQ"], "metrics": [],
        "tags": ["face-restoration", "gfpgan", "stylegan2"],
        "pipeline_tag": "image-to-image", "preprocessing": "gfpgan", "model_path": "models/gfpgan-v1.4",
    },
    "s3fd": {
        "title": "S3FD face detector (syncnet_python's sfd_face.pth)",
        "model_types": ["s3fd"],
        "license": "other", "license_name": "s3fd-weights-no-stated-licence",
        "license_link": "https://github.com/joonson/syncnet_python",
        "license_note": "syncnet_python, whose download script points to `sfd_face.pth`, is MIT-licensed, but no "
                        "licence is stated for the weight file itself, which comes from a PyTorch re-implementation "
                        "of S3FD trained on WIDER FACE (research-only terms). Treat the weights as research use "
                        "only.",
        "datasets": ["WIDER FACE"], "metrics": [],
        "tags": ["face-detection", "s3fd", "evaluation"],
        "pipeline_tag": "object-detection", "preprocessing": "s3fd", "model_path": "models/s3fd",
    },
}

CARD_KINDS = tuple(MODEL_FACTS)


def card_kind(model_or_model_type) -> str:
    """The card kind of a model, config or `model_type` string ("wav2lip_discriminator" -> "wav2lip-discriminator")."""
    model_type = model_or_model_type
    if not isinstance(model_type, str):
        config = getattr(model_or_model_type, "config", model_or_model_type)
        model_type = getattr(config, "model_type", None)
    for kind, facts in MODEL_FACTS.items():
        if model_type in facts["model_types"]:
            return kind
    raise ValueError(f"no model card kind for model_type {model_type!r}; known: {', '.join(CARD_KINDS)}")


# --- figures computed from code ----------------------------------------------------------------------------------


def _standard_variants(kind: str):
    """(label, model class, config) of the standard configurations the card of `kind` lists, as the model classes
    of that kind state them (`card_variants()`)."""
    classes = card_model_classes(kind)
    if not classes:
        raise LookupError(f"no model class states the card variants of {kind!r}; import talkface.models before "
                          "rendering a reference card")
    return [(label, model_class, config) for model_class in classes for label, config in model_class.card_variants()]


def _default_config(kind: str):
    """The default configuration of the (first) model class of `kind`."""
    return _standard_variants(kind)[0][1].config_class()


def count_parameters(model) -> int:
    """Number of parameters (shared tensors counted once; buffers such as BatchNorm statistics not counted)."""
    return sum(parameter.numel() for parameter in model.parameters())


def _count_on_meta(model_class, config) -> int:
    import torch

    with torch.device("meta"):  # no memory, no initialisation cost: only the shapes are needed
        model = model_class(config)
    return count_parameters(model)


def _format_count(count: int) -> str:
    return f"{count:,} ({count / 1e6:.1f} M)"


def _parameters_section(kind: str, model) -> str:
    if model is not None:
        return (f"This checkpoint: `{type(model).__name__}` with **{_format_count(count_parameters(model))}** "
                "parameters.")
    rows = ["| variant | class | parameters |", "|---|---|---|"]
    for label, model_class, config in _standard_variants(kind):
        rows.append(f"| {label} | `{model_class.__name__}` | {_format_count(_count_on_meta(model_class, config))} |")
    return "Parameter counts of the standard configurations (computed from the default configs):\n\n" + "\n".join(rows)


def _read_preprocessor(folder) -> dict | None:
    if folder is None:
        return None
    path = Path(folder) / "preprocessor_config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _mel_table(values: dict | None) -> str:
    fe = card_feature_extractor("mel")(**_extractor_kwargs(values))
    hop_ms = 1000 * fe.hop_length / fe.sampling_rate
    rows = [
        ("input", f"{fe.sampling_rate} Hz mono float (int16 is scaled by 1/32768); other rates are refused"),
        ("pre-emphasis", f"y[n] = x[n] - {_fmt(fe.preemphasis)} x[n-1]"),
        ("STFT", f"n_fft {fe.n_fft}, hop {fe.hop_length} ({_fmt(hop_ms)} ms), periodic Hann window of "
                 f"{fe.win_length}, centred frames with **{fe.pad_mode}** padding of {fe.n_fft // 2}"),
        ("mel", f"{fe.num_mel_bins} Slaney-scale bands, {_fmt(fe.fmin)}-{_fmt(fe.fmax)} Hz, Slaney (area) "
                "normalisation, applied to the magnitude"),
        ("dB", f"20 log10(max(10^({_fmt(fe.min_level_db)}/20), mel)) - {_fmt(fe.ref_level_db)}"),
        ("normalisation", f"clip({_fmt(2 * fe.max_abs_value)} (dB - ({_fmt(fe.min_level_db)})) / "
                          f"{_fmt(-fe.min_level_db)} - {_fmt(fe.max_abs_value)}, -{_fmt(fe.max_abs_value)}, "
                          f"{_fmt(fe.max_abs_value)})"),
        ("frames", f"1 + samples // {fe.hop_length}: {_fmt(fe.mel_frames_per_second)} mel frames per second"),
        ("window per video frame", f"{fe.mel_step_size} mel frames ({_fmt(fe.window_seconds)} s) starting at "
                                   f"int(i * {_fmt(fe.mel_frames_per_second)} / fps) for video frame i "
                                   f"({_fmt(round(fe.mel_frames_per_video_frame(), 3))} at {_fmt(fe.fps)} fps); "
                                   f"a window past the end is replaced by the last {fe.mel_step_size} frames"),
    ]
    return _two_column_table("step", "value", rows)


def _avhubert_table(values: dict | None, audio_only: bool = False) -> str:
    fe = card_feature_extractor("avhubert")(**_extractor_kwargs(values))
    rows = [
        ("audio input", f"{fe.sampling_rate} Hz mono on the int16 scale (float input in [-1, 1] is multiplied by "
                        f"{_fmt(fe.waveform_scale)}); other rates are refused"),
        ("filterbank", f"pre-emphasis {_fmt(fe.preemphasis)}; {fe.window_length}-sample frames every {fe.hop_length} "
                       f"samples (rectangular window, last frame zero-padded); squared magnitude of the "
                       f"{fe.n_fft}-point rfft / {fe.n_fft}; "
                       f"{fe.num_filters} mel filters over {_fmt(fe.low_freq)}-{_fmt(fe.high_freq)} Hz; natural log "
                       f"({_fmt(fe.audio_frames_per_second)} frames/s)"),
        ("stacking", f"{fe.stack_order} frames per row: {fe.stack_order * fe.num_filters}-dim rows at "
                     f"{_fmt(fe.fps)} Hz, one per video frame; zero rows appended or rows dropped at the end to "
                     "match the video length"),
        ("normalisation", "layer norm of each row over its values (no affine)" if fe.normalize else "none"),
    ]
    if audio_only:  # TalkLip's global encoder hears the audio only
        return _two_column_table("step", "value", rows)
    rows += [
        ("video input", f"grayscale 96x96 mouth crops at {_fmt(fe.fps)} fps (landmark-aligned to a mean face, "
                        f"`talkface.faces.mouth_roi`), divided by 255, centre crop {fe.image_crop_size}, then "
                        f"(x - {_fmt(fe.image_mean)}) / {_fmt(fe.image_std)}; tensor (batch, 1, frames, "
                        f"{fe.image_crop_size}, {fe.image_crop_size})"),
    ]
    return _two_column_table("step", "value", rows)


def _mfcc_table(values: dict | None) -> str:
    fe = card_feature_extractor("mfcc")(**_extractor_kwargs(values))
    rows = [
        ("audio", f"{fe.sampling_rate} Hz mono, **int16-scaled** (float input in [-1, 1] is multiplied by 32768)"),
        ("MFCC", f"python_speech_features.mfcc: {fe.num_cepstral} coefficients, {fe.num_filters} filters, FFT "
                 f"{fe.fft_size}, {_fmt(1000 * fe.window_length)} ms rectangular window, {_fmt(1000 * fe.window_step)}"
                 f" ms hop, pre-emphasis {_fmt(fe.preemphasis)}, lifter {fe.cepstral_lifter}, coefficient 0 "
                 f"{'replaced by the log energy' if fe.append_energy else 'kept'}"),
        ("audio window", f"{fe.audio_window} MFCC frames (0.2 s); window i starts at MFCC frame "
                         f"{fe.mfcc_frames_per_video_frame} i"),
        ("video", f"{fe.video_window} consecutive frames at {_fmt(fe.fps)} fps, **{fe.channel_order.upper()}**, "
                  f"0..255 without normalisation, resized to {fe.image_size} x {fe.image_size} (bilinear)"),
    ]
    return _two_column_table("step", "value", rows)


def _extractor_kwargs(values: dict | None) -> dict:
    if not values:
        return {}
    return {k: v for k, v in values.items() if k not in ("feature_extractor_type", "processor_class")}


def _two_column_table(left: str, right: str, rows) -> str:
    lines = [f"| {left} | {right} |", "|---|---|"]
    # a "|" inside a cell would end it: escape it (GitHub and the Hub render "\\|" as "|")
    lines += [f"| {name} | {str(value).replace('|', chr(92) + '|')} |" for name, value in rows]
    return "\n".join(lines)


def _image_table(kind: str, model, folder=None) -> str:
    config = getattr(model, "config", None)
    if kind == "vgg19":
        config = config or _default_config(kind)
        normalisation = (f"inside the model: (x - {list(config.image_mean)}) / {list(config.image_std)} (ImageNet)"
                         if config.normalize_input else "none: feed ImageNet-normalised tensors")
        rows = [("input", "RGB float images in [0, 1], any size >= 16 px for relu5_1 (batch, 3, H, W)"),
                ("normalisation", normalisation),
                ("perceptual loss", f"layers {', '.join(str(layer) for layer in config.feature_layers)} weighted "
                                    f"{', '.join(_fmt(float(w)) for w in config.perceptual_layer_weights)}: "
                                    "sum_l w_l mean |phi_l(generated) - phi_l(target)|")]
    elif kind == "fid-inception":
        config = config or _default_config(kind)
        rows = [("input", "uint8 RGB frames divided by 255 (batch, 3, H, W)"),
                ("resize", f"to {config.image_size} x {config.image_size} inside the model (bilinear, "
                           "align_corners=False, no antialiasing)"),
                ("scaling", "to [-1, 1]"),
                ("features", "2048-d global average pool of Mixed_7c (pool3); FID uses their mean and unbiased "
                             "covariance")]
    elif kind == "gfpgan":
        config = config or _default_config(kind)
        rows = [("alignment", f"5 points from the 68 landmarks (eye centres, nose tip 30, mouth corners 48/54), "
                              f"similarity transform to the FFHQ template at {config.image_size} x {config.image_size}"),
                ("input", "RGB, (x / 255 - 0.5) / 0.5, i.e. [-1, 1]; output clamped to [-1, 1]"),
                ("paste-back", "inverse warp with an eroded, blurred square mask; the rest of the frame is "
                               "returned bit for bit")]
    elif kind == "s3fd":
        config = config or _default_config(kind)
        fe = card_feature_extractor("s3fd")(**_extractor_kwargs(_read_preprocessor(folder)))
        mean = ", ".join(_fmt(m) for m in fe.image_mean)
        rows = [("input", f"RGB uint8 frames resized by the scale (bilinear, cv2 INTER_LINEAR; default "
                          f"{', '.join(_fmt(s) for s in fe.scales)}; syncnet_python's run_pipeline uses 0.25), float "
                          f"**RGB** minus ({mean}), no scaling"),
                ("anchors", f"one square anchor per cell: sides {config.anchor_sizes} px, strides "
                            f"{config.anchor_strides} px; SSD decoding with variances {config.box_variances}"),
                ("candidates", f"face score > {_fmt(fe.candidate_threshold)}, the {fe.nms_top_k} best, greedy NMS "
                               f"at IoU {_fmt(fe.nms_threshold)}, at most {fe.max_detections} boxes"),
                ("faces", f"boxes scoring > {_fmt(fe.face_threshold)} (run_pipeline: 0.9), scaled to the original "
                          f"image, then NMS at IoU {_fmt(fe.face_nms_threshold)} over all scales")]
    else:  # discriminators: the generator's face crops
        size = getattr(config, "image_size", 96)
        order = "BGR" if kind == "wav2lip-discriminator" else "RGB"
        rows = [("input", f"{size} x {size} face crops, {order}, float in [0, 1]"),
                ("region", "the lower half only (rows size//2:)" if kind == "wav2lip-discriminator"
                 else "the whole face")]
    return _two_column_table("step", "value", rows)


def _preprocessing_section(kind: str, model, folder) -> str:
    style = MODEL_FACTS[kind]["preprocessing"]
    saved = _read_preprocessor(folder)
    if kind == "talklip":
        config = getattr(model, "config", None)
        local = config is not None and getattr(config, "audio_encoder_type", "global") == "local"
        if saved is not None:
            local = saved.get("feature_extractor_type") == "TalkingFaceAudioFeatureExtractor"
        style = "mel" if local else "avhubert"
    source = ("the values saved in this folder's `preprocessor_config.json`" if saved is not None
              else "the feature extractor's defaults, which the weights were trained with")
    if style == "mel":
        return f"Audio (`TalkingFaceAudioFeatureExtractor`; {source}):\n\n" + _mel_table(saved)
    if style == "avhubert":
        return f"`AVHubertFeatureExtractor` ({source}):\n\n" + _avhubert_table(saved, audio_only=kind == "talklip")
    if style == "mfcc":
        return f"`SyncNetLSEFeatureExtractor` ({source}):\n\n" + _mfcc_table(saved)
    return _image_table(kind, model, folder)


def _checkpoint_section(kind: str, model, folder, info: dict) -> str:
    """What is known about this very checkpoint (empty for the reference cards in model_cards/)."""
    rows = []
    if model is not None:
        config = model.config
        rows.append(("class", f"`{type(model).__name__}` (`model_type` `{config.model_type}`)"))
        rows.append(("parameters", _format_count(count_parameters(model))))
        dtype = next((p.dtype for p in model.parameters()), None)
        if dtype is not None:
            rows.append(("weights", f"`model.safetensors`, {str(dtype).replace('torch.', '')}"))
        if kind == "avhubert":
            size = {12: "Base", 24: "Large"}.get(config.encoder_layers, "custom")
            rows.append(("variant", f"{size}: {config.encoder_layers} layers x {config.encoder_embed_dim}"))
        if kind == "talklip":
            rows.append(("audio encoder", f"{config.audio_encoder_type}"))
    if folder is not None:
        names = sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.name != "README.md")
        if names:
            rows.append(("files", ", ".join(f"`{name}`" for name in names)))
    source = str(info.get("source_checkpoint") or "")
    if "train.py" in source:  # train/train.py passes "train/train.py, N steps"
        rows.append(("made by", f"`{source}`"))
    elif source:  # a checkpoint path: only its file name (a local path says nothing to readers and may be private)
        rows.append(("converted from", f"`{Path(source).name}`"))
    if not rows:
        return ("This is the reference card of the model kind. A model folder written by talkface (`talkface "
                "convert`, `train/train.py`,\n`push_to_hub`) carries its own copy of this card with the exact "
                "checkpoint, files and parameter count.")
    return "## This checkpoint\n\n" + _two_column_table("item", "value", rows)


def _training_recipe(folder) -> list:
    """Rows describing the recipe in `folder/training_config.yaml` (written by train/train.py), if there is one."""
    path = Path(folder) / "training_config.yaml" if folder is not None else None
    if path is None or not path.is_file():
        return []
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    rows = []
    losses = config.get("losses") or {}
    if losses:
        terms = [f"{_fmt(float(spec.get('weight', 1.0)))} {name}" + (f" ({spec['variant']})" if spec.get("variant")
                                                                      else "")
                 for name, spec in losses.items() if isinstance(spec, dict)]
        rows.append(("loss", " + ".join(terms)))
    optimizer, training, dataset = (config.get(key) or {} for key in ("optimizer", "training", "dataset"))
    if optimizer.get("lr") is not None:
        rows.append(("optimizer", f"Adam, lr {_fmt(float(optimizer['lr']))}, betas {optimizer.get('betas')}"))
    if training.get("batch_size") is not None:
        rows.append(("batch size", f"{training['batch_size']} per device x "
                                   f"{training.get('gradient_accumulation_steps', 1)} accumulation"))
    if dataset.get("name"):
        rows.append(("data", f"{dataset['name']} ({dataset.get('num_frames', '?')}-frame windows)"))
    return rows


def _training_section(info: dict, folder=None) -> str:
    """Training figures passed by train/train.py (`training_steps`, `final_*`) and the recipe it saved."""
    figures = {k: v for k, v in info.items() if k.startswith("final_")}
    steps = info.get("training_steps")
    recipe = _training_recipe(folder)
    if not figures and steps is None and not recipe:
        return ""
    rows = list(recipe)
    if steps is not None:
        rows.append(("training steps", str(steps)))
    for key in sorted(figures):
        value = figures[key]
        rows.append((key[len("final_"):].replace("_", " ", 1), _fmt(value) if isinstance(value, float) else value))
    return ("## Training figures of this checkpoint\n\nRecipe saved by `train/train.py` with the weights, and the "
            "last logged training losses and validation metrics of the run (on its own validation split; not a "
            "benchmark result):\n\n" + _two_column_table("figure", "value", rows) + "\n")


def _metadata(kind: str, extra_tags=()) -> str:
    facts = MODEL_FACTS[kind]
    header = {"license": facts["license"]}
    if facts.get("license_name"):
        header["license_name"] = facts["license_name"]
    if facts.get("license_link"):
        header["license_link"] = facts["license_link"]
    header["library_name"] = "talkface"
    if facts.get("pipeline_tag"):
        header["pipeline_tag"] = facts["pipeline_tag"]
    header["tags"] = ["talkface", *facts["tags"], *[t for t in extra_tags if t not in facts["tags"]]]
    if facts["datasets"]:
        header["datasets"] = list(facts["datasets"])
    if facts["metrics"]:
        header["metrics"] = list(facts["metrics"])
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---"


def _template(name: str) -> string.Template:
    return string.Template((TEMPLATES_DIR / f"{name}.md").read_text(encoding="utf-8"))


def render_model_card(kind: str, model=None, folder=None, **info) -> str:
    """Render the model card of `kind` (see `MODEL_FACTS`) as markdown with a YAML header.

    model: the model the card describes (its parameter count and config are stated); None for the reference card.
    folder: a saved model folder; its `preprocessor_config.json` and file list are read when present.
    info: what the caller knows: `source_checkpoint`, `repo_id` (the Hub id the card will live at), `tags`,
        training figures (`training_steps`, `final_<name>`).
    """
    if kind not in MODEL_FACTS:
        raise ValueError(f"unknown model card kind {kind!r}; known: {', '.join(CARD_KINDS)}")
    facts = MODEL_FACTS[kind]
    values = {
        "metadata": _metadata(kind, extra_tags=info.get("tags") or ()),
        "title": facts["title"],
        "license_note": facts["license_note"],
        "model_path": info.get("repo_id") or facts["model_path"],
        "parameters": _parameters_section(kind, model),
        "preprocessing": _preprocessing_section(kind, model, folder),
        "checkpoint": _checkpoint_section(kind, model, folder, info),
        "training": _training_section(info, folder),
    }
    for partial in ("out_of_scope", "marking", "generator_evaluation"):
        values[partial] = _template(f"_{partial}").substitute(values).strip()
    text = _template(kind).substitute(values)
    text = re.sub(r"\n{3,}", "\n\n", text)  # sections that are empty for this card leave blank runs
    return text.strip() + "\n"


def write_model_card(folder, kind: str, model=None, **info) -> Path:
    """Write the model card of `kind` into `folder/README.md` (see `render_model_card`) and return its path."""
    folder = Path(folder)
    text = render_model_card(kind, model=model, folder=folder, **info)
    path = folder / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


#: `model.push_to_hub`: the method every talkface model class inherits (kept under its old name)
model_push_to_hub = TalkFaceHubMixin.push_to_hub

__all__ = ["CARD_KINDS", "MODEL_FACTS", "card_kind", "count_parameters", "model_push_to_hub", "push_to_hub",
           "render_model_card", "upload_folder_to_hub", "write_model_card"]
