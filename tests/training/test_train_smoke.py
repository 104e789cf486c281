"""train/train.py end to end on CPU with the tiny recipe: checkpoints, exact resume, SIGKILL resume, TensorBoard,
gradient accumulation, config errors, and overfitting one real clip."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.utils import REPO_ROOT, data_file

TRAIN_SCRIPT = REPO_ROOT / "train" / "train.py"


def load_train_module():
    spec = importlib.util.spec_from_file_location("talkface_train_script", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train = load_train_module()


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    # each run builds its own Accelerator; accelerate keeps process-wide singletons that must be cleared between
    # runs in one process. One thread: tiny models are far faster without thread contention on a shared CPU.
    from accelerate.state import AcceleratorState, GradientState

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    torch.set_num_threads(threads)


def run(output_dir, *extra, steps=2):
    return train.main(["--dataset", "synthetic", "--max-steps", str(steps), "--output-dir", str(output_dir),
                       "--report-to", "none", *extra])


def state(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


def test_smoke_run_leaves_checkpoints_and_final_model(tmp_path):
    summary = run(tmp_path, "--report-to", "tensorboard", "--set", "training.image_logging_steps=1")
    assert summary["global_step"] == 2
    checkpoint = tmp_path / "checkpoint-2"
    for name in ("generator", "discriminator"):
        assert (checkpoint / name / "model.safetensors").is_file()
        assert (checkpoint / name / "config.json").is_file()
    assert (checkpoint / "optimizer.bin").is_file() and (checkpoint / "random_states_0.pkl").is_file()
    final = tmp_path / "final"
    assert (final / "model.safetensors").is_file() and (final / "preprocessor_config.json").is_file()
    assert "talkface" in (final / "README.md").read_text()
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    assert {"loss/l1", "loss/gan", "loss/perceptual", "loss/sync", "loss/discriminator"} <= set(summary["last_losses"])
    assert all(torch.isfinite(torch.tensor(v)) for v in summary["last_losses"].values())

    from talkface.pipelines.lipsync.generator import load_generator

    generator = load_generator(final)
    assert generator.frames_per_step == 5
    assert not any(p.requires_grad for p in generator.model.audio_encoder.parameters())
    # the checkpoint's generator folder is a usable model too, equal to the final one (no step after it)
    for key, value in state(checkpoint / "generator").items():
        assert torch.equal(value, state(final)[key]), key


def test_resume_equals_straight_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run(straight, steps=4)
    first = run(split, steps=2)
    assert first["global_step"] == 2
    second = run(split, "--resume", steps=4)
    assert second["start_step"] == 2 and second["global_step"] == 4
    for name in ("generator", "discriminator"):
        expected, resumed = state(straight / "checkpoint-4" / name), state(split / "checkpoint-4" / name)
        assert expected.keys() == resumed.keys()
        for key in expected:
            torch.testing.assert_close(resumed[key], expected[key], rtol=0, atol=1e-6, msg=f"{name} {key}")
    # the run really trained: weights moved away from the step-2 checkpoint
    moved = state(split / "checkpoint-2" / "generator")
    assert any(not torch.equal(moved[k], v) for k, v in state(split / "checkpoint-4" / "generator").items())


def test_sigkill_then_resume(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, str(TRAIN_SCRIPT), "--dataset", "synthetic", "--max-steps", "1000",
               "--checkpointing-steps", "1", "--output-dir", str(tmp_path), "--report-to", "none",
               "--set", "training.checkpoints_total_limit=2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "checkpoint-2").is_dir():
            assert process.poll() is None, "training exited before the kill"
            assert time.monotonic() < deadline, "no checkpoint-2 within 120 s"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    done = train.list_checkpoints(tmp_path)
    last = int(done[-1].name.split("-")[1])
    assert last >= 2 and len(done) <= 2  # total limit honoured; a half-written one (if any) is not listed
    summary = run(tmp_path, "--resume", steps=last + 2)
    assert summary["start_step"] == last and summary["global_step"] == last + 2
    assert (tmp_path / "final" / "model.safetensors").is_file()


def test_gradient_accumulation_bf16_and_push_to_hub(tmp_path, monkeypatch):
    import talkface.hub.cards

    uploads = []
    monkeypatch.setattr(talkface.hub.cards, "upload_folder_to_hub",
                        lambda folder, repo_id, **kwargs: uploads.append((Path(folder), repo_id, kwargs)))
    summary = run(tmp_path, "--gradient-accumulation-steps", "2", "--mixed-precision", "bf16",
                  "--set", "losses={l1: {weight: 1.0}, gan: {weight: 0.1}}", "--push-to-hub", "someone/talkface-test")
    assert summary["global_step"] == 2
    assert set(summary["last_losses"]) >= {"loss/l1", "loss/gan"} and "loss/sync" not in summary["last_losses"]
    assert [(folder.name, repo) for folder, repo, _ in uploads] == [("final", "someone/talkface-test")]
    card = (tmp_path / "final" / "README.md").read_text()
    assert "someone/talkface-test" in card and "training steps" in card


def test_config_errors(tmp_path):
    from talkface.errors import TalkFaceUserError

    with pytest.raises(TalkFaceUserError, match="unknown config"):
        run(tmp_path, "--set", "trainig.batch_size=2")
    with pytest.raises(ValueError, match="unknown loss"):
        run(tmp_path, "--set", "losses.l2={weight: 1}")
    with pytest.raises(TalkFaceUserError, match="data-root"):
        train.main(["--output-dir", str(tmp_path), "--set", "dataset.root=null", "--set", "losses={l1: {}}",
                    "--report-to", "none"])


def test_cli_flags_override_yaml(tmp_path):
    args = train.parse_args(["--dataset", "synthetic", "--batch-size", "3", "--learning-rate", "0.5",
                             "--set", "losses.sync.variant=visual_visual", "--set", "validation.batches=0"])
    config = train.load_config(args)
    assert config["training"]["batch_size"] == 3 and config["optimizer"]["lr"] == 0.5
    assert config["losses"]["sync"]["variant"] == "visual_visual" and config["validation"]["batches"] == 0
    assert config["config_file"].endswith("smoke_tiny.yaml")
    paper = train.load_config(train.parse_args(["--data-root", "somewhere"]))
    assert paper["losses"]["l1"]["weight"] == 10.0 and paper["losses"]["sync"]["weight"] == 0.5
    assert paper["losses"]["gan"]["weight"] == 1.0 and paper["losses"]["perceptual"]["weight"] == 1.0
    assert paper["optimizer"]["lr"] == 1e-4 and paper["dataset"]["root"] == "somewhere"


@pytest.fixture(scope="module")
def real_clip_data(tmp_path_factory):
    """40 frames of clip07 preprocessed into the training layout."""
    pytest.importorskip("mediapipe")
    from talkface.training.data.layout import write_manifest
    from talkface.training.data.preprocessing import PreprocessOptions, preprocess_video

    clip = data_file("clip07_edtalk_mouth_source_muxed.mkv")
    data_root = tmp_path_factory.mktemp("clip07")
    record = preprocess_video("clip07", clip, data_root, PreprocessOptions(max_frames=40))
    assert record.status == "ok", record.error
    write_manifest(data_root, [record])
    return data_root


TINY_96_RECIPE = """
seed: 0
dataset: {{name: preprocessed, root: {data_root}, val_fraction: 0.0, samples_per_video: 64, num_workers: 0}}
model:
  encoder_channels: [4, 8, 16, 16, 16, 16, 16]
  encoder_stem_kernel_size: 3
  decoder_channels: [16, 16, 16, 16, 8, 8, 4]
  fusion_channels: 16
  output_hidden_size: 8
  convs_per_block: 1
  audio_encoder_channels: [4, 4, 8, 8]
  audio_encoder_residual_layers: [1, 0, 1, 0]
  audio_hidden_size: 8
discriminator: null
losses: {{l1: {{weight: 1.0}}}}
optimizer: {{lr: 3.0e-3, betas: [0.9, 0.999]}}
training: {{batch_size: 2, checkpointing_steps: 0, logging_steps: 50, report_to: none}}
validation: {{steps: 0, batches: 0}}
"""


def test_overfit_one_real_clip(tmp_path, real_clip_data):
    """A tiny generator on one preprocessed real clip (40 frames of clip07): the L1 loss at least halves within 60
    steps (about 0.28 -> 0.08 on an idle CPU; ~20 s)."""
    recipe = tmp_path / "overfit.yaml"
    recipe.write_text(TINY_96_RECIPE.format(data_root=real_clip_data))
    summary = train.main(["--config", str(recipe), "--max-steps", "60", "--output-dir", str(tmp_path / "run")])
    l1 = [entry["loss/l1"] for entry in summary["history"]]
    first, last = sum(l1[:5]) / 5, sum(l1[-5:]) / 5
    assert last < 0.5 * first, f"L1 went from {first:.4f} to {last:.4f}"


def test_validation_video_metrics(tmp_path, real_clip_data):
    """With LSE and AVS models configured, validation regenerates whole videos and scores them."""
    from talkface.models.avhubert import AVHubertConfig, AVHubertModel
    from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEModel

    lse_config = SyncNetLSEConfig(audio_channels=[4, 6, 8, 8, 8, 12], video_channels=[4, 6, 8, 8, 8, 12],
                                  fc_hidden_size=10, embedding_size=7, image_size=64)
    SyncNetLSEModel(lse_config).save_pretrained(tmp_path / "lse")
    avs_config = AVHubertConfig(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
                                encoder_attention_heads=2, conv_pos=4, conv_pos_groups=2, video_frontend_channels=4,
                                resnet_channels=[4, 4, 8, 8], resnet_blocks=[1, 1, 1, 1])
    AVHubertModel(avs_config).save_pretrained(tmp_path / "avs")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(TINY_96_RECIPE.format(data_root=real_clip_data))
    val_list = tmp_path / "val.txt"
    val_list.write_text("clip07\n")  # the training clip doubles as validation video
    validation = f"{{batches: 1, videos: 1, lse_model: {tmp_path / 'lse'}, avs_model: {tmp_path / 'avs'}}}"
    summary = train.main(["--config", str(recipe), "--max-steps", "1", "--output-dir", str(tmp_path / "run"),
                          "--set", f"dataset.val_list={val_list}", "--set", f"validation={validation}"])
    metrics = summary["validation"]
    for name in ("val/l1", "val/psnr", "val/lse_d", "val/lse_c", "val/avs_u", "val/avs_m", "val/avs_v"):
        assert name in metrics and torch.isfinite(torch.tensor(metrics[name])), name


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    """DDP with two CPU processes (gloo) through torchrun: sharded data, both processes' RNG states checkpointed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    common = [str(TRAIN_SCRIPT), "--dataset", "synthetic", "--output-dir", str(tmp_path), "--cpu",
              "--report-to", "none"]
    subprocess.run([*torchrun, *common, "--max-steps", "2"], env=env, check=True, capture_output=True, timeout=300)
    assert (tmp_path / "checkpoint-2" / "random_states_1.pkl").is_file()
    subprocess.run([*torchrun, *common, "--max-steps", "4", "--resume", "--mixed-precision", "bf16"], env=env,
                   check=True, capture_output=True, timeout=300)
    assert (tmp_path / "checkpoint-4" / "generator" / "model.safetensors").is_file()


def test_staged_loss_schedule(tmp_path):
    summary = run(tmp_path, "--set", "losses={l1: {weight: 1.0, start_step: 1}, gan: {weight: 1.0, start_step: 5}}",
                  "--set", "training.save=false", "--set", "validation.batches=0")
    first, second = summary["history"]
    assert "loss/l1" not in first and "loss/gan" not in first  # nothing active at step 0: a zero step
    assert "loss/l1" in second and "loss/gan" not in second
    assert not (tmp_path / "final").exists() and not list(tmp_path.glob("checkpoint-*"))
