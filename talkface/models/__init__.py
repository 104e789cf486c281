"""Every talkface network, registered with the transformers Auto classes.

Importing this package (which happens before any `talkface.models.<name>` import) imports each model folder, and
each folder's `__init__.py` registers its config with `AutoConfig` and its model with `AutoModel`. After

    import talkface.models

`AutoConfig.from_pretrained(folder_or_hub_id)` and `AutoModel.from_pretrained(folder_or_hub_id)` work for every
`model_type` below. `import talkface` alone stays light: it does not import this package until a model is used.

This module adds what the folders do not register themselves (the lip reader's seq2seq head, the feature extractors
of AV-HuBERT, SyncNet-LSE, TalkLip and our generator) and gives every model a `push_to_hub` that uploads the model
card with the weights (`talkface.hub.cards.model_push_to_hub`).
"""

from transformers import AutoFeatureExtractor, AutoModelForSpeechSeq2Seq

from .wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from ..hub.cards import install_model_card_push
from . import avhubert, fid_inception, gfpgan, s3fd, syncnet, syncnet_lse, talkface_gan, talklip, vgg19, wav2lip
from .avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor

# model_type -> the classes `AutoModel` gives for it (heads reachable through other Auto classes are listed too)
MODEL_CLASSES = {
    "wav2lip": (wav2lip.Wav2LipConfig, wav2lip.Wav2LipModel),
    "wav2lip_discriminator": (wav2lip.Wav2LipVisualDiscriminatorConfig, wav2lip.Wav2LipVisualDiscriminator),
    "syncnet": (syncnet.SyncNetConfig, syncnet.SyncNetModel),
    "syncnet_lse": (syncnet_lse.SyncNetLSEConfig, syncnet_lse.SyncNetLSEModel),
    "avhubert": (avhubert.AVHubertConfig, avhubert.AVHubertModel),
    "talkface": (talkface_gan.TalkFaceConfig, talkface_gan.TalkFaceModel),
    "talkface_discriminator": (talkface_gan.TalkFaceDiscriminatorConfig, talkface_gan.TalkFaceDiscriminator),
    "talklip": (talklip.TalkLipConfig, talklip.TalkLipModel),
    "vgg19": (vgg19.VGG19Config, vgg19.VGG19Model),
    "fid_inception": (fid_inception.FIDInceptionConfig, fid_inception.FIDInceptionModel),
    "gfpgan": (gfpgan.GFPGANConfig, gfpgan.GFPGANModel),
    "s3fd": (s3fd.S3FDConfig, s3fd.S3FDModel),
}

# --- registrations the model folders do not make themselves -------------------------------------------------------
# The AV-HuBERT lip reader shares AVHubertConfig with the encoder, so AutoModel gives the encoder for both kinds of
# folder; the encoder + decoder come from AutoModelForSpeechSeq2Seq (visual speech recognition is speech seq2seq).
AutoModelForSpeechSeq2Seq.register(avhubert.AVHubertConfig, avhubert.AVHubertForLipReading, exist_ok=True)
# AutoFeatureExtractor picks the class named in preprocessor_config.json ("feature_extractor_type") among the
# registered ones, and falls back to the class registered for the config's type when the file names none.
AutoFeatureExtractor.register(avhubert.AVHubertConfig, AVHubertFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(syncnet_lse.SyncNetLSEConfig, syncnet_lse.SyncNetLSEFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(talkface_gan.TalkFaceConfig, TalkingFaceAudioFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(talklip.TalkLipConfig, AVHubertFeatureExtractor, exist_ok=True)  # global encoder

for _config_class, _model_class in MODEL_CLASSES.values():
    install_model_card_push(_model_class)
install_model_card_push(avhubert.AVHubertForLipReading)

__all__ = ["MODEL_CLASSES"]
