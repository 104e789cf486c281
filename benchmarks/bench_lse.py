"""LSE-D / LSE-C on a real 10 s clip: talkface's pipeline against a re-creation of the reference procedure.

    python benchmarks/bench_lse.py            # clip07 (10 s), both face modes
    python benchmarks/bench_lse.py --quick    # first 2 s, one repetition (smoke check)

The reference procedure (syncnet_python run_pipeline.py + SyncNetInstance.evaluate, re-written here from the
description in ../shared/reference/TECH.md section 4, not copied):
  * track mode: the face detector on every frame at full resolution; scene cuts; IoU tracking; each frame padded
    whole with grey 110 and the 0.4-scaled square cropped and resized to 224 x 224;
  * scoring: the whole clip as one float tensor, then per batch of 20 windows a `torch.cat` of 5-frame slices and
    one forward pass per stream; distances with one `pairwise_distance` per window over the 31 shifts; mean,
    min, median.
  The re-creation decodes frames into memory (the original writes and re-reads JPEG frames and an XVID video,
  which costs extra time and changes pixels), and runs the network under no_grad: both favour the reference.
talkface: detection on every 5th frame (boxes interpolated), crops cut from a padded window only, every window
embedded by the folded 2-D video stream in batches of 32, all distances in one tensor expression.

Numbers are compared like for like: talkface's scorer is also run on the reference's own crops and must give
the same LSE (printed with the maximum difference). Weights are random (the full-size architecture), so the
values test the arithmetic, not sync quality. Timings on a shared machine vary; compare the ratios.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from talkface import media  # noqa: E402
from talkface.faces.backends import box_iou, get_face_backend  # noqa: E402
from talkface.metrics.sync import (  # noqa: E402
    LSEScorer,
    TrackingOptions,
    audio_to_int16_scale,
    scene_cuts,
)
from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEFeatureExtractor, SyncNetLSEModel  # noqa: E402

DEFAULT_CLIP = REPO_ROOT.parent / "shared" / "data" / "clip07_edtalk_mouth_source_muxed.mkv"
REFERENCE_BATCH = 20
VSHIFT = 15


def random_model(seed: int = 0) -> SyncNetLSEModel:
    """Full-size SyncNet with random weights and random batch-norm statistics."""
    torch.manual_seed(seed)
    model = SyncNetLSEModel(SyncNetLSEConfig()).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, fan_in**-0.5)  # the golden formula's scale: distances of a few hundred
    return model


# ----------------------------------------------------------------------------------------------------------------
# The reference procedure, re-created
# ----------------------------------------------------------------------------------------------------------------


def reference_tracks(frames, backend, options: TrackingOptions):
    """Detection on every frame, scene cuts, then greedy IoU tracks with linear box interpolation."""
    detections = [[face.box.astype(np.float64) for face in backend.detect(frame, landmarks=False)] for frame in frames]
    cuts = scene_cuts(frames, options.scene_threshold, options.min_scene_frames) + [len(frames)]
    tracks = []
    for scene_start, scene_end in zip(cuts[:-1], cuts[1:]):
        scene = [(i, list(detections[i])) for i in range(scene_start, scene_end)]
        while True:
            track = []
            for index, faces in scene:
                for face in list(faces):
                    if not track:
                        track.append((index, face))
                        faces.remove(face)
                    elif index - track[-1][0] <= options.max_missed_frames:
                        if box_iou(face, track[-1][1]) > options.iou_threshold:
                            track.append((index, face))
                            faces.remove(face)
                            break
                    else:
                        break
            if not track:
                break
            indices = np.array([i for i, _ in track])
            boxes = np.stack([b for _, b in track])
            every = np.arange(indices[0], indices[-1] + 1)
            interpolated = np.stack([np.interp(every, indices, boxes[:, c]) for c in range(4)], axis=1)
            if len(every) >= options.min_track_frames:
                tracks.append((int(indices[0]), interpolated))
    return tracks


def reference_crops(frames, start, boxes, options: TrackingOptions, size=224):
    """Pad each whole frame by the crop margin with grey 110, cut the 0.4-scaled square, resize."""
    import cv2
    from scipy.signal import medfilt

    half = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, options.smoothing_kernel)
    centre_y = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, options.smoothing_kernel)
    centre_x = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, options.smoothing_kernel)
    cs = options.crop_scale
    crops = []
    for k in range(len(boxes)):
        pad = int(half[k] * (1 + 2 * cs))
        padded = np.pad(frames[start + k], ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=110)
        my, mx, s = centre_y[k] + pad, centre_x[k] + pad, half[k]
        face = padded[int(my - s) : int(my + s * (1 + 2 * cs)), int(mx - s * (1 + cs)) : int(mx + s * (1 + cs))]
        crops.append(cv2.resize(face, (size, size)))
    return np.stack(crops)


@torch.no_grad()
def reference_lse(model, crops_bgr, audio_int16):
    """SyncNetInstance.evaluate's loop order: batches of 20 windows, one pairwise_distance per window."""
    import cv2

    extractor = SyncNetLSEFeatureExtractor()
    images = np.stack([cv2.resize(f, (224, 224)) for f in crops_bgr])  # (T, H, W, 3) BGR
    video = torch.from_numpy(images.transpose(3, 0, 1, 2)[None].astype(float)).float()  # (1, 3, T, 224, 224)
    mfcc = torch.from_numpy(extractor.mfcc(audio_int16))[None, None]  # (1, 1, 13, T_mfcc)
    last_frame = min(len(images), len(audio_int16) // 640) - 5
    video_features, audio_features = [], []
    for first in range(0, last_frame, REFERENCE_BATCH):
        frames_batch = [video[:, :, v : v + 5] for v in range(first, min(last_frame, first + REFERENCE_BATCH))]
        video_features.append(model.get_video_embeddings(torch.cat(frames_batch, 0))[:, 0])
        audio_batch = [mfcc[:, :, :, v * 4 : v * 4 + 20]
                       for v in range(first, min(last_frame, first + REFERENCE_BATCH))]
        audio_features.append(model.get_audio_embeddings(torch.cat(audio_batch, 0)))
    video_features, audio_features = torch.cat(video_features), torch.cat(audio_features)
    padded = torch.nn.functional.pad(audio_features, (0, 0, VSHIFT, VSHIFT))
    dists = [torch.nn.functional.pairwise_distance(video_features[[i]].repeat(2 * VSHIFT + 1, 1),
                                                   padded[i : i + 2 * VSHIFT + 1]) for i in range(len(video_features))]
    mean_dists = torch.mean(torch.stack(dists, 1), 1)
    min_dist, min_index = torch.min(mean_dists, 0)
    conf = torch.median(mean_dists) - min_dist
    return {"lse_d": float(min_dist), "lse_c": float(conf), "offset": VSHIFT - int(min_index),
            "dists": torch.stack(dists).numpy()}


# ----------------------------------------------------------------------------------------------------------------


def timed(function, *args, **kwargs):
    """(value, wall seconds); also adds the CPU seconds of this process to `timed.cpu` (steadier on a busy box)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    value = function(*args, **kwargs)
    timed.cpu = time.process_time() - start_cpu
    return value, time.perf_counter() - start


timed.cpu = 0.0


def compare(name, reference, ours, ours_dists=None):
    diff = {k: abs(reference[k] - getattr(ours, k)) for k in ("lse_d", "lse_c")}
    line = (f"  {name}: reference LSE-D {reference['lse_d']:.6f} LSE-C {reference['lse_c']:.6f} offset "
            f"{reference['offset']:+d} | talkface LSE-D {ours.lse_d:.6f} LSE-C {ours.lse_c:.6f} "
            f"offset {ours.offset:+d}"
            f" | max diff LSE-D {diff['lse_d']:.2e} LSE-C {diff['lse_c']:.2e}")
    if ours_dists is not None:
        line += f" distances {np.abs(reference['dists'] - ours_dists).max():.2e}"
    print(line)
    return max(diff.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--quick", action="store_true", help="first 2 s only, one repetition")
    parser.add_argument("--mode", choices=("precropped", "track", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=2, help="best of N timings")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        raise SystemExit(f"clip not found: {args.clip}; pass --clip PATH (a talking-face video with sound)")
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats

    frames = media.read_frames(args.clip, fps=25.0, max_frames=50 if args.quick else None)  # RGB
    audio = audio_to_int16_scale(media.read_audio(args.clip, 16000))[: len(frames) * 640]
    model = random_model()
    scorer = LSEScorer(model, vshift=VSHIFT)
    print(f"clip {args.clip.name}: {len(frames)} frames ({len(frames) / 25:.1f} s) "
          f"{frames.shape[2]}x{frames.shape[1]}, "
          f"torch threads {torch.get_num_threads()}, full-size SyncNet, random weights")
    results = {}

    if args.mode in ("precropped", "both"):
        bgr = frames[..., ::-1]
        best_ref = best_ours = cpu_ref = cpu_ours = float("inf")
        for _ in range(repeats):
            reference, seconds = timed(reference_lse, model, bgr, audio)
            best_ref, cpu_ref = min(best_ref, seconds), min(cpu_ref, timed.cpu)
            ours, seconds = timed(scorer.score_frames, frames, audio, channel_order="rgb")
            best_ours, cpu_ours = min(best_ours, seconds), min(cpu_ours, timed.cpu)
        video, audio_features = scorer.embed(frames, audio, channel_order="rgb")
        from talkface.metrics.sync import sync_distances

        print(f"pre-cropped (whole frame resized to 224): reference {best_ref:.2f} s, talkface {best_ours:.2f} s, "
              f"speed-up {best_ref / best_ours:.2f}x (CPU time {cpu_ref:.1f} s vs {cpu_ours:.1f} s: "
              f"{cpu_ref / cpu_ours:.2f}x)")
        compare("numbers", reference, ours, sync_distances(video, audio_features).numpy())
        results["precropped"] = best_ref / best_ours

    if args.mode in ("track", "both"):
        options = TrackingOptions(min_track_frames=25, min_face_size=40)
        backend = get_face_backend("mediapipe")
        best_ref = best_ours = cpu_ref = cpu_ours = float("inf")
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            tracks = reference_tracks(frames, backend, options)
            detect_seconds = time.perf_counter() - start
            reference_scores = []
            crops_list = []
            for track_start, boxes in tracks:
                crops = reference_crops(frames, track_start, boxes, options)
                track_audio = audio[track_start * 640 : (track_start + len(boxes)) * 640]
                reference_scores.append(reference_lse(model, crops[..., ::-1], track_audio))
                crops_list.append((crops, track_audio))
            best_ref = min(best_ref, time.perf_counter() - start)
            cpu_ref = min(cpu_ref, time.process_time() - start_cpu)
            ours, seconds = timed(scorer.score_clip, frames, audio, face_mode="track", tracking=options,
                                  face_backend=backend)
            best_ours, cpu_ours = min(best_ours, seconds), min(cpu_ours, timed.cpu)
        print(f"track mode: reference {best_ref:.2f} s (detection + tracking {detect_seconds:.2f} s), talkface "
              f"{best_ours:.2f} s, speed-up {best_ref / best_ours:.2f}x (CPU time {cpu_ref:.1f} s vs "
              f"{cpu_ours:.1f} s: {cpu_ref / cpu_ours:.2f}x); {len(tracks)} reference track(s), "
              f"{len(ours.tracks)} talkface track(s)")
        for (crops, track_audio), reference in zip(crops_list, reference_scores):
            same_crops = scorer.score_frames(crops, track_audio, channel_order="rgb")
            compare("same crops", reference, same_crops)
        if reference_scores:
            compare("talkface end to end (strided detection)", reference_scores[0], ours.tracks[0])
        backend.close()
        results["track"] = best_ref / best_ours
    return results


if __name__ == "__main__":
    main()
