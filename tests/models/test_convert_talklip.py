"""TalkLip converter on synthetic checkpoints in the released layout.

The synthetic file is built from the golden key lists with the golden weight formula: the Wav2Lip generator's face
keys, the tiny AV-HuBERT of the AV-HuBERT golden under `audio_encoder.w2v_model.` (its values computed from the bare
key names, so the converted encoder must reproduce the golden's audio-only features), `audio_map.*` and
`sync_net.Linearaudio.*`, inside `{"state_dict", "optimizer", "global_step", "global_epoch"}`.
"""

import json

import pytest
import torch

from talkface.cli import main as talkface_main
from talkface.errors import ModelLoadError
from talkface.models.avhubert.convert_avhubert_fairseq_checkpoint import fold_weight_norm
from talkface.models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor
from talkface.models.talklip import TalkLipConfig, TalkLipModel
from talkface.models.talklip.convert_talklip_original_checkpoint import (
    config_from_state_dict,
    convert_talklip_checkpoint,
    convert_talklip_state_dict,
)
from tests.utils import formula_state_dict, formula_tensor, golden_file, load_golden

AVHUBERT_ATOL = 1e-4  # golden/README.md: AV-HuBERT encoder outputs within 1e-4
TINY_WIDTH = 64  # the AV-HuBERT golden's encoder width


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def original_state_dict():
    face = {k: v for k, v in formula_state_dict("wav2lip_generator_keys.json").items()
            if not k.startswith("audio_encoder.")}
    # TalkLip keeps the whole AV-HuBERT (mask_emb, label_embs_concat, video front end) but not final_proj
    avhubert = {f"audio_encoder.w2v_model.{k}": v for k, v in formula_state_dict("avhubert_pretrain_keys.json").items()
                if not k.startswith("final_proj.")}
    extra = {
        "audio_map.weight": formula_tensor("audio_map.weight", (512, TINY_WIDTH)),
        "audio_map.bias": formula_tensor("audio_map.bias", (512,)),
        "sync_net.Linearaudio.weight": formula_tensor("sync_net.Linearaudio.weight", (TINY_WIDTH, TINY_WIDTH)),
        "sync_net.Linearaudio.bias": formula_tensor("sync_net.Linearaudio.bias", (TINY_WIDTH,)),
    }
    return {**face, **avhubert, **extra}


def released_layout(state_dict, module_prefix=False):
    if module_prefix:
        state_dict = {f"module.{key}": value for key, value in state_dict.items()}
    return {"state_dict": state_dict, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
            "global_step": 90000, "global_epoch": 12}


@pytest.fixture(scope="module")
def converted_folder(tmp_path_factory, original_state_dict):
    """`talkface convert talklip` on the released layout (with DataParallel's prefix).

    Sizes come from shapes; the golden's attention heads (4, not inferable from shapes) come with --config."""
    tmp_path = tmp_path_factory.mktemp("talklip")
    checkpoint = tmp_path / "TalkLip_g.pth"
    torch.save(released_layout(original_state_dict, module_prefix=True), checkpoint)
    values = config_from_state_dict(original_state_dict).to_dict()
    values["avhubert_config"]["encoder_attention_heads"] = json.loads(
        golden_file("avhubert_cfg.json").read_text())["model"]["encoder_attention_heads"]
    config_file = tmp_path / "talklip_config.json"
    config_file.write_text(json.dumps(values))
    out = tmp_path / "talklip"
    assert talkface_main(["convert", "talklip", "--checkpoint", str(checkpoint), "--out", str(out),
                          "--config", str(config_file)]) == 0
    return out


def test_config_is_read_from_shapes(original_state_dict):
    config = config_from_state_dict(original_state_dict)
    assert config.audio_encoder_type == "global" and config.hidden_size == 512
    avhubert = config.avhubert_config
    assert (avhubert.encoder_layers, avhubert.encoder_embed_dim, avhubert.encoder_ffn_embed_dim) == (2, 64, 128)
    assert (avhubert.conv_pos, avhubert.conv_pos_groups, avhubert.layer_norm_first) == (16, 4, True)
    assert avhubert.use_mask_embedding and avhubert.num_label_embeddings == 104 and not avhubert.use_final_proj
    assert config.use_contrastive_head and config.contrastive_projection_dim == TINY_WIDTH
    assert config.trainable_audio_layers == 2  # min(3, layers)


def test_cli_conversion_strict_load_and_tensors_in_place(converted_folder, original_state_dict):
    out = converted_folder
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= {
        p.name for p in out.iterdir()}
    model = TalkLipModel.from_pretrained(out)
    state = model.state_dict()
    assert len(state) == len(original_state_dict) - 1  # weight_g + weight_v folded into one kernel
    # face keys unchanged
    for key in ("face_encoder_blocks.0.0.conv_block.0.weight", "face_decoder_blocks.6.2.conv_block.1.running_var",
                "output_block.1.bias"):
        torch.testing.assert_close(state[key], original_state_dict[key], rtol=0, atol=0)
    # AV-HuBERT keys under audio_encoder., with the positional convolution folded
    for key in ("encoder.layers.1.fc1.weight", "feature_extractor_audio.proj.bias", "mask_emb", "label_embs_concat",
                "feature_extractor_video.resnet.trunk.layer4.1.relu2.weight", "layer_norm.weight"):
        original = original_state_dict[f"audio_encoder.w2v_model.{key}"]
        torch.testing.assert_close(state[f"audio_encoder.{key}"], original, rtol=0, atol=0)
    folded = fold_weight_norm(original_state_dict["audio_encoder.w2v_model.encoder.pos_conv.0.weight_g"],
                              original_state_dict["audio_encoder.w2v_model.encoder.pos_conv.0.weight_v"])
    torch.testing.assert_close(state["audio_encoder.encoder.pos_conv.conv.weight"], folded, rtol=0, atol=0)
    torch.testing.assert_close(state["audio_encoder.encoder.pos_conv.conv.bias"],
                               original_state_dict["audio_encoder.w2v_model.encoder.pos_conv.0.bias"], rtol=0, atol=0)
    torch.testing.assert_close(state["audio_map.weight"], original_state_dict["audio_map.weight"], rtol=0, atol=0)
    torch.testing.assert_close(state["contrastive_head.audio_projection.weight"],
                               original_state_dict["sync_net.Linearaudio.weight"], rtol=0, atol=0)
    assert isinstance(AVHubertFeatureExtractor.from_pretrained(out), AVHubertFeatureExtractor)
    # the frozen encoder survives the round trip through the folder
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("audio_encoder.")}
    assert trainable and all(n.startswith("audio_encoder.encoder.layers.") for n in trainable)


def test_converted_global_encoder_reproduces_the_avhubert_golden(converted_folder):
    """The converted audio encoder's output is AV-HuBERT's audio-only final layer (golden `enc_a`), and the face path
    runs on it: the full global forward works on converted weights."""
    golden = load_golden("avhubert.npz")
    model = TalkLipModel.from_pretrained(converted_folder).eval()
    audio = torch.from_numpy(golden["audio_in"])[None]  # (1, 104, 50)
    faces = torch.from_numpy(load_golden("wav2lip.npz")["gen_face_in"])  # (4, 6, 96, 96)
    with torch.no_grad():
        output = model(faces, audio_features=audio, audio_frame_indices=torch.tensor([0, 1, 2, 49]))
    torch.testing.assert_close(output.audio_hidden_states[0], torch.from_numpy(golden["enc_a"]), rtol=0,
                               atol=AVHUBERT_ATOL)
    expected_embeds = model.audio_map(torch.from_numpy(golden["enc_a"])[[0, 1, 2, 49]])
    torch.testing.assert_close(output.audio_embeds.flatten(1), expected_embeds, rtol=0, atol=1e-4)
    assert output.generated_faces.shape == (4, 3, 96, 96) and torch.isfinite(output.generated_faces).all()


def test_drop_pretraining_modules(original_state_dict):
    [model, _] = convert_talklip_checkpoint(released_layout(original_state_dict), keep_pretraining_modules=False)
    keys = set(model.state_dict())
    assert "audio_encoder.mask_emb" not in keys and "audio_encoder.label_embs_concat" not in keys
    assert not model.config.avhubert_config.use_mask_embedding


def test_already_converted_input_is_returned_unchanged(original_state_dict):
    config = config_from_state_dict(original_state_dict)
    converted = convert_talklip_state_dict(released_layout(original_state_dict), config)
    again = convert_talklip_state_dict(converted, config)
    assert again.keys() == converted.keys()
    assert all(again[k] is converted[k] for k in converted)


def test_local_encoder_checkpoint_converts(original_state_dict):
    """A TalkLip trained with the local (Wav2Lip) encoder: Wav2Lip keys plus the sync head."""
    wav2lip = formula_state_dict("wav2lip_generator_keys.json")
    state = {**wav2lip, "sync_net.Linearaudio.weight": torch.randn(768, 512), "sync_net.Linearaudio.bias":
             torch.randn(768)}
    [model, extractor] = convert_talklip_checkpoint(released_layout(state))
    assert model.config.audio_encoder_type == "local" and model.config.contrastive_projection_dim == 768
    torch.testing.assert_close(model.state_dict()["audio_encoder.12.conv_block.0.weight"],
                               wav2lip["audio_encoder.12.conv_block.0.weight"], rtol=0, atol=0)
    assert type(extractor).__name__ == "TalkingFaceAudioFeatureExtractor"


def test_wrong_files_raise_actionable_errors(tmp_path, original_state_dict):
    discriminator_like = {"binary_pred.0.weight": torch.zeros(1, 512, 1, 1)}
    with pytest.raises(ModelLoadError, match="not a TalkLip"):
        convert_talklip_checkpoint(released_layout(discriminator_like))
    missing = {k: v for k, v in original_state_dict.items() if k != "audio_map.bias"}
    with pytest.raises(ModelLoadError, match="missing keys"):
        convert_talklip_checkpoint(released_layout(missing))
    small = TalkLipConfig(image_size=96, hidden_size=256, avhubert_config=config_from_state_dict(
        original_state_dict).avhubert_config, contrastive_projection_dim=TINY_WIDTH, trainable_audio_layers=2)
    with pytest.raises(ModelLoadError, match="shapes do not match"):
        convert_talklip_checkpoint(released_layout(original_state_dict), config=small)
    assert talkface_main(["convert", "talklip", "--checkpoint", str(tmp_path / "absent.pth"),
                          "--out", str(tmp_path / "out")]) == 2
