"""`LSEScorer`: SyncNet embeddings of a clip's 5-frame windows and its audio, scored as LSE-D / LSE-C.

Pre-cropped clips are scored whole; in track mode each face track (`talkface.metrics.sync_tracking`) is scored on
its own. The math on the embeddings is `talkface.metrics.sync_math`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import MediaError, NoFaceError, TalkFaceUserError
from .sync_math import DEFAULT_VSHIFT, SyncScore, VideoSyncResult, audio_to_int16_scale, lse_from_embeddings
from .sync_tracking import TrackingOptions, crop_track, find_face_tracks

#: how to make a SyncNet LSE model folder (appended to load errors)
SYNCNET_CONVERT_HINT = "create it with: talkface convert syncnet-lse --checkpoint syncnet_v2.model --out DIR"


class _FoldedVideoStream:
    """Inference-only form of SyncNet's video stream, built from a model optimised by
    `talkface.models.optimization.inference_copy` (batch norm already folded into the convolutions).

    Every layer after the first has a temporal kernel of 1, so the stream is 2-D convolutions on each window; the
    first 3-D convolution is a 2-D convolution over the window's 5 frames stacked on the channel axis. Tensors are
    channels-last, which oneDNN runs faster. Results equal the model's `get_video_embeddings` to float32 round-off
    (tests/metrics/test_metrics_sync.py).
    """

    def __init__(self, folded_model):
        from torch import nn

        self.video_window = folded_model.config.video_window
        self.head = folded_model.netfclip
        self.steps = []
        for layer in folded_model.netcnnlip:
            if isinstance(layer, nn.BatchNorm3d):
                raise ValueError("the video stream still has batch norm; pass a model from inference_copy()")
            if isinstance(layer, nn.Conv3d):
                # (out, in, time, kh, kw) -> (out, in * time, kh, kw): channel c of frame t is input c * time + t
                weight = layer.weight.reshape(layer.weight.shape[0], -1, *layer.weight.shape[-2:]).contiguous(
                    memory_format=torch.channels_last)
                self.steps.append(("conv", weight, layer.bias, layer.stride[1:], layer.padding[1:]))
            elif isinstance(layer, nn.MaxPool3d):
                padding = layer.padding if isinstance(layer.padding, tuple) else (layer.padding,) * 3
                self.steps.append(("pool", layer.kernel_size[1:], layer.stride[1:], padding[1:]))

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(1, channels, frames, H, W) -> (frames - video_window + 1, embedding_size)."""
        functional = torch.nn.functional
        channels, num_frames, height, width = pixel_values.shape[1:]
        windows = pixel_values[0].unfold(1, self.video_window, 1)  # (channels, windows, H, W, window)
        windows = windows.permute(1, 0, 4, 2, 3).reshape(  # (windows, channels * window, H, W), c-major
            num_frames - self.video_window + 1, channels * self.video_window, height, width)
        hidden_states = windows.contiguous(memory_format=torch.channels_last)
        for step in self.steps:
            if step[0] == "conv":
                _, weight, bias, stride, padding = step
                hidden_states = functional.relu_(functional.conv2d(hidden_states, weight, bias, stride, padding))
            else:
                _, kernel, stride, padding = step
                hidden_states = functional.max_pool2d(hidden_states, kernel, stride, padding)
        return self.head(hidden_states.flatten(1))  # (windows, channels) -> (windows, embedding_size)


class LSEScorer:
    """Scores lip sync of face clips with a `SyncNetLSEModel`.

    Args:
        model: a `SyncNetLSEModel` (its device is used).
        feature_extractor: its `SyncNetLSEFeatureExtractor` (defaults reproduce syncnet_python).
        vshift: offsets searched on each side (reference 15).
        batch_size: video windows per forward pass (memory: about 5 MB per window at 224 x 224).
        fold_batch_norm: score with an inference copy of the model made once, here
            (`talkface.models.optimization.inference_copy`: batch norm folded into the convolutions and linear
            layers, channels-last weights) and run its video stream as 2-D convolutions: the same numbers to
            float32 round-off, faster on CPU. The copy snapshots the weights; later changes to `model` are not
            seen (make a new scorer). False runs the model's own modules.
    """

    def __init__(self, model, feature_extractor=None, vshift: int = DEFAULT_VSHIFT, batch_size: int = 32,
                 fold_batch_norm: bool = True):
        from ..models.syncnet_lse import SyncNetLSEFeatureExtractor

        if vshift < 0:
            raise ValueError(f"vshift must be >= 0, got {vshift}")
        self.model = model.eval()
        config = model.config
        self.feature_extractor = feature_extractor or SyncNetLSEFeatureExtractor(
            audio_window=config.audio_window, video_window=config.video_window, image_size=config.image_size)
        self.vshift = vshift
        self.batch_size = batch_size
        self.fold_batch_norm = fold_batch_norm
        self._folded = None  # (inference copy of the model, its 2-D video stream), made once
        if fold_batch_norm:
            self._folded_streams()  # start-up work, not per-clip work

    def _folded_streams(self):
        if self._folded is None:
            from ..models.optimization import inference_copy

            folded_model = inference_copy(self.model)
            self._folded = (folded_model, _FoldedVideoStream(folded_model))
        return self._folded

    def with_options(self, vshift: int | None = None, batch_size: int | None = None) -> "LSEScorer":
        """This scorer with other settings, sharing its model and its inference copy (no new copy of the weights)."""
        import copy

        if vshift is not None and vshift < 0:
            raise ValueError(f"vshift must be >= 0, got {vshift}")
        scorer = copy.copy(self)
        scorer.vshift = self.vshift if vshift is None else vshift
        scorer.batch_size = self.batch_size if batch_size is None else batch_size
        return scorer

    @classmethod
    def from_pretrained(cls, path_or_id, device="cpu", **kwargs) -> "LSEScorer":
        """Load a converted SyncNet folder (`talkface convert syncnet-lse ...`) or a Hub id."""
        from ..models.syncnet_lse import SyncNetLSEFeatureExtractor, SyncNetLSEModel
        from ..utils.sources import resolve_source

        path_or_id = resolve_source(path_or_id, what="SyncNet LSE model", hint=SYNCNET_CONVERT_HINT).location
        try:
            model = SyncNetLSEModel.from_pretrained(path_or_id)
        except (OSError, ValueError) as err:
            from ..errors import ModelLoadError

            raise ModelLoadError(
                f"cannot load a SyncNet LSE model from {path_or_id} ({str(err).splitlines()[0][:200]}); "
                + SYNCNET_CONVERT_HINT
            ) from err
        try:
            extractor = SyncNetLSEFeatureExtractor.from_pretrained(path_or_id)
        except OSError:
            extractor = None
        return cls(model.to(device), extractor, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def embed(self, face_frames: np.ndarray, audio_int16: np.ndarray, channel_order: str = "rgb"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-window (video, audio) embeddings, each (windows, dim), of a face clip (RGB unless `channel_order`
        says otherwise) and its int16 audio."""
        extractor = self.feature_extractor
        num_windows = extractor.num_windows(len(face_frames), len(audio_int16))
        if num_windows < 1:
            raise MediaError(
                f"clip too short for LSE: {len(face_frames)} frames and "
                f"{len(audio_int16) / extractor.sampling_rate:.2f}"
                f" s of audio give no 5-frame window (at least {extractor.video_window + 1} frames = "
                f"{(extractor.video_window + 1) / extractor.fps:.2f} s of both are needed)"
            )
        window = extractor.video_window
        mfcc = extractor.mfcc(audio_int16)
        audio_windows = extractor.audio_windows(mfcc, num_windows).to(self.device)
        if self.fold_batch_norm:
            model, video_stream = self._folded_streams()
        else:
            model = self.model
            video_stream = lambda pixels: model.get_video_embeddings(pixels)[0]  # noqa: E731
        audio_embeddings = torch.cat([
            model.get_audio_embeddings(audio_windows[i : i + 1024]) for i in range(0, num_windows, 1024)])
        video_embeddings = []
        for start in range(0, num_windows, self.batch_size):
            stop = min(start + self.batch_size, num_windows)
            # windows start..stop-1 read frames start..stop+window-2
            pixels = extractor.pixel_values(face_frames[start : stop + window - 1], channel_order=channel_order)
            video_embeddings.append(video_stream(pixels.to(self.device)))
        return torch.cat(video_embeddings).float().cpu(), audio_embeddings.float().cpu()

    def score_frames(self, face_frames: np.ndarray, audio: np.ndarray, sampling_rate: int = 16000,
                     channel_order: str = "rgb", start_frame: int = 0) -> SyncScore:
        """LSE of face frames (frames, H, W, 3) uint8 RGB at 25 fps and their audio (int16, or float in [-1, 1])."""
        if sampling_rate != self.feature_extractor.sampling_rate:
            raise MediaError(
                f"audio at {sampling_rate} Hz; SyncNet needs {self.feature_extractor.sampling_rate} Hz (read it with "
                f"talkface.media.read_audio(path, {self.feature_extractor.sampling_rate}))")
        video_embeddings, audio_embeddings = self.embed(face_frames, audio_to_int16_scale(audio), channel_order)
        return lse_from_embeddings(video_embeddings, audio_embeddings, self.vshift, start_frame)

    def score_video(self, video_path, audio_path=None, face_mode: str = "precropped",
                    tracking: TrackingOptions | None = None, face_backend=None, protocol: str = "default",
                    box=None) -> VideoSyncResult:
        """LSE of a video file with its own audio track (or `audio_path`); see `score_clip`.

        Frames are read on a 25 fps grid (the reference converts in-the-wild video to 25 fps too).
        `protocol="syncnet_python"` runs syncnet_python's whole procedure on the file instead
        (`talkface.metrics.syncnet_protocol`; face_mode and tracking do not apply): faces come from `box`
        (x1, y1, x2, y2) or from `face_backend`, which must then be an S3FD backend
        (`talkface.faces.S3FDFaceBackend`).
        """
        from .. import media

        if protocol == "syncnet_python":
            from .syncnet_protocol import SyncNetPythonOptions, SyncNetPythonProtocol

            return SyncNetPythonProtocol(self, face_backend, SyncNetPythonOptions(box=box)).score_video(
                video_path, audio_path=audio_path)
        if protocol != "default" or box is not None:
            raise TalkFaceUserError(f"protocol must be 'default' or 'syncnet_python' (box only with the latter), "
                                    f"got {protocol!r}")

        extractor = self.feature_extractor
        frames = media.read_frames(video_path, fps=extractor.fps)  # RGB (frames, H, W, 3)
        audio = media.read_audio(audio_path or video_path, sampling_rate=extractor.sampling_rate)
        return self.score_clip(frames, audio, face_mode=face_mode, tracking=tracking, face_backend=face_backend,
                               name=Path(video_path).name)

    def score_clip(self, frames_rgb, audio, face_mode: str = "precropped", tracking: TrackingOptions | None = None,
                   face_backend=None, name: str = "the video") -> VideoSyncResult:
        """LSE of RGB frames at 25 fps and their 16 kHz audio (int16, or float in [-1, 1]).

        In pre-cropped mode the whole frame is the face; in track mode each face track long enough is scored
        separately (`VideoSyncResult.tracks`) and the others are listed in `skipped_tracks`.
        """
        extractor = self.feature_extractor
        audio = audio_to_int16_scale(audio)
        if face_mode == "precropped":
            return VideoSyncResult(tracks=[self.score_frames(frames_rgb, audio, channel_order="rgb")])
        if face_mode != "track":
            raise TalkFaceUserError(f"unknown face mode {face_mode!r}; use 'precropped' or 'track'")
        tracking = tracking or TrackingOptions()
        tracks, skipped = find_face_tracks(frames_rgb, tracking, backend=face_backend)
        samples_per_frame = extractor.samples_per_video_frame
        scores = []
        for track in tracks:
            crops = crop_track(frames_rgb, track, tracking, size=extractor.image_size)
            # the reference cuts the audio to the track: [start / fps, (end + 1) / fps)
            first_sample = int(round(track.start * samples_per_frame))
            track_audio = audio[first_sample : int(round((track.end + 1) * samples_per_frame))]
            if extractor.num_windows(len(crops), len(track_audio)) < 1:
                skipped.append((track.start, track.end, "too little audio under the track for one window"))
                continue
            scores.append(self.score_frames(crops, track_audio, channel_order="rgb", start_frame=track.start))
        if not scores:
            reasons = "; ".join(f"frames {s}-{e}: {r}" for s, e, r in skipped) or "no face detected"
            raise NoFaceError(
                f"no face track to score in {name} ({reasons}); lower --min-track-frames / --min-face-size, or use "
                "--face-mode precropped for videos that are face crops"
            )
        return VideoSyncResult(tracks=scores, skipped_tracks=skipped)
