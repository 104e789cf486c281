"""LSE-D / LSE-C: lip-sync error from the Chung & Zisserman SyncNet, computed exactly as the reference does.

The reference is syncnet_python's `SyncNetInstance.evaluate` (and its copies in Wav2Lip and TalkLip):

1. MFCCs of the int16 signal; video window i = frames [i, i + 5), audio window i = MFCC frames [4i, 4i + 20).
   N = min(frames, floor(samples / 640)) - 5 windows.
2. Audio embeddings are zero-padded by `vshift` windows on both ends; for every window i and shift j in
   0..2*vshift, d[i, j] = ||v_i - a_(i + j - vshift) + 1e-6||. Padded (zero) audio positions count.
3. mean_d[j] = mean_i d[i, j]; LSE-D = min_j mean_d; LSE-C = median_j mean_d - LSE-D;
   AV offset = vshift - argmin_j mean_d (in video frames; positive: audio leads).
4. A data set's LSE-D / LSE-C are the arithmetic means of the per-video values.

Here every window is embedded in a few batched forward passes and the 2*vshift+1 distances of all windows come
from one tensor computation; the numbers equal the reference loop's (tests/metrics/test_metrics_sync.py checks this
against golden outputs of the original code).

Two ways to get the face frames (docs/evaluation.md):
* `face_mode="precropped"` (the LRS2 protocol of Wav2Lip / TalkLip): the whole frame is the face crop and is
  resized to 224 x 224.
* `face_mode="track"` (syncnet_python's run_pipeline for in-the-wild video): faces are detected, split at scene
  cuts, tracked by box overlap, smoothed, and cropped as a square of 2.8 times the half box size (crop scale 0.4)
  resized to 224 x 224; every track long enough gets its own score.

The code is split by topic; every name stays importable from here:

* `talkface.metrics.sync_math`: `SyncScore`, `VideoSyncResult` and the metric on embeddings (steps 1-4);
* `talkface.metrics.sync_tracking`: `TrackingOptions` and the face tracks of track mode;
* `talkface.metrics.sync_scorer`: `LSEScorer`, which embeds clips with a SyncNet and scores them.
"""

from __future__ import annotations

from .sync_math import (
    DEFAULT_VSHIFT,
    FRAMEWISE_MEDIAN_KERNEL,
    PAIRWISE_DISTANCE_EPS,
    SyncScore,
    VideoSyncResult,
    aggregate_lse,
    audio_to_int16_scale,
    lse_from_distances,
    lse_from_embeddings,
    sync_distances,
)
from .sync_scorer import SYNCNET_CONVERT_HINT, LSEScorer
from .sync_tracking import FaceTrack, TrackingOptions, crop_track, find_face_tracks, scene_cuts, track_faces

__all__ = [
    "DEFAULT_VSHIFT",
    "FRAMEWISE_MEDIAN_KERNEL",
    "PAIRWISE_DISTANCE_EPS",
    "SYNCNET_CONVERT_HINT",
    "FaceTrack",
    "LSEScorer",
    "SyncScore",
    "TrackingOptions",
    "VideoSyncResult",
    "aggregate_lse",
    "audio_to_int16_scale",
    "crop_track",
    "find_face_tracks",
    "lse_from_distances",
    "lse_from_embeddings",
    "scene_cuts",
    "sync_distances",
    "track_faces",
]
