"""Every talkface network, registered with the transformers Auto classes, and every public model class.

Importing this package (which happens before any `talkface.models.<name>` import) imports each model folder, and
each folder's `__init__.py` registers its config with `AutoConfig` and its model with `AutoModel`. After

    from talkface.models import AVHubertModel

`AutoConfig.from_pretrained(folder_or_hub_id)` and `AutoModel.from_pretrained(folder_or_hub_id)` work for every
`model_type` below, and every config, model, head, feature extractor and tokenizer class can be imported from here.
`import talkface` alone stays light: it does not import this package until a model is used.

This module adds what the folders do not register themselves (the lip reader's seq2seq head, the feature extractors
of AV-HuBERT, SyncNet-LSE, TalkLip and our generator). `push_to_hub` (weights + our model card) and registry names
in `from_pretrained` come with the classes themselves: every model base class inherits
`talkface.hub.mixin.TalkFaceHubMixin`.
"""

from transformers import AutoFeatureExtractor, AutoModelForSpeechSeq2Seq

from . import avhubert, fid_inception, gfpgan, s3fd, syncnet, syncnet_lse, talkface_gan, talklip, vgg19, wav2lip
from .avhubert import (
    AVHubertConfig,
    AVHubertFeatureExtractor,
    AVHubertForLipReading,
    AVHubertGenerationOutput,
    AVHubertLipReadingOutput,
    AVHubertModel,
    AVHubertModelOutput,
    AVHubertPreTrainedModel,
    AVHubertTokenizer,
)
from .fid_inception import FIDInceptionConfig, FIDInceptionModel, FIDInceptionOutput, FIDInceptionPreTrainedModel
from .gfpgan import GFPGANConfig, GFPGANModel, GFPGANOutput, GFPGANPreTrainedModel
from .s3fd import S3FDConfig, S3FDDetector, S3FDFeatureExtractor, S3FDModel, S3FDOutput, S3FDPreTrainedModel
from .syncnet import SyncNetConfig, SyncNetModel, SyncNetOutput, SyncNetPreTrainedModel
from .syncnet_lse import (
    SyncNetLSEConfig,
    SyncNetLSEFeatureExtractor,
    SyncNetLSEModel,
    SyncNetLSEOutput,
    SyncNetLSEPreTrainedModel,
)
from .talkface_gan import (
    TalkFaceConfig,
    TalkFaceDiscriminator,
    TalkFaceDiscriminatorConfig,
    TalkFaceDiscriminatorOutput,
    TalkFaceModel,
    TalkFaceModelOutput,
    TalkFacePreTrainedModel,
)
from .talkface_gan.modeling_talkface_gan import TalkFaceDiscriminatorPreTrainedModel
from .talklip import TalkLipConfig, TalkLipContrastiveHead, TalkLipModel, TalkLipModelOutput, TalkLipPreTrainedModel
from .vgg19 import VGG19Config, VGG19Model, VGG19ModelOutput, VGG19PreTrainedModel, VGGPerceptualLoss
from .wav2lip import (
    TalkingFaceAudioFeatureExtractor,
    Wav2LipConfig,
    Wav2LipDiscriminatorOutput,
    Wav2LipModel,
    Wav2LipModelOutput,
    Wav2LipPreTrainedModel,
    Wav2LipVisualDiscriminator,
    Wav2LipVisualDiscriminatorConfig,
)
from .wav2lip.modeling_wav2lip import Wav2LipVisualDiscriminatorPreTrainedModel

# model_type -> the classes `AutoModel` gives for it (heads reachable through other Auto classes are listed too)
MODEL_CLASSES = {
    "wav2lip": (Wav2LipConfig, Wav2LipModel),
    "wav2lip_discriminator": (Wav2LipVisualDiscriminatorConfig, Wav2LipVisualDiscriminator),
    "syncnet": (SyncNetConfig, SyncNetModel),
    "syncnet_lse": (SyncNetLSEConfig, SyncNetLSEModel),
    "avhubert": (AVHubertConfig, AVHubertModel),
    "talkface": (TalkFaceConfig, TalkFaceModel),
    "talkface_discriminator": (TalkFaceDiscriminatorConfig, TalkFaceDiscriminator),
    "talklip": (TalkLipConfig, TalkLipModel),
    "vgg19": (VGG19Config, VGG19Model),
    "fid_inception": (FIDInceptionConfig, FIDInceptionModel),
    "gfpgan": (GFPGANConfig, GFPGANModel),
    "s3fd": (S3FDConfig, S3FDModel),
}

# --- registrations the model folders do not make themselves -------------------------------------------------------
# The AV-HuBERT lip reader shares AVHubertConfig with the encoder, so AutoModel gives the encoder for both kinds of
# folder; the encoder + decoder come from AutoModelForSpeechSeq2Seq (visual speech recognition is speech seq2seq).
AutoModelForSpeechSeq2Seq.register(AVHubertConfig, AVHubertForLipReading, exist_ok=True)
# AutoFeatureExtractor picks the class named in preprocessor_config.json ("feature_extractor_type") among the
# registered ones, and falls back to the class registered for the config's type when the file names none.
AutoFeatureExtractor.register(AVHubertConfig, AVHubertFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(SyncNetLSEConfig, SyncNetLSEFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(TalkFaceConfig, TalkingFaceAudioFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(TalkLipConfig, AVHubertFeatureExtractor, exist_ok=True)  # global encoder

__all__ = [
    "MODEL_CLASSES",
    # configurations
    "AVHubertConfig", "FIDInceptionConfig", "GFPGANConfig", "S3FDConfig", "SyncNetConfig", "SyncNetLSEConfig",
    "TalkFaceConfig", "TalkFaceDiscriminatorConfig", "TalkLipConfig", "VGG19Config", "Wav2LipConfig",
    "Wav2LipVisualDiscriminatorConfig",
    # models and heads
    "AVHubertForLipReading", "AVHubertModel", "FIDInceptionModel", "GFPGANModel", "S3FDDetector", "S3FDModel",
    "SyncNetLSEModel", "SyncNetModel", "TalkFaceDiscriminator", "TalkFaceModel", "TalkLipContrastiveHead",
    "TalkLipModel", "VGG19Model", "VGGPerceptualLoss", "Wav2LipModel", "Wav2LipVisualDiscriminator",
    # base classes
    "AVHubertPreTrainedModel", "FIDInceptionPreTrainedModel", "GFPGANPreTrainedModel", "S3FDPreTrainedModel",
    "SyncNetLSEPreTrainedModel", "SyncNetPreTrainedModel", "TalkFaceDiscriminatorPreTrainedModel",
    "TalkFacePreTrainedModel", "TalkLipPreTrainedModel", "VGG19PreTrainedModel", "Wav2LipPreTrainedModel",
    "Wav2LipVisualDiscriminatorPreTrainedModel",
    # feature extractors and tokenizer
    "AVHubertFeatureExtractor", "AVHubertTokenizer", "S3FDFeatureExtractor", "SyncNetLSEFeatureExtractor",
    "TalkingFaceAudioFeatureExtractor",
    # outputs
    "AVHubertGenerationOutput", "AVHubertLipReadingOutput", "AVHubertModelOutput", "FIDInceptionOutput",
    "GFPGANOutput", "S3FDOutput", "SyncNetLSEOutput", "SyncNetOutput", "TalkFaceDiscriminatorOutput",
    "TalkFaceModelOutput", "TalkLipModelOutput", "VGG19ModelOutput", "Wav2LipDiscriminatorOutput",
    "Wav2LipModelOutput",
]
