"""talkface: audio-driven talking-face generation and lip-sync evaluation around AV-HuBERT.

The public API is imported lazily (PEP 562), so `import talkface` is cheap and does not pull in torch-heavy
modules, gradio, accelerate or a face backend until they are used.
"""

from .utils.imports import lazy_attribute

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    # pipeline and generator interface
    "LipSyncPipeline": "talkface.pipelines.lipsync.pipeline",
    "LipSyncGenerator": "talkface.pipelines.lipsync.generator",
    "load_generator": "talkface.pipelines.lipsync.generator",
    # features
    "TalkingFaceAudioFeatureExtractor": "talkface.models.wav2lip.feature_extraction_wav2lip",
    # models
    "Wav2LipConfig": "talkface.models.wav2lip",
    "Wav2LipModel": "talkface.models.wav2lip",
    "Wav2LipVisualDiscriminator": "talkface.models.wav2lip",
    "SyncNetConfig": "talkface.models.syncnet",
    "SyncNetModel": "talkface.models.syncnet",
    "SyncNetLSEConfig": "talkface.models.syncnet_lse",
    "SyncNetLSEModel": "talkface.models.syncnet_lse",
    "AVHubertConfig": "talkface.models.avhubert",
    "AVHubertModel": "talkface.models.avhubert",
    "AVHubertForLipReading": "talkface.models.avhubert",
    "AVHubertFeatureExtractor": "talkface.models.avhubert.feature_extraction_avhubert",
    "AVHubertTokenizer": "talkface.models.avhubert.tokenization_avhubert",
    "TalkFaceConfig": "talkface.models.talkface_gan",
    "TalkFaceModel": "talkface.models.talkface_gan",
    "TalkFaceDiscriminator": "talkface.models.talkface_gan",
    "TalkLipConfig": "talkface.models.talklip",
    "TalkLipModel": "talkface.models.talklip",
    "VGG19Config": "talkface.models.vgg19",
    "VGG19Model": "talkface.models.vgg19",
    "FIDInceptionConfig": "talkface.models.fid_inception",
    "FIDInceptionModel": "talkface.models.fid_inception",
    "GFPGANConfig": "talkface.models.gfpgan",
    "GFPGANModel": "talkface.models.gfpgan",
    "VGGPerceptualLoss": "talkface.models.vgg19",
    "Wav2LipVisualDiscriminatorConfig": "talkface.models.wav2lip",
    # evaluation
    "LipReader": "talkface.pipelines.lip_reading.pipeline",
    "AVSScorer": "talkface.metrics.avs",
    "evaluate": "talkface.evaluation.evaluate",
    "score_avs": "talkface.metrics.avs",
    # errors
    "TalkFaceUserError": "talkface.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = lazy_attribute(_LAZY[name], name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'talkface' has no attribute {name!r}")


def __dir__():
    return __all__
