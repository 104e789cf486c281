"""AV-HuBERT lip-sync scores: AVS_u, AVS_m and AVS_v.

Each score compares two sequences of AV-HuBERT transformer-encoder features (TE) frame by frame with the cosine
similarity (CS) and averages it over the clip:

    AVS_u = CS(TE(V_gen, 0), TE(0, A))         unsupervised: does the generated mouth "say" the audio?
    AVS_m = CS(TE(V_gen, A), TE(V_gt, A))      multimodal: with the audio given, does the generated video
                                               change the features like the real video does?
    AVS_v = CS(TE(V_gen, 0), TE(V_gt, 0))      visual: do the generated lips move like the real ones?

V_gen is the video under test, V_gt the real (reference) video, A the driving speech, and 0 the zero placeholder
AV-HuBERT uses for a missing modality. TE is the encoder's last layer with its final LayerNorm by default
(`output_layer=None`, what the reference `extract_finetune` returns); pass `output_layer=k` for layer k.

Videos are read at 25 fps and turned into mouth crops with the reference method (`talkface.faces.mouth_roi`);
the audio becomes stacked log filterbanks aligned to the video length as the reference does (zero rows appended
or rows dropped at the end). When a reference video is given and its length differs, both videos are cut to the
shorter one.

The five encoder views the three scores need are computed once each: each video's front end runs once, the audio
front end runs once, and all views go through the transformer as one batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MediaError, ModelLoadError, TalkFaceUserError
from ..faces.mouth_roi import MouthVideo, prepare_mouth_video
from ..hub import registry
from ..pipelines.loading import CONVERT_HINT, load_avhubert  # load_avhubert is importable from here too
from .base import AUDIO, GENERATED, REFERENCE, Metric, register_metric

logger = logging.getLogger(__name__)

AVS_METRICS = ("avs_u", "avs_m", "avs_v")
VIDEO_FPS = 25.0  # AV-HuBERT works on 25 fps video (one audio feature row per video frame)
DEFAULT_MAX_WINDOW_FRAMES = 1500  # 60 s; longer clips are encoded in windows (see AVSScorer)
DEFAULT_LANDMARK_STRIDE = 2  # landmarks on every other frame (see AVSScorer)

# A view is one encoder pass: (which video, or None for the zero placeholder; whether the audio is given).
METRIC_VIEWS = {
    "avs_u": ((GENERATED, False), (None, True)),
    "avs_m": ((GENERATED, True), (REFERENCE, True)),
    "avs_v": ((GENERATED, False), (REFERENCE, False)),
}
METRIC_NEEDS = {"avs_u": {"audio"}, "avs_m": {"audio", "reference"}, "avs_v": {"reference"}}

@dataclass
class AVSResult:
    """Scores of one video.

    scores: metric -> mean cosine similarity over the clip (in [-1, 1]; higher is better).
    curves: metric -> (num_frames,) per-frame cosine similarity.
    num_frames: frames scored (25 fps).
    skipped: metric -> why it was not computed (e.g. no reference video).
    timings: seconds per stage, summed over videos: "decode", "landmarks", "roi", "audio" (filterbanks) and
        "encoder" (all AV-HuBERT work), of which "video_frontend" is the ResNet part.
    """

    scores: dict
    curves: dict
    num_frames: int
    skipped: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    video: str | None = None
    reference: str | None = None
    audio: str | None = None

    def to_dict(self, curves: bool = False) -> dict:
        data = {"video": self.video, "audio": self.audio, "reference": self.reference,
                "num_frames": self.num_frames, "scores": {k: float(v) for k, v in self.scores.items()},
                "skipped": dict(self.skipped)}
        if curves:
            data["curves"] = {k: [round(float(x), 6) for x in v] for k, v in self.curves.items()}
        return data


def cosine_similarity_curve(features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
    """Per-frame cosine similarity of two (frames, dim) feature sequences -> (frames,)."""
    if features_a.shape != features_b.shape:
        raise ValueError(f"feature shapes differ: {tuple(features_a.shape)} vs {tuple(features_b.shape)}")
    return F.cosine_similarity(features_a, features_b, dim=-1, eps=1e-8)


def resolve_metrics(metrics) -> tuple[str, ...]:
    """Validate metric names (a sequence or a comma-separated string); keeps the canonical order."""
    if isinstance(metrics, str):
        metrics = [m for m in metrics.replace(" ", "").split(",") if m]
    names = [m.lower() for m in metrics]
    unknown = sorted(set(names) - set(AVS_METRICS))
    if unknown or not names:
        raise TalkFaceUserError(f"unknown AVS metric(s) {', '.join(unknown) or '(none)'}; choose from "
                                f"{', '.join(AVS_METRICS)}")
    return tuple(m for m in AVS_METRICS if m in names)


class AVSScorer:
    """Computes AVS scores with one AV-HuBERT encoder.

    Args:
        model: an `AVHubertModel` or `AVHubertForLipReading` (its encoder is used), in eval mode.
        feature_extractor: the model's `AVHubertFeatureExtractor` (defaults to the reference preprocessing).
        face_backend: face backend name or object for the mouth crops ("mediapipe" by default).
        output_layer: None = last layer with the final LayerNorm (default), or k = output of layer k.
        landmark_stride: detect landmarks on every n-th frame and interpolate between (1 = every frame). The
            default 2 halves the landmark cost (bench_avs: real-time factor 0.54 -> 0.38 on 2 cores) and moves the
            mouth crops by 1.9 grey levels on average (mediapipe vs the reference's dlib landmarks: 6.7).
        landmark_max_side: downscale frames whose longer side is larger before landmark detection.
        max_window_frames: clips longer than this are encoded in equal windows of at most this many frames
            (bounds the attention memory; the reference encodes whole utterances).
        frontend_chunk_frames: frames per video front-end pass (exact: chunks overlap by the 3-D convolution's reach).
        fuse_video_frontend: fold BatchNorm into the convolutions for speed (see `_inference_video_frontend`).
    """

    def __init__(self, model, feature_extractor=None, face_backend="mediapipe", output_layer: int | None = None,
                 landmark_stride: int = DEFAULT_LANDMARK_STRIDE, landmark_max_side: int | None = None,
                 max_window_frames: int = DEFAULT_MAX_WINDOW_FRAMES, frontend_chunk_frames: int = 128,
                 fuse_video_frontend: bool = True):
        from ..models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor

        # a lip-reading model scores with its encoder
        encoder = model if hasattr(model, "forward_video_frontend") else getattr(model, "avhubert", model)
        if not all(hasattr(encoder, name) for name in ("forward_video_frontend", "fuse_features", "encoder")):
            raise ModelLoadError(f"{type(model).__name__} is not an AV-HuBERT model; load one with load_avhubert()")
        num_layers = encoder.config.encoder_layers
        if output_layer is not None and not 1 <= output_layer <= num_layers:
            raise TalkFaceUserError(f"output layer {output_layer} is out of range; the model has layers "
                                    f"1..{num_layers} (or use the default: last layer with its final LayerNorm)")
        if landmark_stride < 1 or max_window_frames < 1 or frontend_chunk_frames < 1:
            raise ValueError("landmark_stride, max_window_frames and frontend_chunk_frames must be >= 1")
        self.encoder = encoder.eval()
        self.feature_extractor = feature_extractor or AVHubertFeatureExtractor()
        if abs(self.feature_extractor.fps - VIDEO_FPS) > 1e-6:
            raise ValueError(f"the feature extractor expects {self.feature_extractor.fps} fps; AVS uses {VIDEO_FPS}")
        self.face_backend = face_backend
        self.output_layer = output_layer
        self.landmark_stride = landmark_stride
        self.landmark_max_side = landmark_max_side
        self.max_window_frames = max_window_frames
        self.frontend_chunk_frames = frontend_chunk_frames
        self.fuse_video_frontend = fuse_video_frontend
        self._fast_video_frontend = None
        self._inference_video_frontend()  # built now: start-up work, not per-video work

    @classmethod
    def from_pretrained(cls, path_or_id, device="cpu", **kwargs) -> "AVSScorer":
        model, feature_extractor = load_avhubert(path_or_id, device=device)
        return cls(model, feature_extractor, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    # -- inputs -----------------------------------------------------------------------------------------------------

    def _face_backend(self):
        # build a named backend once and reuse it for every video
        if isinstance(self.face_backend, str):
            from ..faces.backends import get_face_backend

            self.face_backend = get_face_backend(self.face_backend)
        return self.face_backend

    def prepare_video(self, video) -> MouthVideo:
        """A path, (T, H, W, 3) uint8 RGB frames at 25 fps, (T, 88, 88) float mouth input, or a `MouthVideo`."""
        if isinstance(video, MouthVideo):
            return video
        if isinstance(video, (np.ndarray, torch.Tensor)) and video.ndim == 3 and np.asarray(video).dtype != np.uint8:
            crop = self.feature_extractor.image_crop_size
            mouths = np.asarray(video, dtype=np.float32)
            if mouths.shape[1:] != (crop, crop):
                raise ValueError(f"mouth input must be (T, {crop}, {crop}), got {mouths.shape}")
            return MouthVideo(mouths=mouths, landmarks=None, detected=np.ones(len(mouths), bool))
        if isinstance(video, (str, Path)) and not Path(video).is_file():
            raise MediaError(f"video not found: {video}; check the path")
        extractor = self.feature_extractor
        return prepare_mouth_video(video, self._face_backend(), fps=VIDEO_FPS, landmark_stride=self.landmark_stride,
                                   landmark_max_side=self.landmark_max_side, crop_size=extractor.image_crop_size,
                                   image_mean=extractor.image_mean, image_std=extractor.image_std)

    def audio_features(self, audio, num_frames: int) -> torch.Tensor:
        """Speech (path or 16 kHz float waveform) -> (1, 104, num_frames) features aligned to the video."""
        sampling_rate = self.feature_extractor.sampling_rate
        if isinstance(audio, (str, Path)):
            from ..media import read_audio

            audio = read_audio(audio, sampling_rate)
        waveform = np.asarray(audio, dtype=np.float32)
        features = self.feature_extractor(waveform, sampling_rate=sampling_rate, num_video_frames=num_frames)
        return features["audio_features"].to(self.device)

    # -- encoder ----------------------------------------------------------------------------------------------------

    def _inference_video_frontend(self):
        """The video front end prepared for fast CPU inference (built once, when the scorer is made).

        An inference copy (`talkface.models.optimization.inference_copy`): the BatchNorms of the 3-D stem and the
        ResNet blocks folded into the convolutions before them and channels-last convolution weights; about
        twice as fast on CPU and equal to the original within float rounding (~1e-6 relative). The encoder's own
        front end is not changed; it is used as is when `fuse_video_frontend` is False or it is in training mode.
        """
        if self._fast_video_frontend is None:
            frontend = self.encoder.feature_extractor_video
            if not self.fuse_video_frontend or frontend.training:
                self._fast_video_frontend = frontend
            else:
                from ..models.optimization import inference_copy

                self._fast_video_frontend = inference_copy(frontend)
        return self._fast_video_frontend

    @torch.inference_mode()
    def video_embeddings(self, mouths: np.ndarray) -> torch.Tensor:
        """(T, 88, 88) mouth input -> (1, D, T) video front-end output, computed in chunks of frames.

        Only the 3-D convolution stem mixes neighbouring frames (the ResNet trunk works per frame), so each chunk
        is given the stem's temporal reach of context on both sides and gives exactly the full-clip result.
        """
        frontend = self._inference_video_frontend()
        reach = self.encoder.feature_extractor_video.resnet.frontend3D[0].kernel_size[0] // 2
        video = torch.from_numpy(np.ascontiguousarray(mouths)).to(self.device)[None, None]  # (1, 1, T, H, W)
        num_frames, chunk = video.shape[2], self.frontend_chunk_frames
        outputs = []
        for start in range(0, num_frames, chunk):
            stop = min(start + chunk, num_frames)
            lo, hi = max(0, start - reach), min(num_frames, stop + reach)
            embeddings = frontend(video[:, :, lo:hi])  # (1, D, hi - lo)
            outputs.append(embeddings[:, :, start - lo : start - lo + (stop - start)])
        return torch.cat(outputs, dim=2)

    @torch.inference_mode()
    def encode_views(self, video_embeddings: dict, audio_features: torch.Tensor | None, views) -> dict:
        """Encoder features (T, D) of each view, all views in one batch (windowed for very long clips).

        Args:
            video_embeddings: video name -> (1, D, T) front-end output.
            audio_features: (1, 104, T) or None.
            views: (video name or None, with_audio) pairs.
        """
        views = list(dict.fromkeys(views))
        audio_embeddings = None
        if audio_features is not None:
            audio_embeddings = self.encoder.forward_audio_frontend(audio_features)  # (1, D, T)
        reference_embeddings = next(iter(video_embeddings.values()), audio_embeddings)
        zeros = torch.zeros_like(reference_embeddings)
        fused = []
        for video_name, with_audio in views:
            video_part = video_embeddings[video_name] if video_name is not None else zeros
            audio_part = audio_embeddings if with_audio else zeros
            fused.append(self.encoder.fuse_features(audio_part, video_part))  # (1, T, D)
        fused = torch.cat(fused, dim=0)  # (views, T, D)
        num_frames = fused.shape[1]
        num_windows = -(-num_frames // self.max_window_frames)
        bounds = np.linspace(0, num_frames, num_windows + 1).round().astype(int)
        if num_windows > 1:
            logger.info("encoding %d frames in %d windows of at most %d", num_frames, num_windows,
                        self.max_window_frames)
        outputs = [self.encoder.encoder(fused[:, lo:hi], None, output_layer=self.output_layer)[0]
                   for lo, hi in zip(bounds[:-1], bounds[1:])]
        features = torch.cat(outputs, dim=1)  # (views, T, D)
        return {view: features[index] for index, view in enumerate(views)}

    # -- scoring ----------------------------------------------------------------------------------------------------

    def score(self, video, audio=None, reference=None, metrics=AVS_METRICS) -> AVSResult:
        """AVS scores of `video`.

        Args:
            video: the video to score: a path or frames (see `prepare_video`).
            audio: the driving speech (path or 16 kHz float waveform); defaults to the video's own sound track.
            reference: the real video (path or frames) for AVS_m and AVS_v; they are skipped without it.
            metrics: names or a comma-separated string.
        """
        metrics = resolve_metrics(metrics)
        skipped = {}
        if reference is None:
            for metric in metrics:
                if "reference" in METRIC_NEEDS[metric]:
                    skipped[metric] = "needs a reference video (--reference)"
        wanted = [m for m in metrics if m not in skipped]
        needs_audio = any("audio" in METRIC_NEEDS[m] for m in wanted)
        if needs_audio and audio is None:
            if not isinstance(video, (str, Path)):
                raise TalkFaceUserError("no audio given; pass the driving speech (audio=... or --audio)")
            audio = video
        if needs_audio and isinstance(audio, (str, Path)):
            # check for a sound track before the expensive video work
            from ..media import probe

            if not probe(audio).has_audio:
                fix = "pass the driving speech with --audio" if audio is video else "pass a file with sound"
                raise MediaError(f"{audio} has no sound track; {fix}")
        timings = {}

        def timed(stage, function, *args):
            started = time.perf_counter()
            value = function(*args)
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - started
            return value

        videos = {GENERATED: self._prepared(video, timings)}
        if reference is not None and any("reference" in METRIC_NEEDS[m] for m in wanted):
            videos[REFERENCE] = self._prepared(reference, timings)
        num_frames = min(v.num_frames for v in videos.values())
        if len({v.num_frames for v in videos.values()}) > 1:
            logger.warning("the video has %d frames and the reference %d; scoring the first %d",
                           videos[GENERATED].num_frames, videos[REFERENCE].num_frames, num_frames)

        audio_features = timed("audio", self.audio_features, audio, num_frames) if needs_audio else None
        views = [view for metric in wanted for view in METRIC_VIEWS[metric]]
        used_videos = {name for name, _ in views if name is not None}
        started = time.perf_counter()
        embeddings = {name: self.video_embeddings(videos[name].mouths[:num_frames]) for name in used_videos}
        timings["video_frontend"] = time.perf_counter() - started
        features = self.encode_views(embeddings, audio_features, views)
        timings["encoder"] = time.perf_counter() - started  # front ends + transformer

        scores, curves = {}, {}
        for metric in wanted:
            view_a, view_b = METRIC_VIEWS[metric]
            curve = cosine_similarity_curve(features[view_a], features[view_b]).float().cpu().numpy()
            curves[metric] = curve
            scores[metric] = float(curve.mean())
        return AVSResult(scores=scores, curves=curves, num_frames=num_frames, skipped=skipped, timings=timings,
                         video=_describe(video), reference=_describe(reference), audio=_describe(audio))

    __call__ = score

    def _prepared(self, video, timings) -> MouthVideo:
        prepared = self.prepare_video(video)
        for stage, seconds in prepared.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
        if prepared.num_frames < 1:
            raise MediaError(f"{_describe(video)} has no frames; pass a video")
        return prepared


def _describe(source) -> str | None:
    if source is None:
        return None
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__}>"


def score_avs(video, audio=None, reference=None, model=None, metrics=AVS_METRICS,
              face_backend="mediapipe", output_layer: int | None = None, **scorer_kwargs) -> AVSResult:
    """AVS_u / AVS_m / AVS_v of one video (see the module docstring for the definitions).

    Args:
        video: path or (T, H, W, 3) uint8 RGB frames at 25 fps.
        audio: driving speech (path or 16 kHz waveform); defaults to the video's own track.
        reference: the real video, needed by AVS_m and AVS_v (skipped without it, see `AVSResult.skipped`).
        model: an `AVSScorer`, an AV-HuBERT model instance, or a model folder / Hub id for `load_avhubert`.
        metrics: which scores, e.g. ("avs_u",) or "avs_u,avs_v".
        face_backend: face backend for the mouth crops.
        output_layer: None (last layer + final LayerNorm) or a layer number.

    Returns:
        `AVSResult` with `scores`, per-frame `curves` and `num_frames`.
    """
    if model is None:
        raise ModelLoadError("score_avs needs an AV-HuBERT model (model=folder, Hub id or model instance); "
                             + CONVERT_HINT.format(path="avhubert-base"))
    if isinstance(model, AVSScorer):
        scorer = model
    elif isinstance(model, torch.nn.Module):
        scorer = AVSScorer(model, face_backend=face_backend, output_layer=output_layer, **scorer_kwargs)
    else:
        scorer = AVSScorer.from_pretrained(model, face_backend=face_backend, output_layer=output_layer,
                                           **scorer_kwargs)
    return scorer.score(video, audio=audio, reference=reference, metrics=metrics)


# ----------------------------------------------------------------------------------------------------------------
# The metric of `talkface evaluate`
# ----------------------------------------------------------------------------------------------------------------

AVHUBERT_HINT = (
    "run `talkface download avhubert-base --accept-license` (the default --avhubert), or convert an AV-HuBERT "
    "checkpoint with `talkface convert avhubert --checkpoint base_vox_iter5.pt --out DIR` and pass --avhubert DIR "
    "(or set TALKFACE_AVHUBERT)"
)


@register_metric
class AVSMetric(Metric):
    """AVS_u / AVS_m / AVS_v of the generated video; AVS_m and AVS_v also use the reference video when there is
    one (they are left out, with the reason in details["skipped"], when there is none).

    Options read: avhubert (the model), face_backend (mouth crops), avs_layer, avs_landmark_stride, device.
    """

    name = "avs"
    fields = AVS_METRICS
    needs = frozenset({GENERATED, AUDIO})
    uses = frozenset({REFERENCE})
    field_needs = {"avs_m": frozenset({REFERENCE}), "avs_v": frozenset({REFERENCE})}
    aggregate = "mean"
    higher_is_better = {"avs_u": True, "avs_m": True, "avs_v": True}
    description = "AV-HuBERT lip-sync scores (cosine similarities; AVS_u needs no reference)"
    field_help = {
        "avs_u": "AVS_u: AV-HuBERT lips-vs-audio similarity, higher is better",
        "avs_m": "AVS_m: AV-HuBERT similarity to the ground truth (audio-visual), higher is better",
        "avs_v": "AVS_v: AV-HuBERT similarity to the ground truth (visual), higher is better",
    }
    curve_labels = {"avs_u": "AVS_u cosine", "avs_m": "AVS_m cosine", "avs_v": "AVS_v cosine"}
    model_option = "avhubert"
    model_env = "TALKFACE_AVHUBERT"
    model_hint = AVHUBERT_HINT
    default_model = registry.DEFAULT_AVHUBERT

    def load_model(self, source, options):
        """(model, feature_extractor), the heavy part; `bind_model` makes the scorer around it."""
        if source is None:
            return super().load_model(source, options)
        return load_avhubert(source, device=options.device)

    def bind_model(self, model, context):
        """An `AVSScorer` around the loaded AV-HuBERT with this run's face backend (backends hold state)."""
        avhubert, feature_extractor = model
        options = context.options
        return AVSScorer(avhubert, feature_extractor, face_backend=context.face_backend(),
                         output_layer=options.avs_layer, landmark_stride=options.avs_landmark_stride)

    def needs_face_backend(self, options) -> bool:
        return True

    def settings(self, options) -> dict:
        settings = {"face_backend": options.face_backend}
        # added later: in the key only when changed, so results cached with the defaults stay valid
        if options.avs_layer is not None:
            settings["output_layer"] = options.avs_layer
        if options.avs_landmark_stride != DEFAULT_LANDMARK_STRIDE:
            settings["landmark_stride"] = options.avs_landmark_stride
        return settings

    def compute(self, media, context) -> dict:
        reference = media.reference_frames if media.pair.reference is not None else None
        result = score_avs(media.generated_frames, audio=media.audio, reference=reference, model=context.model(self))
        return {"values": {k: float(v) for k, v in result.scores.items()}, "num_frames": int(result.num_frames),
                "details": {"skipped": dict(result.skipped)},
                "curves": {k: np.asarray(v, dtype=float).tolist() for k, v in result.curves.items()}}
