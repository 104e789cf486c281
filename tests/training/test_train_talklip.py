"""TalkLip training: the recipe (datasets with transcripts, generator step, staged schedule, discriminator) in a few
CPU steps on synthetic data with tiny networks, train/train.py with train/configs/talklip.yaml, and validation
video metrics of a TalkLip run through the pipeline's TalkLip adapter."""

import copy
import importlib.util
import logging

import pytest
import torch
import yaml

from talkface.training.data import SyntheticTalkFaceDataset
from talkface.training.losses.core import GeneratorLossInputs, build_generator_losses, discriminator_loss, gan_loss
from talkface.models.talklip import TalkLipModel
from talkface.training.recipes.talklip import (
    TalkLipBatch,
    TalkLipDataset,
    TalkLipTrainingRecipe,
    TalkLipVisualDiscriminator,
    collate_talklip,
)
from tests.models.test_modeling_talklip import tiny_avhubert_config
from tests.utils import REPO_ROOT

RECIPE = REPO_ROOT / "train" / "configs" / "talklip.yaml"
TRAIN_SCRIPT = REPO_ROOT / "train" / "train.py"
TINY_LIP_READER = dict(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2,
                       conv_pos=4, conv_pos_groups=2, video_frontend_channels=4, resnet_channels=[4, 4, 8, 8],
                       resnet_blocks=[1, 1, 1, 1], decoder_layers=1, decoder_embed_dim=16, decoder_ffn_embed_dim=32,
                       decoder_attention_heads=2, vocab_size=20, dropout=0.0, attention_dropout=0.0,
                       decoder_dropout=0.0)
TINY_MODEL = dict(
    img_size=24, hidden_size=16, face_encoder_channels=[4, 8, 8, 16], face_encoder_kernel_sizes=[7, 3, 3, 3],
    face_encoder_strides=[1, 2, 2, 2], face_encoder_residual_layers=[0, 1, 1, 0], decoder_channels=[16, 8, 8, 4],
    decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4, avhubert_config=tiny_avhubert_config(),
    trainable_audio_layers=2, contrastive_projection_dim=16,
)
TINY_DISCRIMINATOR = dict(hidden_size=16, stage_channels=[4, 8, 8, 8], stage_kernel_sizes=[7, 5, 3, 3],
                          stage_strides=[1, [1, 2], 2, 2], stage_extra_layers=[0, 1, 0, 1])


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def smoke_config(tmp_path=None) -> dict:
    """train/configs/talklip.yaml with tiny random networks, synthetic data and stages at steps 1 and 2."""
    config = yaml.safe_load(RECIPE.read_text())
    config["output_dir"] = str(tmp_path / "run") if tmp_path else "runs/talklip-smoke"
    config["dataset"] = {"name": "synthetic", "synthetic_length": 8, "synthetic_val_length": 2,
                         "synthetic_context_frames": 12, "num_workers": 0, "num_frames": 5}
    config["model"].update(TINY_MODEL, audio_finetuning_start_step=1)
    config["discriminator"].update(TINY_DISCRIMINATOR)
    config["losses"]["lip_reading"].update(start_step=2, lip_reader={"config": TINY_LIP_READER})
    config["losses"]["contrastive"].update(start_step=2)
    config["training"].update(batch_size=2, max_steps=4, checkpointing_steps=2, logging_steps=1,
                              image_logging_steps=0, report_to="none")
    config["validation"] = {"steps": 0, "batches": 1}
    return config


def test_recipe_file_holds_the_talklip_weights_and_schedule():
    config = yaml.safe_load(RECIPE.read_text())
    losses = config["losses"]
    lip_w, perp_w, cont_w = losses["lip_reading"]["weight"], losses["gan"]["weight"], losses["contrastive"]["weight"]
    assert (lip_w, perp_w, cont_w) == (1e-5, 0.07, 1e-3)
    assert losses["l1"]["weight"] == pytest.approx(1 - lip_w - perp_w)
    assert config["optimizer"]["lr"] == 1e-4 and config["optimizer"]["betas"] == [0.5, 0.999]
    assert config["training"]["batch_size"] == 8
    assert config["model"]["audio_finetuning_start_step"] < losses["lip_reading"]["start_step"] == \
        losses["contrastive"]["start_step"]
    assert losses["lip_reading"]["label_smoothing"] == 0.1 and losses["contrastive"]["temperature"] == 0.07
    assert config["dataset"]["context_frames"] is None  # whole utterances for the lip-reading loss


def test_synthetic_transcripts_and_collation():
    dataset = TalkLipDataset(SyntheticTalkFaceDataset(length=4, img_size=24, context_frames=12), vocab_size=20)
    items = [dataset[i] for i in range(3)]
    assert all(item["target_tokens"][-1] == 2 and min(item["target_tokens"][:-1]) >= 4 for item in items)
    assert dataset[1]["target_tokens"] == items[1]["target_tokens"]  # deterministic
    batch = collate_talklip(items)
    assert isinstance(batch, TalkLipBatch) and batch.target_tokens.shape[0] == 3
    longest = max(len(item["target_tokens"]) for item in items)
    assert batch.target_tokens.shape[1] == longest and (batch.target_tokens == 1).sum() == \
        3 * longest - sum(len(item["target_tokens"]) for item in items)
    moved = batch.to(dtype=torch.float64)
    assert isinstance(moved, TalkLipBatch) and moved.target_tokens.dtype == torch.long
    assert moved.target_frames.dtype == torch.float64


def write_layout(root, texts: dict, num_frames=10, size=96):
    """A hand-made preprocessed set (train/preprocess.py's layout) of random faces with the given transcripts."""
    import numpy as np

    from talkface.training.data.layout import VideoRecord, save_faces, video_folder, write_manifest, write_wav

    records = []
    for index, (video_id, text) in enumerate(texts.items()):
        folder = video_folder(root, video_id)
        folder.mkdir(parents=True)
        rng = np.random.default_rng(index)
        save_faces(folder, rng.integers(0, 256, (num_frames, size, size, 3), dtype=np.uint8))
        affine = np.array([[0.5, 0.0, 24.0], [0.0, 0.5, 48.0]], dtype=np.float32)
        np.save(folder / "mouth_affines.npy", np.repeat(affine[None], num_frames, axis=0))
        write_wav(folder / "audio.wav", 0.1 * rng.standard_normal(num_frames * 640))
        records.append(VideoRecord(id=video_id, source=f"{video_id}.mp4", status="ok", num_frames=num_frames,
                                   fps=25.0, face_size=size, duration=num_frames / 25,
                                   extra={} if text is None else {"text": text}))
    write_manifest(root, records)
    return root


def test_transcripts_of_a_preprocessed_set(tmp_path, caplog):
    from talkface.training.data import TalkFaceDataset
    from talkface.errors import TalkFaceUserError
    from talkface.models.avhubert.tokenization_avhubert import AVHubertTokenizer
    from tests.utils import shared_file

    tokenizer = AVHubertTokenizer.from_model_file(shared_file("reference", "avhubert_spm_unigram1000.model"))
    root = write_layout(tmp_path / "data", {"a/00001": "HELLO WORLD THIS IS A TEST", "a/00002": None,
                                            "b/00001": "holidays"})
    dataset = TalkFaceDataset(root, split="all", img_size=96, context=True, context_frames=None)
    with caplog.at_level(logging.WARNING):
        wrapped = TalkLipDataset(dataset, tokenizer=tokenizer)
    assert wrapped.num_without_text == 1 and "1 of 3 videos have no transcript" in caplog.text
    assert len(wrapped) == 2
    by_video = {item["video_id"]: item for item in (wrapped[0], wrapped[1])}
    # TECH.md 1.7: "hello world this is a test" -> these ids (lower-cased, SentencePiece), then eos
    assert by_video["a/00001"]["target_tokens"] == [64, 72, 54, 163, 33, 23, 8, 724, 2]
    assert by_video["b/00001"]["target_tokens"][-1] == 2
    batch = collate_talklip([wrapped[0], wrapped[1]])
    assert batch.context_frames.shape[:2] == (2, 10) and batch.target_tokens.shape == (2, 9)

    windowed = TalkFaceDataset(root, split="all", img_size=96, context=True, context_frames=6)
    with pytest.raises(TalkFaceUserError, match="context_frames: null"):
        TalkLipDataset(windowed, tokenizer=tokenizer)
    no_text = write_layout(tmp_path / "no_text", {"c/00001": None})
    with pytest.raises(TalkFaceUserError, match="no video has a transcript"):
        TalkLipDataset(TalkFaceDataset(no_text, split="all", context=True), tokenizer=tokenizer)


def test_discriminator_takes_rgb_windows():
    recipe = TalkLipTrainingRecipe(smoke_config())
    discriminator = recipe.build_discriminator().eval()
    assert isinstance(discriminator, TalkLipVisualDiscriminator)
    windows = torch.rand(2, 5, 3, 24, 24)
    bgr = windows.flip(2).transpose(1, 2)  # Wav2Lip's own layout
    with torch.no_grad():
        ours = discriminator(windows).logits
        theirs = super(TalkLipVisualDiscriminator, discriminator).forward(bgr).logits
    assert ours.shape == (2, 5)  # one row of per-frame scores per window
    torch.testing.assert_close(ours.reshape(10, 1), theirs, rtol=0, atol=0)
    labelled = discriminator(windows, labels=torch.tensor([1.0, 0.0]))
    targets = torch.tensor([[1.0] * 5, [0.0] * 5])
    torch.testing.assert_close(labelled.loss, torch.nn.functional.binary_cross_entropy_with_logits(ours, targets))


def test_staged_training_steps_with_the_recipe(caplog):
    """The loop of train/train.py, step by step, with the recipe: stage 1 at step 1, stage 2 at step 2."""
    torch.manual_seed(0)
    config = smoke_config()
    recipe = TalkLipTrainingRecipe(config)
    generator = recipe.build_generator()
    discriminator = recipe.build_discriminator()
    # contrastive listed before lip_reading: the recipe links them, the lip reader still runs once per step
    loss_config = copy.deepcopy(config["losses"])
    loss_config = {name: loss_config[name] for name in ("l1", "gan", "contrastive", "lip_reading")}
    losses = recipe.prepare_losses(build_generator_losses(loss_config))
    assert [loss.name for loss in losses] == ["l1", "gan", "contrastive", "lip_reading"]
    lip_reader = losses[3].term.loss.lip_reader
    calls = []
    lip_reader.register_forward_hook(lambda *args: calls.append(1))
    assert recipe.needs_context
    dataset = SyntheticTalkFaceDataset(length=4, img_size=24, context=True, context_frames=12, seed=0)
    dataset, _ = recipe.wrap_datasets(dataset, None, losses)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=recipe.collate_fn)
    optimizer = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=1e-3, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    first_trainable_layer = generator.audio_encoder.encoder.layers[1].fc1.weight
    frozen_layer = generator.audio_encoder.encoder.layers[0].fc1.weight
    before = {n: p.detach().clone() for n, p in generator.named_parameters()}

    batches = [batch for batch in loader] * 2
    seen = []
    with caplog.at_level(logging.INFO):
        for step, batch in enumerate(batches[:3]):
            recipe.on_step(generator, step)
            generated, extras = recipe.generator_forward(generator, batch, step)
            assert generated.shape == (2, 5, 3, 24, 24) and extras["contrastive_audio_embeds"].shape == (10, 16)
            inputs = GeneratorLossInputs(generated_frames=generated, batch=batch, step=step, extras=extras,
                                         fake_logits=lambda frames: discriminator(frames).logits)
            total = sum(loss.weight * loss.term(inputs) for loss in losses if loss.active(step))
            seen.append([loss.name for loss in losses if loss.active(step)])
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            # stage 1 (step >= 1): the audio encoder's last layers learn; its other layers never do
            assert (first_trainable_layer.grad is not None) == (step >= 1)
            assert frozen_layer.grad is None and not frozen_layer.requires_grad
            # stage 2 (step >= 2): the contrastive head gets gradients from the contrastive loss
            assert (generator.contrastive_head.audio_projection.weight.grad is not None) == (step >= 2)
            optimizer.step()
            d_loss = discriminator_loss(*discriminator(torch.cat([batch.target_frames, generated.detach()]))
                                        .logits.split(2))
            d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            d_optimizer.step()
            assert torch.isfinite(total) and torch.isfinite(d_loss)
    assert seen == [["l1", "gan"], ["l1", "gan"], ["l1", "gan", "contrastive", "lip_reading"]]
    assert len(calls) == 1  # one lip-reader pass in the one stage-2 step
    assert "stage 1" in caplog.text
    changed = {n for n, p in generator.named_parameters() if not torch.equal(p, before[n])}
    assert "audio_map.weight" in changed and "face_encoder_blocks.0.0.conv_block.0.weight" in changed
    assert "audio_encoder.encoder.layers.1.fc1.weight" in changed
    assert not any(n.startswith("audio_encoder.encoder.layers.0.") for n in changed)
    assert gan_loss(torch.zeros(1), True).item() == pytest.approx(0.6931, abs=1e-4)


def test_audio_encoder_from_a_lip_reader_and_init_from_a_talklip_folder(tmp_path):
    from talkface.models.avhubert import AVHubertConfig, AVHubertForLipReading

    torch.manual_seed(0)
    lip_reader = AVHubertForLipReading(AVHubertConfig(**{**TINY_LIP_READER, "encoder_layers": 3}))
    lip_reader.save_pretrained(tmp_path / "lip_reader")
    config = smoke_config()
    del config["model"]["avhubert_config"]  # taken from the lip reader's encoder
    config["model"]["audio_encoder_from"] = str(tmp_path / "lip_reader")
    generator = TalkLipTrainingRecipe(config).build_generator()
    assert generator.config.avhubert_config.encoder_embed_dim == 16
    for key, value in lip_reader.avhubert.state_dict().items():
        torch.testing.assert_close(generator.audio_encoder.state_dict()[key], value, rtol=0, atol=0)
    assert not generator.audio_encoder.encoder.layers[0].fc1.weight.requires_grad  # still frozen below the top

    generator.save_pretrained(tmp_path / "talklip")
    config = smoke_config()
    config["model"] = {"type": "talklip", "init_from": str(tmp_path / "talklip"), "audio_finetuning_start_step": 3}
    resumed = TalkLipTrainingRecipe(config).build_generator()
    for key, value in generator.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_resumed_run_lands_in_its_stage():
    recipe = TalkLipTrainingRecipe(smoke_config())
    generator = TalkLipModel(recipe.model_config)
    recipe.on_step(generator, 7)
    assert generator.audio_encoder_finetuning
    recipe.on_step(generator, 0)
    assert not generator.audio_encoder_finetuning


def test_bad_recipe_sections_raise():
    from talkface.errors import TalkFaceUserError

    config = smoke_config()
    config["model"]["audio_encoder_type"] = "bogus"
    with pytest.raises(TalkFaceUserError, match="audio_encoder_type"):
        TalkLipTrainingRecipe(config)
    config = smoke_config()
    config["model"].update(audio_encoder_type="local")
    with pytest.raises(TalkFaceUserError, match="audio_finetuning_start_step"):
        TalkLipTrainingRecipe(config)


# --- train/train.py -----------------------------------------------------------------------------------------------


def run_train_script(script, config: dict, tmp_path, *extra):
    """train.main on `config` (written to a YAML file) with the script at `script`."""
    from accelerate.state import AcceleratorState, GradientState

    spec = importlib.util.spec_from_file_location("talkface_train_script_talklip", script)
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    config_file = tmp_path / "talklip_smoke.yaml"
    config_file.write_text(yaml.safe_dump(config))
    try:
        return train.main(["--config", str(config_file), "--cpu", *extra])
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


def check_smoke_run(result, tmp_path):
    assert result["global_step"] == 4
    history = {entry["step"]: entry for entry in result["history"]}
    assert "loss/lip_reading" not in history[2] and "loss/lip_reading" in history[3]  # stage 2 from step 2
    assert "loss/contrastive" in history[4]
    final = tmp_path / "run" / "final"
    model = TalkLipModel.from_pretrained(final)
    assert model.config.audio_encoder_type == "global"
    assert (final / "preprocessor_config.json").is_file()
    from talkface.pipelines.lipsync.generator import load_generator

    assert type(load_generator(final)).__name__ == "TalkLipGenerator"


def test_train_script_smoke_run(tmp_path):
    pytest.importorskip("accelerate")  # train.py's one optional dependency (pip install talkface[train])
    check_smoke_run(run_train_script(TRAIN_SCRIPT, smoke_config(tmp_path), tmp_path), tmp_path)


def test_train_script_validates_talklip_on_whole_videos(tmp_path, monkeypatch):
    """Validation of a TalkLip run regenerates whole validation videos through the pipeline's TalkLip adapter and
    scores them with LSE and AVS (tiny random scorers), as for every recipe."""
    pytest.importorskip("accelerate")
    from talkface.pipelines.lipsync.adapters.talklip import TalkLipGenerator

    generated_frames = []
    generate = TalkLipGenerator.generate

    def counting_generate(self, masked_faces, reference_faces, audio, frame_indices):
        generated_frames.extend(frame_indices.tolist())
        return generate(self, masked_faces, reference_faces, audio, frame_indices)

    monkeypatch.setattr(TalkLipGenerator, "generate", counting_generate)
    from talkface.models.avhubert import AVHubertConfig, AVHubertModel
    from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEModel

    lse_config = SyncNetLSEConfig(audio_channels=[4, 6, 8, 8, 8, 12], video_channels=[4, 6, 8, 8, 8, 12],
                                  fc_hidden_size=10, embedding_size=7, image_size=64)
    SyncNetLSEModel(lse_config).save_pretrained(tmp_path / "lse")
    AVHubertModel(AVHubertConfig(**{k: v for k, v in TINY_LIP_READER.items() if not k.startswith("decoder")
                                    and k != "vocab_size"})).save_pretrained(tmp_path / "avs")
    root = write_layout(tmp_path / "data", {"a/00001": "HELLO", "a/00002": "WORLD"}, num_frames=30)
    (tmp_path / "val.txt").write_text("a/00002\n")
    config = smoke_config(tmp_path)
    config["dataset"] = {"name": "preprocessed", "root": str(root), "val_list": str(tmp_path / "val.txt"),
                         "context_frames": None, "samples_per_video": 4, "num_workers": 0}
    config["losses"] = {"l1": {"weight": 1.0}, "gan": {"weight": 0.07}}  # no transcripts needed
    config["training"].update(max_steps=1, checkpointing_steps=0)
    config["validation"] = {"steps": 0, "batches": 1, "videos": 1, "lse_model": str(tmp_path / "lse"),
                            "avs_model": str(tmp_path / "avs")}
    result = run_train_script(TRAIN_SCRIPT, config, tmp_path)
    metrics = result["validation"]
    for name in ("val/l1", "val/psnr", "val/lse_d", "val/lse_c", "val/avs_u", "val/avs_m", "val/avs_v"):
        assert name in metrics and torch.isfinite(torch.tensor(metrics[name])), name
    assert generated_frames == list(range(30))  # the whole validation video, every frame once
