"""Our generator's training recipe (`model.type: talkface`, the default): `TalkFaceModel` against
`TalkFaceDiscriminator`, GAN + L1 + VGG-19 perceptual + AV-HuBERT lip-sync loss (train/configs/talkface_avhubert.yaml).

The `model` section holds `syncnet` (the Wav2Lip lip-sync expert whose audio encoder the generator uses, frozen) and
any `TalkFaceConfig` field; the `discriminator` section holds `TalkFaceDiscriminatorConfig` fields (its `image_size`
defaults to the generator's).
"""

import logging

from ...errors import TalkFaceUserError
from ...models.talkface_gan import (
    TalkFaceConfig,
    TalkFaceDiscriminator,
    TalkFaceDiscriminatorConfig,
    TalkFaceModel,
    audio_encoder_kwargs,
)
from ...models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from .base import TrainingRecipe, register_recipe

logger = logging.getLogger(__name__)

# keys of the `model` section that configure training, not the architecture
RECIPE_KEYS = ("type", "syncnet")


@register_recipe
class TalkFaceTrainingRecipe(TrainingRecipe):
    """`TalkFaceModel`: k-frame windows in, k generated frames out, frozen expert audio encoder."""

    name = "talkface"
    card_kind = "talkface"
    generator_class = TalkFaceModel

    def __init__(self, config: dict):
        super().__init__(config)
        model = dict(config.get("model") or {})
        self.syncnet = model.get("syncnet")
        self.model_fields = {key: value for key, value in model.items() if key not in RECIPE_KEYS}
        try:  # checked here, before any data or network is loaded; the expert's audio fields join in build_generator
            self.model_config = TalkFaceConfig(**self.model_fields)
        except (TypeError, ValueError) as err:
            raise TalkFaceUserError(f"invalid talkface model section: {err}") from err

    @property
    def num_frames(self) -> int:
        return self.model_config.num_frames

    @property
    def img_size(self) -> int:
        return self.model_config.image_size

    def build_generator(self, log=logger) -> TalkFaceModel:
        if self.syncnet:
            from ...models.syncnet import SyncNetConfig

            # the frozen audio encoder is the expert's: its architecture comes from the expert's config
            audio_fields = audio_encoder_kwargs(SyncNetConfig.from_pretrained(self.syncnet))
            self.model_config = TalkFaceConfig(**{**self.model_fields, **audio_fields})
        generator = TalkFaceModel(self.model_config)
        if self.syncnet:
            generator.load_audio_encoder_from(self.syncnet)
            log.info(f"audio encoder loaded from the lip-sync expert {self.syncnet}")
        else:
            log.warning("model.syncnet is not set: the frozen audio encoder keeps RANDOM weights (fine for smoke "
                        "tests only); convert the Wav2Lip expert with `talkface convert syncnet` and set "
                        "model.syncnet")
        return generator

    def build_discriminator(self) -> TalkFaceDiscriminator | None:
        section = self.config.get("discriminator")
        if section is None:
            return None
        fields = {"image_size": self.img_size, **{k: v for k, v in section.items() if k != "type"}}
        return TalkFaceDiscriminator(TalkFaceDiscriminatorConfig(**fields))

    def generator_forward(self, generator, batch, step):
        output = generator(batch.reference_frames, batch.masked_frames, batch.mel_chunks)
        return output.generated_frames, {"generator_output": output}

    def inference_generator(self, model: TalkFaceModel):
        from ...pipelines.lipsync.adapters.talkface_gan import TalkFaceGenerator

        return TalkFaceGenerator(model, self.feature_extractor())

    def feature_extractor(self) -> TalkingFaceAudioFeatureExtractor:
        # the mel parameters of the Wav2Lip expert whose audio encoder the generator uses
        return TalkingFaceAudioFeatureExtractor()


__all__ = ["TalkFaceTrainingRecipe"]
