"""Training losses of the talkface generator.

Pure functions and small modules:

* `gan_loss` / `discriminator_loss`: binary cross-entropy on real/fake logits.
* `l1_loss`: mean absolute pixel error.
* perceptual: `talkface.models.vgg19.VGGPerceptualLoss` (VGG-19, 5 layers, per-layer weights).
* `cosine_log_loss` and `AVHubertSyncLoss`: the AV-HuBERT lip-sync loss. The generated window is put back into
  the ground-truth video of the utterance, the mouth regions are cropped differentiably, a frozen AV-HuBERT
  encodes them, and the loss is -log(cosine similarity), clamped, averaged over the generated frames only.
  Variants: `unsupervised` (generated visual vs audio features; the default), `visual_visual` (generated vs
  ground-truth visual features), `multimodal` (generated video + audio vs ground-truth video + audio).
* `SyncNetExpertLoss`: the Wav2Lip lip-sync expert loss (BCE of the audio-visual cosine against "in sync"),
  the baseline the AV-HuBERT loss replaces.

A training recipe names its losses in a config (`losses: {l1: {weight: 10}, sync: {variant: ..., weight: 0.5}}`).
`GENERATOR_LOSSES` maps those names to builders of `LossTerm` modules that read what they need from a
`GeneratorLossInputs`; other recipes (e.g. TalkLip's lip-reading and contrastive losses) add entries with
`register_generator_loss` instead of editing the training loop. `ScheduledLoss` carries a term's weight and the
step range in which it is active.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

SYNC_VARIANTS = ("unsupervised", "visual_visual", "multimodal")
DEFAULT_MIN_COSINE = 1e-4


# --- plain losses --------------------------------------------------------------------------------------------------


def gan_loss(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Binary cross-entropy of discriminator logits against "real" (1) or "fake" (0), averaged."""
    target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Mean of the real-as-real and fake-as-fake cross-entropies."""
    return 0.5 * (gan_loss(real_logits, True) + gan_loss(fake_logits, False))


def l1_loss(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return F.l1_loss(generated.float(), target.float())


def cosine_log_loss(features: torch.Tensor, reference: torch.Tensor, min_cosine: float = DEFAULT_MIN_COSINE,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """-log(cosine similarity) along the last dim, the cosine clamped to [min_cosine, 1], averaged.

    Identical directions give 0; orthogonal or opposite ones give -log(min_cosine) (with no gradient, as the clamp
    is active). `mask` (same leading shape, bool) selects the positions to average over.
    """
    if not 0 < min_cosine < 1:
        raise ValueError(f"min_cosine={min_cosine} must be in (0, 1)")
    cosine = F.cosine_similarity(features.float(), reference.float(), dim=-1)
    losses = -torch.log(cosine.clamp(min=min_cosine, max=1.0))
    if mask is None:
        return losses.mean()
    mask = mask.to(losses.dtype)
    return (losses * mask).sum() / mask.sum().clamp(min=1.0)


# --- AV-HuBERT lip-sync loss ---------------------------------------------------------------------------------------


@dataclass
class SyncLossOutput:
    """loss: scalar; cosine: (batch, k) cosine similarity of each generated frame's features (for logging)."""

    loss: torch.Tensor
    cosine: torch.Tensor


def window_positions(window_start: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(batch,) window starts -> (batch, num_frames) frame positions in the context."""
    return window_start.long()[:, None] + torch.arange(num_frames, device=window_start.device)[None, :]


def insert_window(context: torch.Tensor, window: torch.Tensor, window_start: torch.Tensor) -> torch.Tensor:
    """Put `window` (batch, k, ...) into `context` (batch, T, ...) at `window_start` (batch,); out of place, so
    gradients flow to `window`."""
    batch, k = window.shape[:2]
    positions = window_positions(window_start, k)
    batch_index = torch.arange(batch, device=context.device)[:, None].expand(batch, k)
    return context.index_put((batch_index, positions), window.to(context.dtype))


def gather_window(sequence: torch.Tensor, window_start: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(batch, T, ...) -> (batch, num_frames, ...) frames starting at `window_start`."""
    positions = window_positions(window_start, num_frames)
    batch_index = torch.arange(sequence.shape[0], device=sequence.device)[:, None].expand_as(positions)
    return sequence[batch_index, positions]


class AVHubertSyncLoss(nn.Module):
    """AV-HuBERT lip-sync loss over the generated interval of an utterance.

    Args:
        avhubert: an `AVHubertModel` (frozen here: eval mode, no gradients to its weights).
        variant: "unsupervised" | "visual_visual" | "multimodal" (see the module docstring).
        min_cosine: lower clamp of the cosine before the log.
        output_layer: AV-HuBERT layer whose features are compared (None: the final layer after the final layer
            norm, what AV-HuBERT's fine-tuned heads read).
        crop_fn: the differentiable mouth crop, (images (N, 3, H, W) RGB [0, 1], affines (N, 2, 3)) ->
            (N, 1, 88, 88) normalised; defaults to `talkface.faces.mouth_roi.crop_mouth_differentiable`.
    """

    def __init__(self, avhubert: nn.Module, variant: str = "unsupervised", min_cosine: float = DEFAULT_MIN_COSINE,
                 output_layer: int | None = None, crop_fn: Callable | None = None):
        super().__init__()
        if variant not in SYNC_VARIANTS:
            raise ValueError(f"variant={variant!r} is not an AV-HuBERT sync-loss variant; use one of {SYNC_VARIANTS} "
                             "(or the 'syncnet' loss for the Wav2Lip expert)")
        if not 0 < min_cosine < 1:
            raise ValueError(f"min_cosine={min_cosine} must be in (0, 1)")
        self.avhubert = avhubert.eval().requires_grad_(False)
        self.variant = variant
        self.min_cosine = min_cosine
        self.output_layer = output_layer
        if crop_fn is None:
            from ...faces.mouth_roi import crop_mouth_differentiable as crop_fn
        self.crop_fn = crop_fn

    def train(self, mode: bool = True):
        super().train(mode)
        self.avhubert.eval()  # frozen: dropout off and statistics fixed whatever the training loop does
        return self

    def encode(self, audio_features, video, padding_mask):
        """(batch, T, 104) audio features and/or (batch, T, 1, 88, 88) mouth ROIs -> (batch, T, D) features."""
        output = self.avhubert(
            audio_features=None if audio_features is None else audio_features.transpose(1, 2),  # (batch, 104, T)
            video=None if video is None else video.permute(0, 2, 1, 3, 4),  # (batch, 1, T, 88, 88)
            padding_mask=padding_mask,
            output_layer=self.output_layer,
        )
        return output.last_hidden_state

    def crop(self, frames, affines):
        """(batch, T, 3, H, W) faces (uint8 or [0, 1]) + (batch, T, 2, 3) affines -> (batch, T, 1, 88, 88)."""
        if frames.dtype == torch.uint8:
            frames = frames.float() / 255.0
        rois = self.crop_fn(frames.reshape(-1, *frames.shape[2:]), affines.reshape(-1, 2, 3).to(frames.dtype))
        return rois.reshape(*frames.shape[:2], *rois.shape[1:])

    def forward(self, generated_frames, context_frames, context_affines, audio_features, window_start,
                padding_mask=None) -> SyncLossOutput:
        r"""
        Args:
            generated_frames: (batch, k, 3, H, W) RGB in [0, 1], the generated window.
            context_frames: (batch, T, 3, H, W) ground-truth faces of the utterance (uint8 or [0, 1]).
            context_affines: (batch, T, 2, 3) mouth-patch -> face-crop pixel maps of every context frame.
            audio_features: (batch, T, 104) AV-HuBERT audio features aligned to the context frames.
            window_start: (batch,) position of the generated window in the context.
            padding_mask: (batch, T) bool, True at padded positions (None: no padding).
        """
        batch, k = generated_frames.shape[:2]
        context_shape = context_frames.shape[:2]
        if audio_features.shape[:2] != context_shape or context_affines.shape[:2] != context_shape:
            raise ValueError(
                f"context_frames {tuple(context_frames.shape)}, context_affines {tuple(context_affines.shape)} and "
                f"audio_features {tuple(audio_features.shape)} must share (batch, T)"
            )
        if int(window_start.max()) + k > context_frames.shape[1] or int(window_start.min()) < 0:
            raise ValueError(f"the generated window (k={k}) at {window_start.tolist()} leaves the context of "
                             f"{context_frames.shape[1]} frames")
        with torch.no_grad():
            target_rois = self.crop(context_frames, context_affines)  # (batch, T, 1, 88, 88)
        generated_rois = self.crop(generated_frames, gather_window(context_affines, window_start, k))
        video = insert_window(target_rois, generated_rois, window_start)

        if self.variant == "unsupervised":
            with torch.no_grad():
                reference = self.encode(audio_features, None, padding_mask)
            features = self.encode(None, video, padding_mask)
        elif self.variant == "visual_visual":
            with torch.no_grad():
                reference = self.encode(None, target_rois, padding_mask)
            features = self.encode(None, video, padding_mask)
        else:  # multimodal
            with torch.no_grad():
                reference = self.encode(audio_features, target_rois, padding_mask)
            features = self.encode(audio_features, video, padding_mask)

        features = gather_window(features, window_start, k).float()  # (batch, k, D): the generated interval only
        reference = gather_window(reference, window_start, k).float()
        cosine = F.cosine_similarity(features, reference, dim=-1)
        loss = cosine_log_loss(features, reference, self.min_cosine)
        return SyncLossOutput(loss=loss, cosine=cosine.detach())


# --- Wav2Lip expert sync loss --------------------------------------------------------------------------------------


class SyncNetExpertLoss(nn.Module):
    """Wav2Lip's expert sync loss: BCE(cosine(audio embedding, face embedding), 1) with a frozen `SyncNetModel`.

    The expert's embeddings are ReLU outputs, L2-normalised, so the cosine lies in [0, 1] and the loss is
    -log(cosine) (clamped at 1e-7 like the BCE's log clamp)."""

    def __init__(self, expert: nn.Module):
        super().__init__()
        self.expert = expert.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.expert.eval()
        return self

    def forward(self, generated_frames: torch.Tensor, mel_chunks: torch.Tensor) -> SyncLossOutput:
        """generated_frames: (batch, k, 3, H, W) RGB [0, 1]; mel_chunks: (batch, 1, 80, 16) covering the k frames."""
        # (batch, k * 3, H // 2, W): BGR lower halves stacked frame-major, what the expert was trained on
        face_input = self.expert.stack_face_frames(generated_frames)  # RGB -> the expert's BGR windows
        output = self.expert(face_input, mel_chunks.to(face_input.dtype), return_dict=True)
        cosine = F.cosine_similarity(output.audio_embeds.float(), output.face_embeds.float(), dim=-1)
        # binary_cross_entropy is not autocast-safe: compute it in float32
        with torch.autocast(device_type=cosine.device.type, enabled=False):
            loss = F.binary_cross_entropy(cosine.clamp(1e-7, 1.0), torch.ones_like(cosine))
        return SyncLossOutput(loss=loss, cosine=cosine.detach()[:, None])


# --- loss terms, registry and schedule -----------------------------------------------------------------------------


@dataclass
class GeneratorLossInputs:
    """What a generator loss term may read.

    generated_frames: (batch, k, 3, H, W) RGB [0, 1] with gradients; batch: the `TalkFaceBatch`; fake_logits: a
    function giving the discriminator's logits on frames without updating the discriminator (None when there is
    no discriminator); step: the optimizer step; extras: anything a recipe computes once and shares between terms.
    """

    generated_frames: torch.Tensor
    batch: Any
    fake_logits: Callable[[torch.Tensor], torch.Tensor] | None = None
    step: int = 0
    extras: dict = field(default_factory=dict)


class LossTerm(nn.Module):
    """A generator loss: `forward(inputs: GeneratorLossInputs) -> scalar`; `last_metrics()` gives extra numbers
    to log. `needs_context` tells the training script that batches must carry the utterance context."""

    needs_context = False

    def forward(self, inputs: GeneratorLossInputs) -> torch.Tensor:
        raise NotImplementedError

    def last_metrics(self) -> dict:
        return {}


class L1Term(LossTerm):
    def forward(self, inputs):
        return l1_loss(inputs.generated_frames, inputs.batch.target_frames)


class PerceptualTerm(LossTerm):
    def __init__(self, perceptual_loss: nn.Module):
        super().__init__()
        self.perceptual_loss = perceptual_loss

    def forward(self, inputs):
        return self.perceptual_loss(inputs.generated_frames, inputs.batch.target_frames.to(inputs.generated_frames))


class GANTerm(LossTerm):
    def forward(self, inputs):
        if inputs.fake_logits is None:
            raise ValueError("the 'gan' loss needs a discriminator; add a discriminator section to the config or "
                             "remove the gan loss")
        return gan_loss(inputs.fake_logits(inputs.generated_frames), True)


class AVHubertSyncTerm(LossTerm):
    needs_context = True

    def __init__(self, sync_loss: AVHubertSyncLoss):
        super().__init__()
        self.sync_loss = sync_loss
        self._metrics = {}

    def forward(self, inputs):
        batch = inputs.batch
        output = self.sync_loss(inputs.generated_frames, batch.context_frames, batch.context_affines,
                                batch.context_audio_features, batch.window_start, batch.context_padding_mask)
        self._metrics = {"sync_cosine": output.cosine.mean()}
        return output.loss

    def last_metrics(self):
        return self._metrics


class SyncNetTerm(LossTerm):
    def __init__(self, expert_loss: SyncNetExpertLoss):
        super().__init__()
        self.expert_loss = expert_loss
        self._metrics = {}

    def forward(self, inputs):
        # the expert scores the whole k-frame window against the mel window that starts at its first frame
        output = self.expert_loss(inputs.generated_frames, inputs.batch.mel_chunks[:, 0])
        self._metrics = {"syncnet_cosine": output.cosine.mean()}
        return output.loss

    def last_metrics(self):
        return self._metrics


def load_frozen_network(spec, model_cls, config_cls, what: str):
    """A frozen network from a loss option: a model folder / Hub id (str), or `{"config": {...}}` for a randomly
    initialised one (tests and benchmarks only; logged as a warning)."""
    if isinstance(spec, dict) and "config" in spec:
        logger.warning("%s: using RANDOMLY INITIALISED weights (%s); only for tests and benchmarks", what,
                       model_cls.__name__)
        model = model_cls(config_cls(**spec["config"]))
    elif isinstance(spec, str) and spec:
        from ...utils.sources import resolve_source

        model = model_cls.from_pretrained(resolve_source(spec, what=f"{what} model").location)
    else:
        from ...errors import TalkFaceUserError

        raise TalkFaceUserError(f"{what}: give the folder or Hub id of a converted model (e.g. `talkface convert "
                                f"...`), got {spec!r}")
    return model.eval().requires_grad_(False)


def _build_l1(options):
    return L1Term()


def _build_gan(options):
    return GANTerm()


def _build_perceptual(options):
    from ...models.vgg19 import VGG19Config, VGG19Model, VGGPerceptualLoss

    vgg = load_frozen_network(options.pop("vgg19", None), VGG19Model, VGG19Config, "losses.perceptual.vgg19")
    return PerceptualTerm(VGGPerceptualLoss(vgg, layers=options.pop("layers", None),
                                            layer_weights=options.pop("layer_weights", None)))


def _build_sync(options):
    variant = options.pop("variant", "unsupervised")
    if variant == "syncnet":
        from ...models.syncnet import SyncNetConfig, SyncNetModel

        expert = load_frozen_network(options.pop("syncnet", None), SyncNetModel, SyncNetConfig, "losses.sync.syncnet")
        return SyncNetTerm(SyncNetExpertLoss(expert))
    from ...models.avhubert import AVHubertConfig, AVHubertModel

    avhubert = load_frozen_network(options.pop("avhubert", None), AVHubertModel, AVHubertConfig,
                                   "losses.sync.avhubert")
    return AVHubertSyncTerm(AVHubertSyncLoss(avhubert, variant=variant,
                                             min_cosine=float(options.pop("min_cosine", DEFAULT_MIN_COSINE)),
                                             output_layer=options.pop("output_layer", None)))


#: loss name in a training config -> builder(options: dict) -> LossTerm. Builders pop the options they use.
GENERATOR_LOSSES: dict[str, Callable[[dict], LossTerm]] = {
    "l1": _build_l1,
    "gan": _build_gan,
    "perceptual": _build_perceptual,
    "sync": _build_sync,
}


def register_generator_loss(name: str):
    """Decorator adding a loss builder to `GENERATOR_LOSSES` (e.g. TalkLip's lip-reading loss)."""

    def decorator(builder):
        GENERATOR_LOSSES[name] = builder
        return builder

    return decorator


@dataclass
class ScheduledLoss:
    """A named loss term with its weight, active for `start_step <= step < end_step` (end None: forever)."""

    name: str
    term: LossTerm
    weight: float
    start_step: int = 0
    end_step: int | None = None

    def active(self, step: int) -> bool:
        return self.weight != 0 and step >= self.start_step and (self.end_step is None or step < self.end_step)


SCHEDULE_KEYS = ("weight", "start_step", "end_step")


def build_generator_losses(loss_config: dict) -> list[ScheduledLoss]:
    """Build every loss named in `loss_config` ({name: {weight, start_step, end_step, **options}}).

    Unknown names and unused options raise, so a typo in a recipe fails at start-up rather than training
    silently without the loss.
    """
    losses = []
    for name, options in (loss_config or {}).items():
        options = dict(options or {})
        if name not in GENERATOR_LOSSES:
            raise ValueError(f"unknown loss {name!r} in the config; known losses: {sorted(GENERATOR_LOSSES)}")
        weight = float(options.pop("weight", 1.0))
        start_step = int(options.pop("start_step", 0))
        end_step = options.pop("end_step", None)
        term = GENERATOR_LOSSES[name](options)
        if options:
            raise ValueError(f"loss {name!r} does not use the option(s) {sorted(options)}; check the config")
        losses.append(ScheduledLoss(name, term, weight, start_step, None if end_step is None else int(end_step)))
    return losses


__all__ = [
    "GENERATOR_LOSSES",
    "AVHubertSyncLoss",
    "GeneratorLossInputs",
    "LossTerm",
    "ScheduledLoss",
    "SyncLossOutput",
    "SyncNetExpertLoss",
    "build_generator_losses",
    "cosine_log_loss",
    "discriminator_loss",
    "gan_loss",
    "gather_window",
    "insert_window",
    "l1_loss",
    "load_frozen_network",
    "register_generator_loss",
]
