"""LSE-D / LSE-C exactly as syncnet_python prints them: its whole procedure on a video file (`--lse-protocol
syncnet_python`).

The reference (joonson/syncnet_python: `run_pipeline.py` then `run_syncnet.py`) does, step by step:

 1. `ffmpeg -i SRC -qscale:v 2 -async 1 -r 25 video.avi`: video to mpeg4 at q 2, audio to MP3 (LAME); the MP3
    encoder delay shifts the video timestamps by 1-2 frames, leaving a gap after frame 0;
 2. `ffmpeg -i video.avi -qscale:v 2 -threads 1 -f image2 %06d.jpg`: JPEG frames (the gap becomes a duplicate);
 3. `ffmpeg -i video.avi -ac 1 -vn -acodec pcm_s16le -ar 16000 audio.wav`: the MP3 decoded with its delay;
 4. S3FD (scale 0.25, threshold 0.9) on every JPEG, converted to RGB;
 5. scene cuts (PySceneDetect 0.5.1 ContentDetector) on the frames OpenCV decodes from video.avi;
 6. `track_shot` in every scene of at least `min_track` frames; tracks of more than `min_track` detections and a
    mean face over `min_face_size` px;
 7. `crop_video`: smoothed, padded square crops resized to 224, written by OpenCV's VideoWriter (XVID, mpeg4);
 8. the audio cut to the track (`ffmpeg -ss START -to END`, sample-exact on PCM);
 9. video and audio muxed (stream copy);
10. `ffmpeg -i crop.avi -threads 1 -f image2 %06d.jpg`: JPEGs at ffmpeg's default mjpeg rate control (no quality
    setting: the lossiest step);
11. the crop's audio re-extracted (bit-exact for its PCM);
12. `SyncNetInstance.evaluate`: MFCCs, SyncNet, distances, LSE.

Here steps 1-3 and 10 run the same ffmpeg command lines (pipes instead of files where the bytes are the same),
step 7's encoder is configured as OpenCV configures it (`syncnet_protocol_media`), steps 5-7 are the reference's
rules (`talkface.faces.syncnet_tracks`), S3FD is `talkface.models.s3fd`, batched, and `--box` replaces step 4 by
one fixed box for every frame. Steps 8, 9 and 11 change no sample or pixel and are done in memory. The result
equals syncnet_python's on the golden clips (tests/metrics/test_syncnet_protocol.py).
"""

from __future__ import annotations

import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MediaError, NoFaceError, TalkFaceUserError
from ..faces.syncnet_tracks import ContentSceneDetector, crop_face, crop_trajectory, track_shot
from . import syncnet_protocol_media as steps
from .sync_math import VideoSyncResult, lse_from_distances, sync_distances

logger = logging.getLogger(__name__)

#: `--lse-protocol`: talkface's own decode (face modes) or syncnet_python's procedure end to end
LSE_PROTOCOLS = ("default", "syncnet_python")


def validate_lse_box(box) -> tuple:
    """(x1, y1, x2, y2) floats with x2 > x1 and y2 > y1, or a one-line TalkFaceUserError."""
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not (values[2] > values[0] and values[3] > values[1]):
        raise TalkFaceUserError(f"--box must be X1 Y1 X2 Y2 with X2 > X1 and Y2 > Y1, got {list(box)}")
    return values


@dataclass
class SyncNetPythonOptions:
    """run_pipeline's settings (its defaults) and how the machine-dependent step 1 is pinned.

    facedet_scale / detection_threshold: S3FD's image scale and face score (run_pipeline: 0.25 and 0.9).
    crop_scale, min_track, num_failed_det, min_face_size: run_pipeline's flags (0.40, 100, 25, 100).
    scene_threshold / min_scene_len: ContentDetector's defaults (30, 15).
    smoothing_kernel: crop_video's median filter (13).
    convert_threads: encoder threads of step 1. syncnet_python leaves ffmpeg's "auto" (CPU cores + 1), so its
        video.avi, and its LSE, differ between machines; 3 is "auto" on the 2-core machine of the golden runs.
        "auto" reproduces the reference's own machine dependence.
    box: (x1, y1, x2, y2) in source pixels used on every frame instead of S3FD (as the goldens were made).
    keep_stages: keep every stage's arrays and checksums in the result (`stages`), to compare with a reference run.
    """

    facedet_scale: float = 0.25
    detection_threshold: float = 0.9
    crop_scale: float = 0.40
    min_track: int = 100
    num_failed_det: int = 25
    min_face_size: float = 100.0
    scene_threshold: float = 30.0
    min_scene_len: int = 15
    smoothing_kernel: int = 13
    convert_threads: int | str = steps.DEFAULT_CONVERT_THREADS
    box: tuple | None = None
    keep_stages: bool = False

    def __post_init__(self):
        if self.box is not None:
            self.box = validate_lse_box(self.box)
        if str(self.convert_threads) != "auto" and int(self.convert_threads) < 1:
            raise TalkFaceUserError(f"convert_threads must be 'auto' or >= 1, got {self.convert_threads!r}")


@dataclass
class SyncNetPythonResult(VideoSyncResult):
    """`VideoSyncResult` of the protocol, plus the tool versions, seconds per stage and (optionally) the stages."""

    versions: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    stages: dict | None = None
    num_frames: int = 0  # JPEG frames of step 2 (the frame numbering of the tracks)

    def to_dict(self, curves: bool = True) -> dict:
        out = super().to_dict(curves)
        out.update(protocol="syncnet_python", versions=dict(self.versions))
        return out


def protocol_settings(options: SyncNetPythonOptions | None = None, box=None, s3fd=None) -> dict:
    """What a syncnet_python-protocol result depends on besides the SyncNet: the options, the box or the S3FD
    model, and the encoder builds (an evaluation cache keys on these)."""
    import av

    options = options or SyncNetPythonOptions()
    settings = {k: v for k, v in options.__dict__.items() if k not in ("box", "keep_stages")}
    settings["box"] = list(box) if box is not None else (list(options.box) if options.box else None)
    settings["s3fd"] = None if settings["box"] else (str(s3fd) if s3fd else None)
    settings["ffmpeg"] = steps.ffmpeg_versions(steps.ffmpeg_binary())["libavcodec"]
    settings["crop_writer"] = ".".join(map(str, av.library_versions["libavcodec"]))
    return settings


class _Timer:
    def __init__(self):
        self.seconds = {}

    def add(self, name, start):
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def _detect_scenes(avi_path, options: SyncNetPythonOptions) -> tuple[list[tuple[int, int]], int]:
    detector = ContentSceneDetector(options.scene_threshold, options.min_scene_len)
    for frame in steps.iter_opencv_frames(avi_path):
        detector.push(frame)
    return detector.scenes(), detector.num_frames


def _detect_faces(jpegs: list[bytes], face_backend, options: SyncNetPythonOptions, needed, batch: int = 32
                  ) -> list[list[dict]]:
    """Per JPEG, run_pipeline's face list: {"frame", "bbox", "conf"} in the detector's order.

    The reference runs S3FD on every JPEG; only the frames in `needed` (those of scenes long enough to be tracked)
    are detected here, and a JPEG byte-identical to an earlier one (step 2's duplicates) reuses its faces: the
    lists the tracking reads are the same."""
    if options.box is not None:
        return [[{"frame": index, "bbox": list(options.box), "conf": 1.0}] for index in range(len(jpegs))]
    if face_backend is None or not hasattr(face_backend, "scored_boxes"):
        raise TalkFaceUserError(
            "--lse-protocol syncnet_python finds faces with S3FD: pass the S3FD model (--s3fd DIR, from `talkface "
            "convert s3fd --checkpoint sfd_face.pth --out DIR`) or one fixed face box with --box X1 Y1 X2 Y2")
    import cv2

    first_copy = {}  # JPEG bytes -> the first frame index with them
    to_detect = []
    for index in sorted(i for i in set(needed) if 0 <= i < len(jpegs)):
        if first_copy.setdefault(jpegs[index], index) == index:
            to_detect.append(index)
    found = {}
    for start in range(0, len(to_detect), batch):
        chunk = to_detect[start : start + batch]
        frames = [cv2.cvtColor(steps.decode_jpeg(jpegs[i]), cv2.COLOR_BGR2RGB) for i in chunk]
        rows = face_backend.scored_boxes(frames, scale=options.facedet_scale, threshold=options.detection_threshold)
        found.update(zip(chunk, rows))
    faces = [[] for _ in jpegs]
    for index in needed:
        if 0 <= index < len(jpegs):
            rows = found[first_copy[jpegs[index]]]
            faces[index] = [{"frame": index, "bbox": row[:4].tolist(), "conf": float(row[4])} for row in rows]
    return faces


def track_audio(audio: np.ndarray, first_frame: int, last_frame: int, frame_rate: int = steps.FRAME_RATE
                ) -> np.ndarray:
    """Step 8, `ffmpeg -i audio.wav -ss %.3f -to %.3f` with start first / 25 and end (last + 1) / 25 s: the
    samples [round(start * 16000), round(end * 16000)) of the PCM (ffmpeg's trim is sample-exact)."""
    start = float(f"{first_frame / frame_rate:.3f}")
    end = float(f"{(last_frame + 1) / frame_rate:.3f}")
    return audio[int(round(start * steps.SAMPLE_RATE)) : int(round(end * steps.SAMPLE_RATE))]


class SyncNetPythonProtocol:
    """syncnet_python's LSE procedure around an `LSEScorer` (and an S3FD face backend unless a box is given).

    Args:
        scorer: a `talkface.metrics.sync.LSEScorer` (the SyncNet and its MFCC features).
        face_backend: a face backend with `scored_boxes` (`talkface.faces.S3FDFaceBackend`); not needed with a box.
        options: `SyncNetPythonOptions`.
    """

    def __init__(self, scorer, face_backend=None, options: SyncNetPythonOptions | None = None):
        self.scorer = scorer
        self.face_backend = face_backend
        self.options = options or SyncNetPythonOptions()

    def score_video(self, video_path, box=None, audio_path=None) -> SyncNetPythonResult:
        """LSE of every face track of `video_path`, as run_syncnet prints them (one `SyncScore` per track).

        box: (x1, y1, x2, y2) in source pixels instead of S3FD (default: the options' box).
        audio_path: a separate speech file; it replaces the video's sound track (stream copy into a temporary
            .mkv) before the procedure starts, since syncnet_python reads one file.
        """
        options = self.options
        if box is not None:
            options = SyncNetPythonOptions(**{**options.__dict__, "box": box})
        video_path = Path(video_path)
        for path in (video_path, audio_path):
            if path is not None and not Path(path).is_file():
                raise MediaError(f"file not found: {path}; check the path")
        versions = steps.check_encoders()
        timer = _Timer()
        stages = {} if options.keep_stages else None
        with tempfile.TemporaryDirectory(prefix="talkface-syncnet-python-") as tmp:
            tmp = Path(tmp)
            started = time.perf_counter()
            if audio_path is not None:
                video_path = steps.mux_audio(video_path, audio_path, tmp / "input.mkv")
            avi = tmp / "video.avi"
            steps.convert_to_avi(video_path, avi, options.convert_threads)
            timer.add("convert", started)
            if not steps.has_audio_stream(avi):
                raise MediaError(f"{video_path.name} has no audio track; LSE compares the lips with the speech")
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=2) as pool:  # steps 3 and 5 run while step 2 does
                audio_job = pool.submit(steps.extract_audio, avi)
                scenes_job = pool.submit(_detect_scenes, avi, options)
                jpegs = steps.extract_jpegs(avi, 2, "extract the JPEG frames of the re-encoded video")
                audio = audio_job.result()
                scenes, num_avi_frames = scenes_job.result()
            timer.add("frames_audio_scenes", started)
            started = time.perf_counter()
            tracked_scenes = [(a, b) for a, b in scenes if b - a >= options.min_track]
            needed = sorted({i for a, b in tracked_scenes for i in range(a, b)})
            faces = _detect_faces(jpegs, self.face_backend, options, needed)
            timer.add("detect", started)
            if stages is not None:
                stages.update(n_pyframes=len(jpegs), n_avi_frames=num_avi_frames, scenes=scenes,
                              n_audio_avi_16k=len(audio), faces=[list(f) for f in faces],
                              pyframes_sum=np.array([int(steps.decode_jpeg(j).sum(dtype=np.int64)) for j in jpegs]),
                              audio_avi_16k=audio, tracks=[])
            tracks, skipped = [], []
            for scene_start, scene_end in scenes:
                if scene_end - scene_start >= options.min_track:
                    found, dropped = track_shot(faces[scene_start:scene_end], options.num_failed_det, options.min_track,
                                                options.min_face_size)
                    tracks += found
                    skipped += dropped
                else:
                    skipped.append((scene_start, scene_end - 1, f"scene of {scene_end - scene_start} frames; "
                                    f"syncnet_python tracks faces in scenes of at least min_track={options.min_track}"))
            scores = [self._score_track(track, jpegs, audio, tmp / f"{index:05d}t.avi", options, timer, stages)
                      for index, track in enumerate(tracks)]
        if not scores:
            reasons = "; ".join(f"frames {s}-{e}: {r}" for s, e, r in skipped) or "no face detected"
            raise NoFaceError(
                f"no face track to score in {video_path.name} with syncnet_python's rules ({reasons}); it needs a "
                f"face of more than {options.min_face_size:g} px in more than {options.min_track} frames "
                f"({(options.min_track + 1) / steps.FRAME_RATE:.2f} s); use the default --lse-protocol for shorter "
                "or smaller faces, or give the face with --box")
        return SyncNetPythonResult(tracks=scores, skipped_tracks=skipped, versions=versions, timings=timer.seconds,
                                   stages=stages, num_frames=len(jpegs))

    def _score_track(self, track, jpegs, audio, crop_path, options, timer, stages):
        started = time.perf_counter()
        trajectory = crop_trajectory(track.boxes, options.smoothing_kernel)
        writer = steps.OpenCVStyleXvidWriter(crop_path)
        crop_sums = []
        try:
            for k, frame_index in enumerate(track.frames):
                crop = crop_face(steps.decode_jpeg(jpegs[frame_index]), trajectory.x[k], trajectory.y[k],
                                 trajectory.s[k], options.crop_scale)
                writer.write(crop)
                if stages is not None:
                    crop_sums.append(int(crop.sum(dtype=np.int64)))
        finally:
            writer.close()
        timer.add("crop_xvid", started)
        started = time.perf_counter()
        crop_jpegs = steps.extract_jpegs(crop_path, None, "extract the JPEG frames of the face-crop video")
        frames = np.stack([steps.decode_jpeg(data) for data in crop_jpegs])
        samples = track_audio(audio, track.start, track.end)
        timer.add("crop_frames", started)
        started = time.perf_counter()
        scorer = self.scorer
        video_embeddings, audio_embeddings = scorer.embed(frames, samples, channel_order="bgr")
        distances = sync_distances(video_embeddings, audio_embeddings, scorer.vshift)
        score = lse_from_distances(distances, scorer.vshift, start_frame=track.start)
        timer.add("syncnet", started)
        if stages is not None:
            stages["tracks"].append({
                "first_last_len": (track.start, track.end, len(track.frames)), "bbox": track.boxes,
                "crop_x": trajectory.x, "crop_y": trajectory.y, "crop_s": trajectory.s,
                "crops_prexvid_sum": np.array(crop_sums),
                "xvid_yuv_sum": steps.decode_yuv420p(crop_path).sum(axis=1, dtype=np.int64),
                "frames_bgr": frames, "frames_sum": frames.reshape(len(frames), -1).sum(axis=1, dtype=np.int64),
                "audio_int16": samples, "mfcc": scorer.feature_extractor.mfcc(samples),
                "video_feat": video_embeddings.numpy(), "audio_feat": audio_embeddings.numpy(),
                "dists": distances.numpy()})
        return score
