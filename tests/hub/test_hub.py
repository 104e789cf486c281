"""Hub integration: Auto-class registration, safetensors round trips from folders and Hub ids, push_to_hub (on the
model and through `talkface convert --push-to-hub`) with the HfApi upload captured, and the model cards.

No test touches the network. Hub ids are served by huggingface_hub's own cache code in offline mode (a repository
snapshot laid out in a temporary HF cache), or by a stand-in for the download functions that writes the same
layout, so transformers' and talkface's real Hub code paths run. Uploads stop at `HfApi.create_repo` /
`HfApi.upload_folder` / `HfApi.create_commit`, which record what would have been sent.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
import transformers
import yaml
from huggingface_hub import HfApi
from huggingface_hub.errors import EntryNotFoundError
from huggingface_hub.hf_api import CommitInfo, RepoUrl
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForSpeechSeq2Seq

import talkface.models
from talkface.hub import cards as hub
from talkface.cli import main as talkface_main
from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
from talkface.models import avhubert, fid_inception, gfpgan, syncnet, syncnet_lse, talklip, vgg19, wav2lip
from talkface.models import talkface_gan as talkface_model
from tests.utils import REPO_ROOT

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # tiny models gain nothing from threads on a shared 2-core machine
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --- tiny models of every type --------------------------------------------------------------------------------------

TINY_AVHUBERT = dict(encoder_layers=2, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2,
                     conv_pos=4, conv_pos_groups=2, video_frontend_channels=4, resnet_channels=[4, 4, 8, 8],
                     resnet_blocks=[1, 1, 1, 1], decoder_layers=1, decoder_embed_dim=16, decoder_ffn_embed_dim=32,
                     decoder_attention_heads=2, vocab_size=24)
TINY_FACE_PATH = dict(image_size=24, hidden_size=16, face_encoder_channels=[4, 8, 8, 16],
                      face_encoder_kernel_sizes=[7, 3, 3, 3], face_encoder_strides=[1, 2, 2, 2],
                      face_encoder_residual_layers=[0, 1, 1, 0], audio_encoder_channels=[4, 8, 8, 16],
                      audio_encoder_residual_layers=[1, 0, 1, 0], decoder_channels=[16, 8, 8, 4],
                      decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4)


def tiny_model(name: str):
    """(model, Auto class that must give it back) of a tiny random model for `name` (a model_type or a head)."""
    builders = {
        "wav2lip": lambda: (wav2lip.Wav2LipModel(wav2lip.Wav2LipConfig(**TINY_FACE_PATH)), AutoModel),
        "wav2lip_discriminator": lambda: (wav2lip.Wav2LipVisualDiscriminator(wav2lip.Wav2LipVisualDiscriminatorConfig(
            image_size=24, hidden_size=16, stage_channels=[4, 8, 8, 8], stage_kernel_sizes=[7, 5, 3, 3],
            stage_strides=[1, [1, 2], 2, 2], stage_extra_layers=[0, 1, 0, 1])), AutoModel),
        "syncnet": lambda: (syncnet.SyncNetModel(syncnet.SyncNetConfig(
            image_size=48, hidden_size=16, face_encoder_channels=[4, 8, 8, 8, 16],
            face_encoder_kernel_sizes=[7, 5, 3, 3, 3], face_encoder_strides=[1, [1, 2], 2, 2, 2],
            face_encoder_paddings=[3, 1, 1, 1, 1], face_encoder_residual_layers=[0, 1, 0, 1, 0],
            audio_encoder_channels=[4, 8, 8, 8], audio_encoder_residual_layers=[0, 1, 0, 1])), AutoModel),
        "syncnet_lse": lambda: (syncnet_lse.SyncNetLSEModel(syncnet_lse.SyncNetLSEConfig(
            audio_channels=[4, 6, 8, 8, 8, 12], video_channels=[4, 6, 8, 8, 8, 12], fc_hidden_size=10,
            embedding_size=7, image_size=64)), AutoModel),
        "avhubert": lambda: (avhubert.AVHubertModel(avhubert.AVHubertConfig(**TINY_AVHUBERT)), AutoModel),
        "avhubert_lip_reading": lambda: (avhubert.AVHubertForLipReading(avhubert.AVHubertConfig(**TINY_AVHUBERT)),
                                         AutoModelForSpeechSeq2Seq),
        "talkface": lambda: (talkface_model.TalkFaceModel(talkface_model.TalkFaceConfig(
            image_size=48, encoder_channels=[4, 4, 8, 8, 8, 8], decoder_channels=[8, 8, 8, 8, 4, 4], fusion_channels=8,
            output_hidden_size=4, convs_per_block=1, audio_encoder_channels=[4, 4, 8, 8],
            audio_encoder_residual_layers=[1, 0, 1, 0], audio_hidden_size=8)), AutoModel),
        "talkface_discriminator": lambda: (talkface_model.TalkFaceDiscriminator(
            talkface_model.TalkFaceDiscriminatorConfig(image_size=48, hidden_channels=[4, 8, 8, 8, 8, 8, 8])),
            AutoModel),
        "talklip": lambda: (talklip.TalkLipModel(talklip.TalkLipConfig(
            **TINY_FACE_PATH, trainable_audio_layers=2,
            avhubert_config={k: v for k, v in TINY_AVHUBERT.items() if not k.startswith(("decoder", "vocab"))})),
            AutoModel),
        "vgg19": lambda: (vgg19.VGG19Model(vgg19.VGG19Config(block_channels=(4, 6, 8, 8, 8))), AutoModel),
        "fid_inception": lambda: (fid_inception.FIDInceptionModel(fid_inception.FIDInceptionConfig(
            channel_divisor=16, image_size=75, num_classes=12)), AutoModel),
        "gfpgan": lambda: (gfpgan.GFPGANModel(gfpgan.GFPGANConfig(
            image_size=32, num_style_feat=16, num_mlp=2, channel_multiplier=2, narrow=0.125)), AutoModel),
    }
    model, auto_class = builders[name]()
    randomize_state(model)
    return model.eval(), auto_class


MODEL_NAMES = ["wav2lip", "wav2lip_discriminator", "syncnet", "syncnet_lse", "avhubert", "avhubert_lip_reading",
               "talkface", "talkface_discriminator", "talklip", "vgg19", "fid_inception", "gfpgan"]


def randomize_state(model):
    """Give every floating tensor (weights and buffers such as BatchNorm statistics) distinct random values, so a
    round trip that drops or swaps any tensor is caught."""
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for tensor in model.state_dict().values():  # detached views sharing storage with the model
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)


def assert_same_state(expected, actual):
    expected_state, actual_state = expected.state_dict(), actual.state_dict()
    assert sorted(expected_state) == sorted(actual_state)
    for key, value in expected_state.items():
        assert actual_state[key].dtype == value.dtype, key
        assert torch.equal(actual_state[key], value), f"{key} differs after the round trip"


def test_every_model_type_is_registered_by_importing_talkface_models():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING, MODEL_MAPPING

    expected = {"wav2lip", "wav2lip_discriminator", "syncnet", "syncnet_lse", "avhubert", "talklip", "talkface",
                "talkface_discriminator", "vgg19", "fid_inception", "gfpgan", "s3fd"}
    assert set(talkface.models.MODEL_CLASSES) == expected
    for model_type, (config_class, model_class) in talkface.models.MODEL_CLASSES.items():
        assert CONFIG_MAPPING[model_type] is config_class
        assert AutoConfig.for_model(model_type).__class__ is config_class
        assert MODEL_MAPPING[config_class] is model_class
        assert hub.card_kind(model_type) in hub.MODEL_FACTS
        assert model_class.push_to_hub is hub.model_push_to_hub
    assert avhubert.AVHubertForLipReading.push_to_hub is hub.model_push_to_hub
    assert MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING[avhubert.AVHubertConfig] is avhubert.AVHubertForLipReading


def test_import_talkface_stays_light():
    code = ("import sys, talkface; "
            "heavy = [m for m in ('torch', 'transformers', 'talkface.models', 'talkface.hub.cards') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_pretrained_round_trip_through_the_auto_classes(name, tmp_path):
    model, auto_class = tiny_model(name)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not (tmp_path / "pytorch_model.bin").exists()
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is type(model.config)
    loaded_fields, saved_fields = config.to_dict(), model.config.to_dict()
    loaded_fields.pop("_name_or_path"), saved_fields.pop("_name_or_path")  # where it was loaded from
    assert loaded_fields == saved_fields
    loaded = auto_class.from_pretrained(tmp_path)
    assert type(loaded) is type(model)
    assert_same_state(model, loaded)


def test_auto_model_on_a_lip_reader_folder_gives_its_encoder(tmp_path):
    lip_reader, _ = tiny_model("avhubert_lip_reading")
    lip_reader.save_pretrained(tmp_path)
    encoder = AutoModel.from_pretrained(tmp_path)
    assert type(encoder) is avhubert.AVHubertModel
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, lip_reader.state_dict()[f"avhubert.{key}"]), key


def test_feature_extractors_resolve_through_auto_feature_extractor(tmp_path):
    from talkface.models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor
    from talkface.models.syncnet_lse import SyncNetLSEFeatureExtractor

    cases = [("wav2lip", TalkingFaceAudioFeatureExtractor(fps=30.0)), ("talkface", TalkingFaceAudioFeatureExtractor()),
             ("avhubert", AVHubertFeatureExtractor(image_mean=0.5)), ("syncnet_lse", SyncNetLSEFeatureExtractor()),
             ("talklip", AVHubertFeatureExtractor())]
    for name, extractor in cases:
        folder = tmp_path / name
        model, _ = tiny_model(name)
        model.save_pretrained(folder)
        extractor.save_pretrained(folder)
        loaded = AutoFeatureExtractor.from_pretrained(folder)
        assert type(loaded) is type(extractor), name
        assert loaded.to_dict() == extractor.to_dict(), name


# --- Hub ids ------------------------------------------------------------------------------------------------------


def put_in_hub_cache(folder, repo_id: str, cache_dir: Path):
    """Lay `folder` out as huggingface_hub caches a downloaded repository (refs/main -> snapshots/<commit>/)."""
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo_dir / "snapshots" / FAKE_COMMIT)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(FAKE_COMMIT)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty HF cache in offline mode; returns (cache_dir, requests): `requests` records which files transformers
    asked its Hub resolver (`transformers.utils.hub.cached_files`) for, per repo id; the real resolver and
    huggingface_hub's cache code then serve them."""
    cache_dir = tmp_path / "hf-cache"
    cache_dir.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    work_dir = tmp_path / "cwd"  # no local folder may be named like the repo id
    work_dir.mkdir()
    monkeypatch.chdir(work_dir)
    requests = []
    real_cached_files = transformers.utils.hub.cached_files

    def recording_cached_files(path_or_repo_id, filenames, *args, **kwargs):
        requests.extend((str(path_or_repo_id), name) for name in filenames)
        return real_cached_files(path_or_repo_id, filenames, *args, **kwargs)

    monkeypatch.setattr(transformers.utils.hub, "cached_files", recording_cached_files)
    return cache_dir, requests


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_from_pretrained_with_a_hub_id(name, tmp_path, offline_hub):
    cache_dir, requests = offline_hub
    model, auto_class = tiny_model(name)
    model.save_pretrained(tmp_path / "published")
    repo_id = f"talkface-test/tiny-{name.replace('_', '-')}"
    put_in_hub_cache(tmp_path / "published", repo_id, cache_dir)

    config = AutoConfig.from_pretrained(repo_id)
    assert type(config) is type(model.config)
    loaded = auto_class.from_pretrained(repo_id)
    assert type(loaded) is type(model)
    assert_same_state(model, loaded)
    assert not Path(repo_id).exists()
    assert (repo_id, "config.json") in requests and (repo_id, "model.safetensors") in requests


def test_unreachable_hub_id_gives_a_one_line_model_error(offline_hub):
    from talkface.errors import ModelLoadError
    from talkface.pipelines.lipsync.generator import load_generator

    with pytest.raises(ModelLoadError, match="'talkface-test/not-there' is neither a local folder nor a reachable"):
        load_generator("talkface-test/not-there")


def test_download_path_for_a_generator_folder(tmp_path, monkeypatch):
    """Online mode with the downloads stood in for: transformers' and talkface's own Hub code (load_generator reads
    config.json with hf_hub_download) fetch a converted Wav2Lip folder and its feature extractor."""
    from talkface.pipelines.lipsync.generator import load_generator

    model, _ = tiny_model("wav2lip")
    remote = {"talkface-test/wav2lip-tiny": tmp_path / "remote"}
    model.save_pretrained(remote["talkface-test/wav2lip-tiny"])
    TalkingFaceAudioFeatureExtractor(fps=30.0).save_pretrained(remote["talkface-test/wav2lip-tiny"])
    cache_dir = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.chdir(tmp_path)
    downloads = []

    def fake_hf_hub_download(repo_id, filename, *, subfolder=None, cache_dir=None, local_files_only=False, **kwargs):
        source = remote[repo_id] / (subfolder or "") / filename
        if not source.is_file():
            raise EntryNotFoundError(f"{filename} is not in {repo_id}")
        cache_root = Path(cache_dir or huggingface_hub.constants.HF_HUB_CACHE)
        repo_dir = cache_root / ("models--" + repo_id.replace("/", "--"))
        target = repo_dir / "snapshots" / FAKE_COMMIT / (subfolder or "") / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / "main").write_text(FAKE_COMMIT)
        downloads.append((repo_id, filename))
        return str(target)

    def fake_snapshot_download(repo_id, *, allow_patterns=None, cache_dir=None, **kwargs):
        for pattern in allow_patterns or []:
            if (remote[repo_id] / pattern).is_file():
                fake_hf_hub_download(repo_id, pattern, cache_dir=cache_dir)
        return str(Path(cache_dir or huggingface_hub.constants.HF_HUB_CACHE) /
                    ("models--" + repo_id.replace("/", "--")) / "snapshots" / FAKE_COMMIT)

    monkeypatch.setattr(transformers.utils.hub, "hf_hub_download", fake_hf_hub_download)
    monkeypatch.setattr(transformers.utils.hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)

    def unreachable(self, *args, **kwargs):  # transformers resolves "main" to a commit first and falls back on errors
        raise ConnectionError("no network in tests")

    monkeypatch.setattr(HfApi, "resolve_revision", unreachable)

    generator = load_generator("talkface-test/wav2lip-tiny")
    assert type(generator.model) is wav2lip.Wav2LipModel
    assert_same_state(model, generator.model)
    assert generator.feature_extractor.fps == 30.0
    assert {("talkface-test/wav2lip-tiny", "config.json"), ("talkface-test/wav2lip-tiny", "model.safetensors"),
            ("talkface-test/wav2lip-tiny", "preprocessor_config.json")} <= set(downloads)


# --- push_to_hub --------------------------------------------------------------------------------------------------


@pytest.fixture
def captured_uploads(monkeypatch):
    """Replace the HfApi calls that would reach the Hub; returns the list of recorded calls."""
    calls = []

    def fake_create_repo(self, repo_id, *, token=None, private=None, exist_ok=False, **kwargs):
        calls.append({"call": "create_repo", "repo_id": repo_id, "private": private, "exist_ok": exist_ok})
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def fake_upload_folder(self, *, repo_id, folder_path, commit_message=None, **kwargs):
        folder = Path(folder_path)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        calls.append({"call": "upload_folder", "repo_id": repo_id, "files": files, "message": commit_message,
                      **kwargs})
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{FAKE_COMMIT}",
                          commit_message=commit_message or "", commit_description="", oid=FAKE_COMMIT)

    def fake_create_commit(self, repo_id, operations, **kwargs):
        calls.append({"call": "create_commit", "repo_id": repo_id,
                      "files": {op.path_in_repo: op.path_or_fileobj for op in operations}})
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{FAKE_COMMIT}",
                          commit_message=kwargs.get("commit_message", ""), commit_description="", oid=FAKE_COMMIT)

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    monkeypatch.setattr(HfApi, "create_commit", fake_create_commit)
    return calls


def uploaded_files(calls, repo_id) -> dict:
    uploads = [c for c in calls if c["call"] in ("upload_folder", "create_commit")]
    assert len(uploads) == 1, calls
    assert uploads[0]["repo_id"] == repo_id
    return uploads[0]["files"]


def card_header(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_push_to_hub_uploads_weights_config_and_our_card(name, tmp_path, captured_uploads):
    model, auto_class = tiny_model(name)
    repo_id = f"someone/tiny-{name}"
    result = model.push_to_hub(repo_id, private=True)
    assert FAKE_COMMIT in str(result)
    assert captured_uploads[0] == {"call": "create_repo", "repo_id": repo_id, "private": True, "exist_ok": True}
    files = uploaded_files(captured_uploads, repo_id)
    assert {"README.md", "config.json", "model.safetensors"} <= set(files)

    readme = files["README.md"].decode()
    kind = hub.card_kind(model)
    header = card_header(readme)
    assert header["license"] == hub.MODEL_FACTS[kind]["license"]
    assert header["library_name"] == "talkface"
    assert f"`{type(model).__name__}`" in readme
    assert f"{hub.count_parameters(model):,}" in readme  # the tiny model's own count, not the full-size one
    assert f'from_pretrained("{repo_id}")' in readme

    # what was uploaded loads back into the same model
    for relative, content in files.items():
        (tmp_path / "downloaded" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "downloaded" / relative).write_bytes(content)
    assert_same_state(model, auto_class.from_pretrained(tmp_path / "downloaded"))


def test_model_push_to_hub_with_preprocessor_tags_and_card_info(captured_uploads):
    model, _ = tiny_model("wav2lip")
    model.push_to_hub("someone/w2l", preprocessors=[TalkingFaceAudioFeatureExtractor(fps=30.0)], tags=["dubbing"],
                      card_info={"source_checkpoint": "/home/me/secret/wav2lip_gan.pth"}, commit_message="first")
    upload = [c for c in captured_uploads if c["call"] == "upload_folder"][0]
    assert upload["message"] == "first"
    files = upload["files"]
    assert json.loads(files["preprocessor_config.json"])["fps"] == 30.0
    readme = files["README.md"].decode()
    assert "dubbing" in card_header(readme)["tags"]
    assert "`wav2lip_gan.pth`" in readme and "/home/me/secret" not in readme
    assert "80 / fps) for video frame i (2.667 at 30 fps)" in readme  # the table comes from the saved extractor


def write_tiny_wav2lip_checkpoint(tmp_path):
    model, _ = tiny_model("wav2lip")
    checkpoint = tmp_path / "wav2lip_tiny.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "global_step": 3},
               checkpoint)
    config_file = tmp_path / "tiny_config.json"
    model.config.to_json_file(config_file)
    return model, checkpoint, config_file


def test_convert_push_to_hub_uploads_the_folder_with_its_card(tmp_path, captured_uploads):
    model, checkpoint, config_file = write_tiny_wav2lip_checkpoint(tmp_path)
    out_dir = tmp_path / "converted"
    assert talkface_main(["convert", "wav2lip", "--checkpoint", str(checkpoint), "--out", str(out_dir), "--config",
                          str(config_file), "--push-to-hub", "someone/wav2lip-tiny", "--private"]) == 0
    create = [c for c in captured_uploads if c["call"] == "create_repo"]
    assert create and create[0]["repo_id"] == "someone/wav2lip-tiny" and create[0]["private"] is True
    files = uploaded_files(captured_uploads, "someone/wav2lip-tiny")
    assert set(files) == {"README.md", "config.json", "model.safetensors", "preprocessor_config.json"}
    assert files == {p.name: p.read_bytes() for p in out_dir.iterdir()}  # exactly the written folder

    readme = files["README.md"].decode()
    assert card_header(readme)["license_name"] == "wav2lip-non-commercial"
    assert "converted from | `wav2lip_tiny.pth`" in readme
    assert f"{hub.count_parameters(model):,}" in readme
    assert "preprocessor_config.json" in readme and "vshift = 15" in readme
    assert_same_state(model, AutoModel.from_pretrained(out_dir))


def test_convert_push_to_hub_of_a_lip_reader_includes_the_tokenizer(tmp_path, captured_uploads):
    from tests.models.test_convert_avhubert import golden_seq2seq_checkpoint, load_task_state, save_fairseq_style

    checkpoint = tmp_path / "tiny_vsr.pt"
    save_fairseq_style(golden_seq2seq_checkpoint(task_state=load_task_state()), checkpoint)
    assert talkface_main(["convert", "avhubert", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"),
                          "--push-to-hub", "someone/avhubert-tiny-vsr"]) == 0
    files = uploaded_files(captured_uploads, "someone/avhubert-tiny-vsr")
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.model",
            "tokenizer_config.json"} <= set(files)
    readme = files["README.md"].decode()
    assert card_header(readme)["license_name"] == "av-hubert-license"
    assert "`AVHubertForLipReading`" in readme and "`tokenizer.model`" in readme


def test_upload_folder_to_hub_refuses_a_folder_without_config(tmp_path, captured_uploads):
    with pytest.raises(FileNotFoundError, match="config.json"):
        hub.upload_folder_to_hub(tmp_path, "someone/empty")
    assert captured_uploads == []


# --- model cards --------------------------------------------------------------------------------------------------


def load_render_tool():
    spec = importlib.util.spec_from_file_location("render_model_cards", REPO_ROOT / "tools" / "render_model_cards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered_cards():
    return load_render_tool().render_all()


def test_committed_model_cards_match_the_templates(rendered_cards):
    cards_dir = REPO_ROOT / "model_cards"
    assert sorted(p.name for p in cards_dir.glob("*.md")) == sorted(rendered_cards)
    for name, text in rendered_cards.items():
        assert (cards_dir / name).read_text(encoding="utf-8") == text, (
            f"model_cards/{name} is stale: run python tools/render_model_cards.py")


def test_cards_follow_the_template(rendered_cards):
    generators = {"wav2lip.md", "talkface.md", "talklip.md"}
    for name, text in rendered_cards.items():
        kind = name[: -len(".md")]
        facts = hub.MODEL_FACTS[kind]
        header = card_header(text)
        assert header["license"] == facts["license"], name
        if facts["license"] == "other":
            assert header["license_name"], name
        assert header["library_name"] == "talkface" and "talkface" in header["tags"]
        assert header.get("datasets", []) == facts["datasets"]
        assert "${" not in text and "$$" not in text, name
        for section in ("## Model description", "## Preprocessing (exact)", "## Intended use", "## Out-of-scope use",
                        "## Bias, risks and limitations", "## Licence", "Parameter counts"):
            assert section in text, f"{name} lacks {section}"
        assert "impersonation" in text.lower() and "non-consensual" in text.lower(), name
        if name in generators:
            assert "## Generated videos are marked" in text and "talkface detect" in text, name
            assert "vshift = 15" in text and "AVS_m = CS(TE(V_gen, A), TE(V_gt, A))" in text, name


def test_cards_state_the_known_figures(rendered_cards):
    talkface_card = rendered_cards["talkface.md"]
    assert "| 0.947 | 31.27 | 1.19 | 7.96 | 0.939 | 0.879 |" in talkface_card
    assert "not reproduced here" in talkface_card
    wav2lip_card = " ".join(rendered_cards["wav2lip.md"].split())  # prose is wrapped: compare word sequences
    assert "36,298,035" in wav2lip_card  # also in docs/models.md, counted there from the released file
    assert "max abs diff ≤ 5e-7" in wav2lip_card
    assert "rows 48:96" in wav2lip_card and "**BGR**" in wav2lip_card
    assert "| STFT | n_fft 800, hop 200 (12.5 ms)" in wav2lip_card
    assert "14,113,793" in rendered_cards["wav2lip-discriminator.md"]
    assert "16,435,072" in rendered_cards["syncnet.md"]
    assert "23,850,960" in rendered_cards["fid-inception.md"]
    assert "20,024,384" in rendered_cards["vgg19.md"] and "143,667,240" in rendered_cards["vgg19.md"]
    avhubert_card = rendered_cards["avhubert.md"]
    assert "Base, lip reader" in avhubert_card and "Large, pretrained encoder" in avhubert_card
    assert "(x - 0.421) / 0.165" in avhubert_card and "26 mel filters" in avhubert_card
    assert "| MFCC | python_speech_features.mfcc: 13 coefficients" in rendered_cards["syncnet-lse.md"]
    assert card_header(rendered_cards["syncnet-lse.md"])["license"] == "mit"
    assert card_header(rendered_cards["gfpgan.md"])["license_link"].endswith("License_GFPGAN.txt")


def test_meta_parameter_count_equals_a_real_model():
    config = wav2lip.Wav2LipVisualDiscriminatorConfig()
    real = wav2lip.Wav2LipVisualDiscriminator(config)
    assert hub._count_on_meta(wav2lip.Wav2LipVisualDiscriminator, config) == hub.count_parameters(real) == 14_113_793


def test_training_card_from_train_py(tmp_path):
    """train/train.py calls write_model_card(final_dir, "talkface", model=..., source_checkpoint=..., training_steps,
    final_*) after saving the model, the extractor and training_config.yaml."""
    model, _ = tiny_model("talkface")
    model.save_pretrained(tmp_path)
    TalkingFaceAudioFeatureExtractor().save_pretrained(tmp_path)
    recipe = {"dataset": {"name": "synthetic", "num_frames": 5}, "optimizer": {"lr": 1e-4, "betas": [0.5, 0.999]},
              "training": {"batch_size": 2, "gradient_accumulation_steps": 1},
              "losses": {"l1": {"weight": 10.0}, "sync": {"weight": 0.5, "variant": "unsupervised"}}}
    (tmp_path / "training_config.yaml").write_text(yaml.safe_dump(recipe))
    path = hub.write_model_card(tmp_path, "talkface", model=model, source_checkpoint="train/train.py, 40 steps",
                                training_steps=40, final_train_l1=0.123456, final_val_lse_d=8.5)
    assert path == tmp_path / "README.md"
    card = path.read_text()
    assert "## Training figures of this checkpoint" in card
    assert "| training steps | 40 |" in card and "| train l1 | 0.123456 |" in card and "| val lse_d | 8.5 |" in card
    assert "| loss | 10 l1 + 0.5 sync (unsupervised) |" in card
    assert "| made by | `train/train.py, 40 steps` |" in card
    assert "`training_config.yaml`" in card and "README.md`" not in card
    assert f"{hub.count_parameters(model):,}" in card


def test_card_preprocessing_comes_from_the_saved_extractor(tmp_path):
    from talkface.models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor

    TalkingFaceAudioFeatureExtractor(pad_mode="constant", fmax=8000.0).save_pretrained(tmp_path / "w2l")
    card = hub.render_model_card("wav2lip", folder=tmp_path / "w2l")
    assert "**constant** padding" in card and "55-8000 Hz" in card and "this folder's" in card
    AVHubertFeatureExtractor(preemphasis=0.9).save_pretrained(tmp_path / "tl")
    TalkingFaceAudioFeatureExtractor().save_pretrained(tmp_path / "tl-local")
    talklip_card = hub.render_model_card("talklip", folder=tmp_path / "tl")
    assert "| filterbank | pre-emphasis 0.9;" in talklip_card
    assert "| video input |" not in talklip_card  # TalkLip's global encoder hears the audio only
    assert "Slaney-scale" in hub.render_model_card("talklip", folder=tmp_path / "tl-local")


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown model card kind"):
        hub.render_model_card("wav3lip")
    with pytest.raises(ValueError, match="no model card kind"):
        hub.card_kind("bert")
    assert hub.card_kind("wav2lip_discriminator") == "wav2lip-discriminator"
    assert hub.card_kind("fid_inception") == "fid-inception"


def test_render_tool_check_mode(tmp_path, capsys):
    tool = load_render_tool()
    assert tool.main(["--out", str(tmp_path)]) == 0
    assert tool.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "wav2lip.md").write_text("edited by hand\n")
    (tmp_path / "old.md").write_text("x\n")
    assert tool.main(["--check", "--out", str(tmp_path)]) == 1
    output = capsys.readouterr().out
    assert "stale:" in output and "wav2lip.md" in output and "old.md" in output
