"""talkface.hub.mixin: what the model and feature extractor classes inherit (card-writing push_to_hub, registry
names in from_pretrained, the card rows they state)."""

import pytest
import torch
from transformers import PreTrainedModel
from transformers.feature_extraction_utils import FeatureExtractionMixin

import talkface.models
from talkface.errors import ModelLoadError, ModelNotDownloadedError
from talkface.hub import cards
from talkface.hub.mixin import (
    FeatureExtractorHubMixin,
    TalkFaceHubMixin,
    card_feature_extractor,
    card_model_classes,
)
from talkface.models import AVHubertConfig, AVHubertFeatureExtractor, AVHubertForLipReading, AVHubertModel

TINY = dict(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2, conv_pos=4,
            conv_pos_groups=2, video_frontend_channels=4, resnet_channels=[4, 4, 8, 8], resnet_blocks=[1, 1, 1, 1],
            decoder_layers=1, decoder_embed_dim=16, decoder_ffn_embed_dim=32, decoder_attention_heads=2,
            vocab_size=24)


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("TALKFACE_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def no_transformers_loading(monkeypatch):
    """Records every call that would reach transformers' loader (and so the Hub)."""
    calls = []
    original = PreTrainedModel.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        calls.append(args[0] if args else kwargs.get("pretrained_model_name_or_path"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(recording))
    return calls


def test_every_model_class_inherits_the_mixin_before_transformers():
    classes = [model_class for _, model_class in talkface.models.MODEL_CLASSES.values()] + [AVHubertForLipReading]
    for model_class in classes:
        mro = model_class.__mro__
        assert TalkFaceHubMixin in mro, model_class
        assert mro.index(TalkFaceHubMixin) < mro.index(PreTrainedModel), model_class
        assert model_class.push_to_hub is TalkFaceHubMixin.push_to_hub is cards.model_push_to_hub
        assert card_model_classes(cards.card_kind(model_class.config_class.model_type)), model_class
    for name in ("AVHubertFeatureExtractor", "S3FDFeatureExtractor", "SyncNetLSEFeatureExtractor",
                 "TalkingFaceAudioFeatureExtractor"):
        mro = getattr(talkface.models, name).__mro__
        assert mro.index(FeatureExtractorHubMixin) < mro.index(FeatureExtractionMixin), name


def test_card_rows_come_from_the_model_classes():
    assert card_model_classes("avhubert") == [AVHubertModel, AVHubertForLipReading]
    labels = [label for cls in card_model_classes("avhubert") for label, _ in cls.card_variants()]
    assert labels[0] == "Base, pretrained encoder" and labels[-1] == "Large, lip reader (encoder + decoder)"
    assert card_feature_extractor("avhubert") is AVHubertFeatureExtractor
    assert card_model_classes("wav3lip") == []
    with pytest.raises(LookupError, match="import talkface.models"):
        card_feature_extractor("no-such-style")


def test_a_class_that_states_card_rows_must_have_a_card_kind():
    class BertLikeConfig(AVHubertConfig):
        model_type = "bert_like"

    with pytest.raises(ValueError, match="no model card kind for model_type 'bert_like'"):
        class BertLike(AVHubertModel):  # noqa: F841
            config_class = BertLikeConfig

            @classmethod
            def card_variants(cls):
                return [("x", BertLikeConfig())]


def test_from_pretrained_takes_a_downloaded_registry_name(models_dir, no_transformers_loading):
    torch.manual_seed(0)
    model = AVHubertModel(AVHubertConfig(**TINY)).eval()
    model.save_pretrained(models_dir / "avhubert-base")
    AVHubertFeatureExtractor(preemphasis=0.9).save_pretrained(models_dir / "avhubert-base")

    loaded = AVHubertModel.from_pretrained("avhubert-base")
    assert no_transformers_loading == [models_dir / "avhubert-base"]  # the name became its folder
    assert type(loaded) is AVHubertModel and loaded.config.encoder_embed_dim == 16
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert AVHubertFeatureExtractor.from_pretrained("avhubert-base").preemphasis == 0.9


def test_from_pretrained_of_a_name_not_downloaded_is_one_line_without_a_hub_request(models_dir,
                                                                                      no_transformers_loading):
    with pytest.raises(ModelNotDownloadedError) as raised:
        AVHubertModel.from_pretrained("avhubert-base")
    message = str(raised.value)
    assert "\n" not in message and "run: talkface download avhubert-base --accept-license" in message
    assert no_transformers_loading == []
    with pytest.raises(ModelNotDownloadedError, match="talkface download avhubert-base"):
        AVHubertFeatureExtractor.from_pretrained("avhubert-base")


def test_from_pretrained_of_a_damaged_name_folder_names_the_fix(models_dir, no_transformers_loading):
    AVHubertModel(AVHubertConfig(**TINY)).save_pretrained(models_dir / "avhubert-base")
    weights = models_dir / "avhubert-base" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="damaged.*talkface download avhubert-base --force"):
        AVHubertModel.from_pretrained("avhubert-base")
    assert no_transformers_loading == []


def test_folders_and_hub_ids_reach_transformers_as_given(tmp_path, models_dir, monkeypatch, no_transformers_loading):
    # an existing folder wins over a registry name of the same spelling, as in every other loader
    monkeypatch.chdir(tmp_path)
    AVHubertModel(AVHubertConfig(**TINY)).save_pretrained(tmp_path / "avhubert-base")
    assert type(AVHubertModel.from_pretrained("avhubert-base")) is AVHubertModel
    assert no_transformers_loading == ["avhubert-base"]
    # a Hub id is not a name: transformers gets it unchanged (and fails here, offline, in its own way)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(OSError):
        AVHubertModel.from_pretrained("nobody-has/this-avhubert-repo")
    assert no_transformers_loading[-1] == "nobody-has/this-avhubert-repo"
