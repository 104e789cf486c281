"""TalkLip's training recipe (`model.type: talklip` in a recipe YAML, train/configs/talklip.yaml).

What it supplies to the loop of `train/train.py` (the `TrainingRecipe` interface, talkface/training/recipes/base.py):

* `build_generator()`: a `TalkLipModel` from the `model` section (optionally with its global audio encoder
  initialised from a converted AV-HuBERT lip reader, as TalkLip initialises it from its lip-reading expert, or
  from a converted TalkLip checkpoint to fine-tune);
* `build_discriminator()`: Wav2Lip's visual-quality discriminator, which TalkLip trains against (adapted to the
  loop's (batch, k, 3, S, S) RGB windows);
* `build_losses()` / `build_datasets()`: the contrastive term linked to the lip-reading term, and the transcript of
  each utterance as `target_tokens` for the lip-reading loss (`collate_fn`);
* `generator_forward()`: one generator forward on a `TalkLipBatch` -> (generated RGB windows, extras for the losses);
* `on_step()`: the staged schedule. Stage 1 turns on fine-tuning of the audio encoder's last layers at
  `model.audio_finetuning_start_step`; stage 2 is the `start_step` of the lip_reading and contrastive losses
  (handled by the loss schedule). TalkLip moved between stages when the validation loss stopped improving
  (patience 5 evaluations); here the thresholds are explicit steps, logged when they fire;
* `inference_generator()`: the pipeline's `TalkLipGenerator` around the model being trained (validation videos);
* `feature_extractor()`: the preprocessing saved beside the trained weights.

Loss weights follow TalkLip (train.py): total = lip_w * lip + perp_w * adversarial + (1 - lip_w - perp_w) * L1 +
cont_w * contrastive, with lip_w 1e-5, perp_w 0.07 (TalkLip's "perceptual" term is the discriminator's), cont_w 1e-3;
see train/configs/talklip.yaml.
"""

import logging
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import SyntheticTalkFaceDataset, TalkFaceBatch, TalkFaceDataset, collate_talkface
from ...errors import TalkFaceUserError
from ..losses.talklip import LipReadingTerm, link_contrastive_to_lip_reading, window_flat_positions
from ...models.wav2lip.configuration_wav2lip import Wav2LipVisualDiscriminatorConfig
from ...models.wav2lip.modeling_wav2lip import Wav2LipDiscriminatorOutput, Wav2LipVisualDiscriminator
from ...models.talklip.configuration_talklip import TalkLipConfig
from ...models.talklip.modeling_talklip import TalkLipModel
from .base import TrainingRecipe, register_recipe

logger = logging.getLogger(__name__)

PAD_TOKEN_ID = 1
EOS_TOKEN_ID = 2
FIRST_ORDINARY_TOKEN_ID = 4  # after bos, pad, eos, unk
# keys of the `model` section that configure training, not the architecture
RECIPE_KEYS = ("type", "num_frames", "audio_finetuning_start_step", "audio_encoder_from", "init_from", "syncnet")


# --- batches and datasets -----------------------------------------------------------------------------------------


@dataclass
class TalkLipBatch(TalkFaceBatch):
    """A `TalkFaceBatch` plus the transcript of each utterance.

    target_tokens: (batch, L) long, the lip reader's token ids of the whole utterance ending with eos (2),
        right-padded with pad (1); None when no lip-reading loss is trained.
    """

    target_tokens: torch.Tensor | None = None


def collate_talklip(samples: list[dict]) -> TalkLipBatch:
    """`collate_talkface` plus `target_tokens` padded with pad (1)."""
    batch = collate_talkface(samples)
    values = {item.name: getattr(batch, item.name) for item in fields(batch)}
    tokens = None
    if all(sample.get("target_tokens") is not None for sample in samples):
        longest = max(len(sample["target_tokens"]) for sample in samples)
        tokens = torch.full((len(samples), longest), PAD_TOKEN_ID, dtype=torch.long)
        for row, sample in enumerate(samples):
            tokens[row, : len(sample["target_tokens"])] = torch.as_tensor(sample["target_tokens"], dtype=torch.long)
    return TalkLipBatch(**values, target_tokens=tokens)


class TalkLipDataset(Dataset):
    """Adds each utterance's transcript (`target_tokens`) to the items of a talkface dataset.

    Preprocessed sets store the transcript in the manifest (`record.extra["text"]`, read from LRS2/LRS3 .txt files
    by train/preprocess.py); videos without one are left out (counted and logged). The lip-reading loss compares
    the transcript with the whole utterance, so the dataset must give whole-utterance context
    (`dataset.context_frames: null`). Synthetic sets get random token sequences (3-8 tokens + eos).

    Args:
        dataset: a `TalkFaceDataset` or `SyntheticTalkFaceDataset` built with context.
        tokenizer: an `AVHubertTokenizer` (preprocessed sets).
        vocab_size: the lip reader's vocabulary (synthetic sets).
    """

    def __init__(self, dataset, tokenizer=None, vocab_size: int | None = None, seed: int = 0):
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.seed = seed
        self.num_without_text = 0
        if isinstance(dataset, TalkFaceDataset):
            if tokenizer is None:
                raise TalkFaceUserError("the lip-reading loss needs a tokenizer: give losses.lip_reading.tokenizer "
                                        "(or a lip_reader folder converted with its tokenizer)")
            if not dataset.context or dataset.context_frames is not None:
                raise TalkFaceUserError("the lip-reading loss reads whole utterances: set dataset.context_frames: "
                                        "null (the transcript covers the whole video)")
            with_text = [r for r in dataset.records if (r.extra or {}).get("text")]
            self.num_without_text = len(dataset.records) - len(with_text)
            if self.num_without_text:
                logger.warning("%d of %d videos have no transcript (manifest extra.text) and are left out of "
                               "TalkLip training", self.num_without_text, len(dataset.records))
            if not with_text:
                raise TalkFaceUserError("no video has a transcript: preprocess LRS2/LRS3-style data with the .txt "
                                        "files beside the videos (train/preprocess.py stores them in the manifest)")
            dataset.records = with_text  # the wrapped dataset draws only from videos with a transcript
            self._tokens = {}
        elif isinstance(dataset, SyntheticTalkFaceDataset):
            if vocab_size is None or vocab_size <= FIRST_ORDINARY_TOKEN_ID:
                raise ValueError(f"synthetic transcripts need the lip reader's vocab_size, got {vocab_size}")
        else:
            raise TypeError(f"TalkLipDataset wraps TalkFaceDataset or SyntheticTalkFaceDataset, got "
                            f"{type(dataset).__name__}")

    def set_epoch(self, epoch: int):
        self.dataset.set_epoch(epoch)

    def __len__(self):
        return len(self.dataset)

    def _transcript_tokens(self, index: int) -> list[int]:
        if isinstance(self.dataset, SyntheticTalkFaceDataset):
            rng = np.random.default_rng([self.seed, index])
            length = int(rng.integers(3, 9))
            return rng.integers(FIRST_ORDINARY_TOKEN_ID, self.vocab_size, length).tolist() + [EOS_TOKEN_ID]
        record = self.dataset.records[index % len(self.dataset.records)]
        if record.id not in self._tokens:
            self._tokens[record.id] = self.tokenizer.encode(record.extra["text"])
        return self._tokens[record.id]

    def __getitem__(self, index):
        item = self.dataset[index]
        item["target_tokens"] = self._transcript_tokens(index)
        return item


# --- discriminator ------------------------------------------------------------------------------------------------


class TalkLipVisualDiscriminator(Wav2LipVisualDiscriminator):
    """Wav2Lip's visual-quality discriminator (TalkLip's `TalkLip_disc_qual`) for the training loop's windows.

    Takes (batch, k, 3, S, S) RGB in [0, 1] (the loop's layout) and feeds the network its own layout, BGR
    (batch, 3, k, S, S). Saved folders are ordinary `wav2lip_discriminator` folders.
    """

    def forward(self, face_frames: torch.Tensor, labels: torch.Tensor | None = None, return_dict: bool | None = None,
                **kwargs):
        """face_frames: (batch, k, 3, S, S) RGB. Returns per-frame scores shaped (batch, k) (one row per window, as
        the training loop splits real and fake windows); `labels` (batch,) or (batch, k), 1 = real."""
        if face_frames.dim() != 5 or face_frames.shape[2] != 3:
            raise ValueError(f"TalkLipVisualDiscriminator expects (batch, k, 3, S, S) RGB windows, got "
                             f"{tuple(face_frames.shape)}")
        batch_size, k = face_frames.shape[:2]
        bgr = face_frames.flip(2).transpose(1, 2)  # (batch, 3, k, S, S) BGR
        output = super().forward(bgr, return_dict=True)
        logits = output.logits.reshape(batch_size, k)  # frames are folded batch-major: row b holds its k frames
        loss = None
        if labels is not None:
            targets = labels.to(logits.dtype).reshape(batch_size, -1).expand(batch_size, k)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        result = Wav2LipDiscriminatorOutput(loss=loss, probabilities=torch.sigmoid(logits), logits=logits)
        return result if return_dict is not False else result.to_tuple()


# --- the recipe ---------------------------------------------------------------------------------------------------


@register_recipe
class TalkLipTrainingRecipe(TrainingRecipe):
    """Everything train.py needs to train TalkLip (see the module docstring).

    Args:
        config: the whole resolved training config (train.py's dict); reads `model`, `discriminator` and `losses`.
    """

    name = "talklip"
    card_kind = "talklip"
    generator_class = TalkLipModel
    # the staged schedule leaves parameters without gradients in some steps (the audio encoder's last layers before
    # stage 1, the contrastive head before stage 2): DDP must be told
    ddp_find_unused_parameters = True
    collate_fn = staticmethod(collate_talklip)

    def __init__(self, config: dict):
        super().__init__(config)
        model = dict(config.get("model") or {})
        if model.get("type", "talklip") != "talklip":
            raise ValueError(f"model.type={model.get('type')!r} is not talklip")
        self._num_frames = int(model.get("num_frames", 5))
        start = model.get("audio_finetuning_start_step")
        self.audio_finetuning_start_step = None if start is None else int(start)
        self.audio_encoder_from = model.get("audio_encoder_from")
        self.init_from = model.get("init_from")
        architecture = {k: v for k, v in model.items() if k not in RECIPE_KEYS}
        if self.init_from:
            self.model_config = TalkLipConfig.from_pretrained(self.init_from, **architecture)
        else:
            if self.audio_encoder_from and architecture.get("audio_encoder_type", "global") == "global":
                from ...models.avhubert import AVHubertConfig

                encoder_config = AVHubertConfig.from_pretrained(self.audio_encoder_from)
                architecture["avhubert_config"] = {**encoder_config.to_dict(),
                                                   **(architecture.get("avhubert_config") or {})}
            try:
                self.model_config = TalkLipConfig(**architecture)
            except (TypeError, ValueError) as err:
                raise TalkFaceUserError(f"invalid TalkLip model section: {err}") from err
        if self.audio_finetuning_start_step is not None and not self.model_config.is_global:
            raise TalkFaceUserError("model.audio_finetuning_start_step applies to the global audio encoder only; "
                                    "remove it (the local encoder is trained from the start)")
        self._finetuning_announced = False

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def img_size(self) -> int:
        return self.model_config.image_size

    @property
    def needs_context(self) -> bool:
        """The global encoder reads the utterance's AV-HuBERT audio features (the batch's context)."""
        return self.model_config.is_global

    # -- networks ---------------------------------------------------------------------------------------------------

    def build_generator(self, log=logger) -> TalkLipModel:
        if self.init_from:
            generator = TalkLipModel.from_pretrained(self.init_from, config=self.model_config)
            log.info(f"TalkLip generator initialised from {self.init_from}")
            return generator
        generator = TalkLipModel(self.model_config)
        if self.audio_encoder_from and self.model_config.is_global:
            from ...models.avhubert import AVHubertModel

            encoder = AVHubertModel.from_pretrained(self.audio_encoder_from)
            generator.audio_encoder.load_state_dict(encoder.state_dict(), strict=True)
            generator.freeze_audio_encoder()
            log.info(f"audio encoder initialised from the AV-HuBERT encoder of {self.audio_encoder_from}")
        elif self.model_config.is_global:
            log.warning("model.audio_encoder_from is not set: the global audio encoder keeps RANDOM weights (fine "
                        "for smoke tests only); convert TalkLip's lip-reading expert with `talkface convert avhubert` "
                        "and set model.audio_encoder_from")
        return generator

    def build_discriminator(self) -> TalkLipVisualDiscriminator | None:
        """Wav2Lip's visual-quality discriminator; the `discriminator` section holds its config fields (`type`
        ignored)."""
        section = self.config.get("discriminator")
        if section is None:
            return None
        fields_ = {k: v for k, v in section.items() if k != "type"}
        fields_.setdefault("image_size", self.img_size)
        return TalkLipVisualDiscriminator(Wav2LipVisualDiscriminatorConfig(**fields_))

    def inference_generator(self, model: TalkLipModel):
        from ...pipelines.lipsync.adapters.talklip import TalkLipGenerator

        return TalkLipGenerator(model, self.feature_extractor())

    def feature_extractor(self):
        from ...models.talklip.convert_talklip_original_checkpoint import feature_extractor_for

        return feature_extractor_for(self.model_config)

    # -- losses and data --------------------------------------------------------------------------------------------

    def build_losses(self, discriminator=None):
        return self.prepare_losses(super().build_losses(discriminator))

    def prepare_losses(self, losses):
        """Link the contrastive term to the lip-reading term (one lip-reader pass per step, any config order)."""
        link_contrastive_to_lip_reading(losses)
        return losses

    def build_datasets(self, losses):
        return self.wrap_datasets(*super().build_datasets(losses), losses)

    def wrap_datasets(self, train_dataset, val_dataset, losses):
        """Add transcripts when a lip_reading loss is trained (tokenizer from its options or its lip reader)."""
        lip_terms = [loss.term for loss in losses if isinstance(loss.term, LipReadingTerm)]
        if not lip_terms:
            return train_dataset, val_dataset
        options = (self.config.get("losses") or {}).get("lip_reading") or {}
        tokenizer = None
        if isinstance(train_dataset, TalkFaceDataset):
            from ...models.avhubert.tokenization_avhubert import AVHubertTokenizer

            source = options.get("tokenizer") or options.get("lip_reader")
            if not isinstance(source, str):
                raise TalkFaceUserError("losses.lip_reading.tokenizer: give the folder of the lip reader's tokenizer "
                                        "(talkface convert avhubert saves it beside the model)")
            tokenizer = AVHubertTokenizer.from_pretrained(source)
        vocab_size = lip_terms[0].loss.lip_reader.config.vocab_size
        seed = int(self.config.get("seed", 0))
        wrapped = [TalkLipDataset(d, tokenizer=tokenizer, vocab_size=vocab_size, seed=seed + offset)
                   if d is not None and len(d) else d for offset, d in enumerate((train_dataset, val_dataset))]
        return tuple(wrapped)

    # -- steps ------------------------------------------------------------------------------------------------------

    def generator_forward(self, generator, batch: TalkFaceBatch, step: int = 0):
        """One generator forward: (generated (batch, k, 3, S, S) RGB in [0, 1], extras for the loss terms).

        The network sees each frame of the window as one face: 6-channel BGR (masked target + reference) and, for the
        global encoder, the frame's row of the utterance's encoder output (`window_start + j`).
        """
        batch_size, k, channels, size = batch.masked_frames.shape[:4]
        # (batch * k, 6, S, S): BGR masked frame then BGR reference, frame-major within each item
        faces = torch.cat([batch.masked_frames.flip(2), batch.reference_frames.flip(2)], dim=2)
        faces = faces.reshape(batch_size * k, 2 * channels, size, size)
        if self.model_config.is_global:
            if batch.context_audio_features is None:
                raise ValueError("the global TalkLip encoder needs the batch's utterance context "
                                 "(context_audio_features); build the datasets with context")
            length = batch.context_audio_features.shape[1]
            positions = window_flat_positions(batch.window_start.to(faces.device), k, length)
            output = generator(faces, audio_features=batch.context_audio_features.transpose(1, 2),
                               audio_frame_indices=positions, padding_mask=batch.context_padding_mask)
        else:
            mel_chunks = batch.mel_chunks.reshape(batch_size * k, *batch.mel_chunks.shape[2:])
            output = generator(faces, mel_chunks=mel_chunks)
        generated = output.generated_faces.flip(1).reshape(batch_size, k, channels, size, size)  # back to RGB
        extras = {"contrastive_audio_embeds": output.contrastive_audio_embeds}
        return generated, extras

    def on_step(self, generator: TalkLipModel, step: int, log=logger):
        """Apply the staged schedule for `step` (idempotent; a resumed run lands in the right stage)."""
        start = self.audio_finetuning_start_step
        if start is None:
            return
        finetuning = step >= start
        generator.set_audio_encoder_finetuning(finetuning)
        if finetuning and not self._finetuning_announced:
            self._finetuning_announced = True
            log.info(f"step {step}: TalkLip stage 1: fine-tuning the last {self.model_config.trainable_audio_layers} "
                     f"layers of the audio encoder (from step {start})")

    def describe_schedule(self, losses) -> str:
        parts = []
        if self.audio_finetuning_start_step is not None:
            parts.append(f"audio encoder fine-tuning from step {self.audio_finetuning_start_step}")
        parts += [f"{loss.name} (weight {loss.weight:g}) from step {loss.start_step}" for loss in losses]
        return "TalkLip schedule: " + "; ".join(parts)


__all__ = [
    "TalkLipBatch",
    "collate_talklip",
    "TalkLipDataset",
    "TalkLipVisualDiscriminator",
    "TalkLipTrainingRecipe",
]
