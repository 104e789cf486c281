"""TalkLip's training losses: the lip-reading loss and the audio-visual contrastive loss.

From Wang et al., "Seeing What You Said: Talking Face Generation Guided by a Lip Reading Expert" (CVPR 2023);
facts in ../shared/reference/TECH.md section 3. Pure functions first, then `LossTerm`s registered in
`talkface.training.losses.core.GENERATOR_LOSSES` as "lip_reading" and "contrastive" (importing this module registers them).

Lip-reading loss:
  1. Hybrid video: the ground-truth video of the utterance with the generated frames substituted at their
     positions (`substitute_frames`), so the frozen lip reader sees real context around the generated window.
  2. Lip-reader input, two ways (`lip_reader_input`):
     * "talklip_center" (TalkLip's): each generated face, resized (bilinear) to its box, is pasted as float into the
       full frame; the frame is turned to grey (0.299 R + 0.587 G + 0.114 B, float, not rounded), /255, centre
       cropped to 88x88 (offset floor((W - 88) / 2), rows/cols 36:124 of LRS2's 160x160 frames) and normalised
       with mean 0.421 / std 0.165 (`talklip_lip_reader_video`). TalkLip's lip-reading experts were fine-tuned
       on these crops.
     * "mouth_roi" (AV-HuBERT's): the aligned 96x96 mouth crop, centre 88x88, with
       `talkface.faces.mouth_roi.crop_mouth_differentiable` (what the official AV-HuBERT checkpoints expect).
  3. Label-smoothed cross-entropy (fairseq's formula, epsilon 0.1) of the frozen `AVHubertForLipReading`'s
     teacher-forced predictions against the transcript (`label_smoothed_cross_entropy`, the one the lip reader's
     own head uses, from `talkface.models.avhubert.modeling_avhubert_lip_reading`), summed over the non-pad tokens like TalkLip
     (or averaged with `reduction="mean"`).
Contrastive loss (`contrastive_sync_loss`): InfoNCE at temperature 0.07 between the projected audio embedding of
each generated frame (normalize -> Linear -> normalize, `TalkLipContrastiveHead`) and the lip reader's visual
encoder feature of that frame (normalised); the negatives of an anchor are min(100, N // 2) *other audio*
embeddings of the batch, drawn without replacement.
"""

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ...faces.mouth_roi import center_crop_offset
from ...models.avhubert.modeling_avhubert_lip_reading import label_smoothed_cross_entropy
from .core import LossTerm, load_frozen_network, register_generator_loss

logger = logging.getLogger(__name__)

LABEL_SMOOTHING = 0.1
CONTRASTIVE_TEMPERATURE = 0.07
MAX_NEGATIVES = 100
LIP_READER_CROP_SIZE = 88
LIP_READER_MEAN = 0.421
LIP_READER_STD = 0.165
LUMA_WEIGHTS_RGB = (0.299, 0.587, 0.114)
LIP_READER_INPUTS = ("talklip_center", "mouth_roi")
REDUCTIONS = ("sum", "mean")  # of the lip-reading loss over target tokens (see label_smoothed_cross_entropy)


# --- hybrid videos and lip-reader inputs ---------------------------------------------------------------------------


def window_flat_positions(window_start: torch.Tensor, num_frames: int, sequence_length: int) -> torch.Tensor:
    """(B,) window starts -> (B * num_frames,) rows `b * T + start_b + j` of a flattened (B * T) sequence."""
    offsets = torch.arange(num_frames, device=window_start.device)
    rows = torch.arange(window_start.shape[0], device=window_start.device)[:, None] * sequence_length
    return (rows + window_start.long()[:, None] + offsets[None, :]).reshape(-1)


def substitute_frames(video: torch.Tensor, frames: torch.Tensor, flat_positions: torch.Tensor) -> torch.Tensor:
    """The hybrid video: `video` (B, T, ...) with `frames` (N, ...) written at rows `flat_positions` (N,) of its
    flattened (B * T) view. Out of place: gradients flow to `frames`, not to `video`."""
    batch, length = video.shape[:2]
    if frames.shape[1:] != video.shape[2:] or flat_positions.shape != (frames.shape[0],):
        raise ValueError(f"frames {tuple(frames.shape)} / positions {tuple(flat_positions.shape)} do not fit a video "
                         f"of frames {tuple(video.shape[2:])}")
    if flat_positions.numel() and (int(flat_positions.min()) < 0 or int(flat_positions.max()) >= batch * length):
        raise ValueError(f"positions must lie in [0, B * T) = [0, {batch * length})")
    flat = video.reshape(batch * length, *video.shape[2:]).to(frames.dtype)
    flat = flat.index_put((flat_positions.long(),), frames)
    return flat.reshape(video.shape)


def paste_faces(frames: torch.Tensor, faces: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Paste each face, resized (bilinear, no antialiasing) to its box, into its frame: TalkLip's `emb_roi2im`.

    Args:
        frames: (N, C, H, W) float frames on the 0..255 scale.
        faces: (N, C, h, w) generated faces in [0, 1] (multiplied by 255 here, kept float).
        boxes: (N, 4) integer (x1, y1, x2, y2) in frame pixels; x2/y2 are clipped to the frame like TalkLip does.
    Returns:
        (N, C, H, W), differentiable with respect to `faces`.
    """
    num_frames = frames.shape[0]
    if frames.dim() != 4 or faces.dim() != 4 or boxes.shape != (num_frames, 4) or faces.shape[0] != num_frames:
        raise ValueError(f"expected frames (N, C, H, W), faces (N, C, h, w), boxes (N, 4); got {tuple(frames.shape)}, "
                         f"{tuple(faces.shape)}, {tuple(boxes.shape)}")
    height, width = frames.shape[-2:]
    pasted = []
    for frame, face, box in zip(frames, faces, boxes.tolist()):
        x1, y1, x2, y2 = (int(v) for v in box)
        x2, y2 = min(x2, width), min(y2, height)
        if not (0 <= x1 < x2 and 0 <= y1 < y2):
            raise ValueError(f"face box {box} is empty or outside the {width}x{height} frame")
        resized = F.interpolate(face[None].to(frames.dtype) * 255.0, size=(y2 - y1, x2 - x1), mode="bilinear",
                                align_corners=False)[0]
        # pad the face to the frame and blend with a 0/1 mask: out of place, so the face keeps its gradient
        padded = F.pad(resized, (x1, width - x2, y1, height - y2))
        mask = F.pad(torch.ones_like(resized[:1]), (x1, width - x2, y1, height - y2))
        pasted.append(frame * (1 - mask) + padded)
    return torch.stack(pasted)


def talklip_lip_reader_video(frames: torch.Tensor, channel_order: str = "rgb", crop_size: int = LIP_READER_CROP_SIZE,
                             mean: float = LIP_READER_MEAN, std: float = LIP_READER_STD,
                             padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """TalkLip's lip-reader transform of whole frames: (B, T, 3, H, W) on the 0..255 scale -> (B, 1, T, 88, 88).

    Grey = 0.299 R + 0.587 G + 0.114 B (float), /255, centre crop of the whole frame, (x - mean) / std. Padded
    frames (`padding_mask` True) are zeros, as the reference collater pads them.
    """
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}")
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    height, width = frames.shape[-2:]
    if height < crop_size or width < crop_size:
        raise ValueError(f"frames of {height}x{width} are smaller than the {crop_size}x{crop_size} centre crop")
    weights = torch.tensor(LUMA_WEIGHTS_RGB if channel_order == "rgb" else LUMA_WEIGHTS_RGB[::-1],
                           dtype=frames.dtype, device=frames.device)
    gray = (frames * weights.view(1, 1, 3, 1, 1)).sum(dim=2)  # (B, T, H, W)
    top, left = center_crop_offset(height, crop_size), center_crop_offset(width, crop_size)
    gray = gray[:, :, top:top + crop_size, left:left + crop_size] / 255.0
    video = ((gray - mean) / std).unsqueeze(1)  # (B, 1, T, crop, crop)
    if padding_mask is not None:
        video = video.masked_fill(padding_mask[:, None, :, None, None].to(video.device), 0.0)
    return video


def lip_reader_input(mode: str, context_frames: torch.Tensor, generated_faces: torch.Tensor,
                     flat_positions: torch.Tensor, context_affines: torch.Tensor | None = None,
                     context_boxes: torch.Tensor | None = None, padding_mask: torch.Tensor | None = None,
                     crop_fn=None) -> torch.Tensor:
    """The frozen lip reader's video input for a hybrid video: (B, 1, T, 88, 88).

    Args:
        mode: "talklip_center" or "mouth_roi" (see the module docstring).
        context_frames: (B, T, 3, H, W) ground-truth frames, RGB, uint8 or float on the 0..255 scale. For
            "talklip_center" these are the full frames the faces were cropped from; when `context_boxes` is None
            they are taken to be the face crops themselves (the box is the whole frame, e.g. talkface's
            preprocessed face crops).
        generated_faces: (N, 3, S, S) generated faces, RGB in [0, 1], with gradients.
        flat_positions: (N,) rows b * T + t of the generated faces in the flattened (B * T) video.
        context_affines: (B, T, 2, 3) mouth-patch -> frame pixel maps ("mouth_roi" only).
        context_boxes: (B, T, 4) face boxes (x1, y1, x2, y2) in frame pixels ("talklip_center", optional).
        padding_mask: (B, T) bool, True at padding (zeroed in the output).
    """
    if mode not in LIP_READER_INPUTS:
        raise ValueError(f"lip reader input must be one of {LIP_READER_INPUTS}, got {mode!r}")
    batch, length = context_frames.shape[:2]
    frames = context_frames.float()
    if mode == "talklip_center":
        height, width = frames.shape[-2:]
        if context_boxes is None:
            boxes = torch.tensor([0, 0, width, height], device=frames.device).expand(len(flat_positions), 4)
        else:
            boxes = context_boxes.reshape(batch * length, 4)[flat_positions.long()]
        originals = frames.reshape(batch * length, *frames.shape[2:])[flat_positions.long()]
        pasted = paste_faces(originals, generated_faces, boxes)  # (N, 3, H, W), 0..255
        hybrid = substitute_frames(frames, pasted, flat_positions)
        return talklip_lip_reader_video(hybrid, channel_order="rgb", padding_mask=padding_mask)

    if context_affines is None:
        raise ValueError("the 'mouth_roi' lip reader input needs context_affines (mouth-patch -> frame maps)")
    if crop_fn is None:
        from ...faces.mouth_roi import crop_mouth_differentiable as crop_fn
    affines = context_affines.float()
    with torch.no_grad():
        # (B * T, 1, 88, 88) mouth crops of the ground truth; frames are /255 for the crop
        real = crop_fn(frames.reshape(batch * length, *frames.shape[2:]) / 255.0, affines.reshape(-1, 2, 3))
    picked_affines = affines.reshape(-1, 2, 3)[flat_positions.long()]
    generated = crop_fn(generated_faces.float(), picked_affines)  # (N, 1, 88, 88)
    hybrid = substitute_frames(real.reshape(batch, length, *real.shape[1:]), generated, flat_positions)
    video = hybrid.permute(0, 2, 1, 3, 4)  # (B, 1, T, 88, 88)
    if padding_mask is not None:
        video = video.masked_fill(padding_mask[:, None, :, None, None].to(video.device), 0.0)
    return video


# --- lip-reading loss ----------------------------------------------------------------------------------------------


class LipReadingLoss(nn.Module):
    """Teacher-forced, label-smoothed cross-entropy of a frozen `AVHubertForLipReading` on a (hybrid) video.

    Args:
        lip_reader: an `AVHubertForLipReading`; frozen here (eval mode, no gradients to its weights). Gradients
            still flow through it to the video.
        label_smoothing: epsilon (0.1, the lip-reading expert's fine-tuning value).
        reduction: "sum" over non-pad target tokens (TalkLip) or "mean".
    """

    def __init__(self, lip_reader: nn.Module, label_smoothing: float = LABEL_SMOOTHING, reduction: str = "sum"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.lip_reader = lip_reader.eval().requires_grad_(False)
        self.label_smoothing = float(label_smoothing)
        self.reduction = reduction

    def train(self, mode: bool = True):
        super().train(mode)
        self.lip_reader.eval()  # frozen whatever the training loop does
        return self

    def forward(self, video: torch.Tensor, targets: torch.Tensor, padding_mask: torch.Tensor | None = None):
        """video: (B, 1, T, 88, 88); targets: (B, L) token ids ending with eos, right-padded with pad (1).

        Returns (loss, nll_loss, encoder_hidden_states (B, T, D)).
        """
        from ...models.avhubert.modeling_avhubert_lip_reading import shift_tokens_right

        config = self.lip_reader.config
        decoder_input_ids = shift_tokens_right(targets, config.pad_token_id, config.decoder_start_token_id)
        output = self.lip_reader(video=video.to(next(self.lip_reader.parameters()).dtype), padding_mask=padding_mask,
                                 decoder_input_ids=decoder_input_ids, return_dict=True)
        loss, nll = label_smoothed_cross_entropy(output.logits, targets, self.label_smoothing, config.pad_token_id,
                                                 self.reduction)
        return loss, nll, output.encoder_last_hidden_state


# --- contrastive loss ----------------------------------------------------------------------------------------------


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
             temperature: float = CONTRASTIVE_TEMPERATURE) -> torch.Tensor:
    """mean_i -log softmax([a_i . p_i, a_i . n_i1, ..., a_i . n_ik] / temperature)[0].

    anchors, positives: (N, D); negatives: (N, k, D). Vectors are used as given (normalise them first).
    """
    positive_logits = (anchors * positives).sum(dim=-1, keepdim=True)  # (N, 1)
    negative_logits = torch.einsum("nd,nkd->nk", anchors, negatives)  # (N, k)
    logits = torch.cat([positive_logits, negative_logits], dim=1).float() / temperature
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def sample_negative_indices(num_items: int, num_negatives: int, generator: torch.Generator | None = None,
                            device=None) -> torch.Tensor:
    """(num_items, num_negatives) indices: for each item, distinct other items, uniformly without replacement."""
    if num_negatives > num_items - 1:
        raise ValueError(f"cannot draw {num_negatives} negatives from {num_items - 1} other items")
    weights = torch.ones(num_items, num_items - 1)
    drawn = torch.multinomial(weights, num_negatives, replacement=False, generator=generator)  # among N - 1 others
    own = torch.arange(num_items)[:, None]
    return (drawn + (drawn >= own).long()).to(device)  # skip over the item itself


def contrastive_sync_loss(audio_embeds: torch.Tensor, visual_features: torch.Tensor,
                          temperature: float = CONTRASTIVE_TEMPERATURE, max_negatives: int = MAX_NEGATIVES,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """TalkLip's audio-visual InfoNCE over N generated frames.

    Args:
        audio_embeds: (N, D) projected audio embeddings (`TalkLipContrastiveHead` output; normalised again here).
        visual_features: (N, D) the lip reader's encoder features at the same frames (normalised here).
        temperature: 0.07.
        max_negatives: negatives per anchor are min(max_negatives, N // 2) other audio embeddings.
        generator: random generator for the negative draw (tests; training uses the global RNG).
    """
    if audio_embeds.dim() != 2 or audio_embeds.shape != visual_features.shape:
        raise ValueError(f"audio_embeds {tuple(audio_embeds.shape)} and visual_features "
                         f"{tuple(visual_features.shape)} must both be (N, D)")
    num_items = audio_embeds.shape[0]
    if num_items < 2:
        raise ValueError("the contrastive loss needs at least 2 frames (negatives are the other frames' audio)")
    anchors = F.normalize(audio_embeds.float(), dim=-1)
    positives = F.normalize(visual_features.float(), dim=-1)
    num_negatives = min(max_negatives, num_items // 2)
    indices = sample_negative_indices(num_items, num_negatives, generator, device=anchors.device)
    negatives = anchors[indices]  # (N, k, D)
    return info_nce(anchors, positives, negatives, temperature)


# --- loss terms for the training script ----------------------------------------------------------------------------
#
# Both terms read the generated window (inputs.generated_frames, (B, k, 3, S, S) RGB) and the batch's utterance
# context (context_frames / context_affines / context_padding_mask / window_start) plus `target_tokens` (B, L)
# (see `talkface.training.recipes.talklip.TalkLipBatch`). The contrastive term also reads the projected audio
# embeddings that the TalkLip generator step puts into `inputs.extras["contrastive_audio_embeds"]` (B * k, D), and the
# lip reader's encoder features of the hybrid video. The lip reader runs once per step whatever the order of the two
# terms: its result is cached in `inputs.extras` (a fresh dict every step), and the contrastive term reaches the
# lip-reading term through `link_contrastive_to_lip_reading` (the TalkLip recipe's `prepare_losses` calls it).

LIP_READER_CACHE = "lip_reader_output"


class LipReadingTerm(LossTerm):
    needs_context = True

    def __init__(self, loss: LipReadingLoss, lip_reader_input_mode: str = "mouth_roi"):
        super().__init__()
        if lip_reader_input_mode not in LIP_READER_INPUTS:
            raise ValueError(f"lip_reader_input must be one of {LIP_READER_INPUTS}, got {lip_reader_input_mode!r}")
        self.loss = loss
        self.lip_reader_input_mode = lip_reader_input_mode
        self._metrics = {}

    def lip_reader_output(self, inputs) -> dict:
        """{"loss", "nll", "encoder_states" (B, T, D), "positions" (B * k,)} of this step, computed once."""
        if LIP_READER_CACHE in inputs.extras:
            return inputs.extras[LIP_READER_CACHE]
        batch = inputs.batch
        if getattr(batch, "target_tokens", None) is None or batch.context_frames is None:
            raise ValueError("the lip_reading loss needs the whole utterance (context_frames) and its transcript "
                             "(target_tokens): train with the TalkLip recipe's dataset (model.type: talklip)")
        generated = inputs.generated_frames
        k, length = generated.shape[1], batch.context_frames.shape[1]
        positions = window_flat_positions(batch.window_start.to(generated.device), k, length)
        faces = generated.reshape(-1, *generated.shape[2:])  # (B * k, 3, S, S)
        video = lip_reader_input(self.lip_reader_input_mode, batch.context_frames, faces, positions,
                                 context_affines=batch.context_affines,
                                 context_boxes=getattr(batch, "context_boxes", None),
                                 padding_mask=batch.context_padding_mask)
        loss, nll, encoder_states = self.loss(video, batch.target_tokens.to(generated.device),
                                              batch.context_padding_mask)
        output = {"loss": loss, "nll": nll, "encoder_states": encoder_states, "positions": positions}
        inputs.extras[LIP_READER_CACHE] = output
        return output

    def forward(self, inputs):
        output = self.lip_reader_output(inputs)
        nll = output["nll"].detach()
        if self.loss.reduction == "sum":
            nll = nll / inputs.batch.target_tokens.ne(self.loss.lip_reader.config.pad_token_id).sum().clamp(min=1)
        self._metrics = {"lip_nll_per_token": nll}
        return output["loss"]

    def last_metrics(self):
        return self._metrics


class ContrastiveTerm(LossTerm):
    needs_context = True

    def __init__(self, temperature: float = CONTRASTIVE_TEMPERATURE, max_negatives: int = MAX_NEGATIVES):
        super().__init__()
        if temperature <= 0 or max_negatives < 1:
            raise ValueError(f"temperature must be > 0 and max_negatives >= 1, got {temperature}, {max_negatives}")
        self.temperature = float(temperature)
        self.max_negatives = int(max_negatives)
        # not a submodule: the lip-reading term (and its lip reader) belongs to its own ScheduledLoss
        self.__dict__["lip_reading_term"] = None

    def forward(self, inputs):
        extras = inputs.extras
        if extras.get("contrastive_audio_embeds") is None:
            raise ValueError("the contrastive loss needs the TalkLip generator's projected audio embeddings "
                             "(model.type: talklip with use_contrastive_head)")
        if self.lip_reading_term is not None:
            output = self.lip_reading_term.lip_reader_output(inputs)
        elif LIP_READER_CACHE in extras:
            output = extras[LIP_READER_CACHE]
        else:
            raise ValueError("the contrastive loss compares audio with the lip reader's features: add the lip_reading "
                             "loss (active over the same steps) to the config")
        states = output["encoder_states"]  # (B, T, D)
        visual = states.reshape(-1, states.shape[-1])[output["positions"]]  # (B * k, D)
        return contrastive_sync_loss(extras["contrastive_audio_embeds"], visual, self.temperature,
                                     self.max_negatives)


def link_contrastive_to_lip_reading(losses) -> None:
    """Let the contrastive term run the lip reader through the lip-reading term, whatever their order in the config.

    `losses` are `ScheduledLoss`es (or terms). Does nothing when either term is absent.
    """
    terms = [getattr(loss, "term", loss) for loss in losses]
    lip_terms = [term for term in terms if isinstance(term, LipReadingTerm)]
    for term in terms:
        if isinstance(term, ContrastiveTerm) and lip_terms:
            term.__dict__["lip_reading_term"] = lip_terms[0]


@register_generator_loss("lip_reading")
def _build_lip_reading(options):
    from ...models.avhubert import AVHubertConfig, AVHubertForLipReading

    lip_reader = load_frozen_network(options.pop("lip_reader", None), AVHubertForLipReading, AVHubertConfig,
                                     "losses.lip_reading.lip_reader")
    loss = LipReadingLoss(lip_reader, label_smoothing=float(options.pop("label_smoothing", LABEL_SMOOTHING)),
                          reduction=options.pop("reduction", "sum"))
    options.pop("tokenizer", None)  # read by the TalkLip dataset, not by the loss
    return LipReadingTerm(loss, lip_reader_input_mode=options.pop("lip_reader_input", "mouth_roi"))


@register_generator_loss("contrastive")
def _build_contrastive(options):
    return ContrastiveTerm(temperature=float(options.pop("temperature", CONTRASTIVE_TEMPERATURE)),
                           max_negatives=int(options.pop("max_negatives", MAX_NEGATIVES)))


__all__ = [
    "label_smoothed_cross_entropy",
    "window_flat_positions",
    "substitute_frames",
    "paste_faces",
    "talklip_lip_reader_video",
    "lip_reader_input",
    "LipReadingLoss",
    "info_nce",
    "sample_negative_indices",
    "contrastive_sync_loss",
    "LipReadingTerm",
    "ContrastiveTerm",
    "link_contrastive_to_lip_reading",
]
