"""Validation of a training run, for every recipe: window metrics on validation batches, and video metrics of
whole validation videos regenerated through the lip-sync pipeline's own generator adapter.

* Window metrics (`validate`): L1 and PSNR of the generated windows against the ground truth, plus the `sync` loss
  and what it reports, on `validation.batches` batches, gathered over processes (`gather_for_metrics`).
* Video metrics (`video_metrics`, main process): the first `validation.videos` validation videos are regenerated
  whole by the recipe's `inference_generator()` (the same `LipSyncGenerator` adapter that `LipSyncPipeline` and
  `talkface generate` use: its `prepare_audio` over the whole utterance, then `generate` on batches of face crops
  with the lower half masked) and scored with LSE-C / LSE-D (`talkface.metrics.sync`, `validation.lse_model`)
  and AVS_u / AVS_m / AVS_v (`talkface.metrics.avs`, `validation.avs_model`). The identity reference of frame i
  is frame `i % k` of the video (its first k frames, the same for every window), so the reference never shows the
  mouth of the frame being generated, as in training. The preprocessed face crops stand in for the pipeline's own
  face tracking and paste-back, which the metrics do not need.
"""

import logging

import numpy as np
import torch

from .data.builders import video_dataset
from .losses.core import GeneratorLossInputs

logger = logging.getLogger(__name__)

FACES_PER_CALL = 40  # faces per adapter.generate call when regenerating validation videos


def psnr(generated, target) -> torch.Tensor:
    """Per-sample PSNR in dB for images in [0, 1]: (batch,)."""
    mse = ((generated.float() - target.float()) ** 2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-10))


def image_grid(batch, generated, max_rows=4) -> torch.Tensor:
    """(3, rows * S, 4 * S) grid of [reference | masked | generated | target] for the first frame of each sample."""
    rows = []
    for index in range(min(max_rows, generated.shape[0])):
        tiles = [batch.reference_frames[index, 0], batch.masked_frames[index, 0], generated[index, 0],
                 batch.target_frames[index, 0]]
        rows.append(torch.cat([t.detach().float().cpu().clamp(0, 1) for t in tiles], dim=2))
    return torch.cat(rows, dim=1)


def log_images(accelerator, tag, grid, step):
    """An image to TensorBoard (main process, when the tracker is TensorBoard)."""
    if not accelerator.is_main_process:
        return
    tracker = accelerator.get_tracker("tensorboard", unwrap=True)
    if hasattr(tracker, "add_image"):
        tracker.add_image(tag, grid, step)


@torch.no_grad()
def validate(accelerator, recipe, generator, val_loader, losses, config: dict, step: int) -> dict:
    """Window metrics on validation batches and (main process) video metrics; logged, and returned."""
    validation = config["validation"]
    generator.eval()
    sums, count, sample_grid = {}, 0, None
    for index, batch in enumerate(val_loader):
        if index >= validation["batches"]:
            break
        with accelerator.autocast():
            generated, extras = recipe.generator_forward(generator, batch, step)
        per_sample = {
            "val/l1": (generated.float() - batch.target_frames).abs().flatten(1).mean(dim=1),
            "val/psnr": psnr(generated, batch.target_frames),
        }
        for loss in losses:
            if loss.name == "sync":  # the lip-sync loss doubles as a validation metric
                with accelerator.autocast():
                    value = loss.term(GeneratorLossInputs(generated_frames=generated, batch=batch, step=step,
                                                          extras=extras))
                per_sample[f"val/loss_{loss.name}"] = value.float().reshape(1).expand(generated.shape[0])
                for key, metric in loss.term.last_metrics().items():
                    per_sample[f"val/{key}"] = metric.float().reshape(1).expand(generated.shape[0])
        gathered = accelerator.gather_for_metrics(per_sample)
        for key, values in gathered.items():
            sums[key] = sums.get(key, 0.0) + float(values.sum())
        count += int(next(iter(gathered.values())).numel())
        if sample_grid is None:
            sample_grid = image_grid(batch, generated)
    metrics = {key: value / max(count, 1) for key, value in sums.items()}
    if accelerator.is_main_process:
        metrics.update(video_metrics(accelerator, recipe, generator, val_loader.dataset, validation))
    generator.train()
    if metrics:
        accelerator.log(metrics, step=step)
        accelerator.print(f"validation at step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if sample_grid is not None and config["training"]["report_to"] == "tensorboard":
        log_images(accelerator, "val/samples", sample_grid, step)
    return metrics


def _load_scorers(validation: dict, device) -> dict:
    scorers = {}
    if validation["lse_model"]:
        from ..metrics.sync import LSEScorer

        scorers["lse"] = LSEScorer.from_pretrained(validation["lse_model"], device=device)
    if validation["avs_model"]:
        from ..metrics.avs import AVSScorer

        scorers["avs"] = AVSScorer.from_pretrained(validation["avs_model"], device=device)
    return scorers


@torch.no_grad()
def regenerate_video(adapter, frames: torch.Tensor, audio, reference_period: int) -> torch.Tensor:
    """Every frame of a video generated by a pipeline adapter, as `LipSyncPipeline` feeds it.

    frames: (T, 3, S, S) RGB in [0, 1] face crops of the adapter's size; audio: the adapter's `PreparedAudio`
    of the utterance (at least T frames). Frame i gets frame `i % reference_period` as identity reference and the
    audio of frame i. Returns (T, 3, S, S) float RGB in [0, 1] on the CPU.
    """
    num_frames, size = frames.shape[0], frames.shape[-1]
    masked = frames.clone()
    masked[:, :, size // 2:] = 0  # the lower half is what the generator must produce
    step = max(1, int(getattr(adapter, "frames_per_step", 1)))
    per_call = -(-FACES_PER_CALL // step) * step  # whole k-frame groups per call
    generated = []
    for start in range(0, num_frames, per_call):
        indices = torch.arange(start, min(start + per_call, num_frames))
        faces = adapter.generate(masked[indices], frames[indices % reference_period], audio, indices)
        generated.append(faces.float().cpu().clamp(0, 1))
    return torch.cat(generated)


def video_metrics(accelerator, recipe, generator, dataset, validation: dict) -> dict:
    """LSE-C / LSE-D and AVS of whole regenerated validation videos (see the module docstring), averaged.

    Skipped (and logged) when no metric model is configured, for synthetic data, or when a metric's optional
    dependency is missing.
    """
    if not (validation["lse_model"] or validation["avs_model"]) or not validation["videos"]:
        logger.info("validation video metrics skipped: set validation.lse_model / validation.avs_model to compute "
                    "LSE-C/LSE-D and AVS")
        return {}
    videos = video_dataset(dataset)
    if videos is None:
        logger.info("validation video metrics skipped: they need real videos (dataset.name: preprocessed)")
        return {}
    try:
        scorers = _load_scorers(validation, accelerator.device)
    except ImportError as err:
        logger.warning(f"validation video metrics skipped: {err}")
        return {}

    from ..faces.mouth_roi import crop_mouth_differentiable
    from .data.dataset import resize_faces, scale_affines, to_frames_tensor
    from .data.layout import AFFINES_NAME, AUDIO_NAME, FaceFrames, read_wav, video_folder

    adapter = recipe.inference_generator(accelerator.unwrap_model(generator))
    size = adapter.img_size
    totals, counted = {}, 0
    for record in videos.records[: validation["videos"]]:
        folder = video_folder(videos.root, record.id)
        faces = FaceFrames(folder, record.storage)
        waveform, sampling_rate = read_wav(folder / AUDIO_NAME)
        audio = adapter.prepare_audio(waveform, sampling_rate, record.fps)
        num_frames = min(len(faces), record.num_frames, audio.num_frames)
        crops = np.asarray(faces[:num_frames])
        frames = to_frames_tensor(resize_faces(crops, size))  # (T, 3, S, S)
        generated = regenerate_video(adapter, frames, audio, recipe.num_frames)
        if "lse" in scorers:
            frames_uint8 = (generated * 255).round().byte().permute(0, 2, 3, 1).numpy()
            score = scorers["lse"].score_frames(frames_uint8, waveform, sampling_rate, channel_order="rgb")
            totals["val/lse_d"] = totals.get("val/lse_d", 0.0) + float(score.lse_d)
            totals["val/lse_c"] = totals.get("val/lse_c", 0.0) + float(score.lse_c)
        if "avs" in scorers:
            affines = np.load(folder / AFFINES_NAME)[:num_frames].astype(np.float32)
            affines = torch.from_numpy(scale_affines(affines, crops.shape[1], size))
            generated_mouths = crop_mouth_differentiable(generated, affines)[:, 0].numpy()
            real_mouths = crop_mouth_differentiable(frames, affines)[:, 0].numpy()
            result = scorers["avs"].score(generated_mouths, audio=waveform, reference=real_mouths)
            for name, value in result.scores.items():
                totals[f"val/{name}"] = totals.get(f"val/{name}", 0.0) + value
        counted += 1
    return {key: value / max(counted, 1) for key, value in totals.items()}


__all__ = ["image_grid", "log_images", "psnr", "regenerate_video", "validate", "video_metrics"]
