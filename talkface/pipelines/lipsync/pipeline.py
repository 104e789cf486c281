"""`LipSyncPipeline`: a face video (or photo) + a speech recording -> a lip-synced mp4.

    pipeline = LipSyncPipeline.from_pretrained("wav2lip-gan")   # a registry name, a folder or a Hub id
    result = pipeline(face="face.mp4", audio="speech.wav", out="result.mp4")

Everything streams in bounded chunks: frames are decoded on a constant fps grid, the tracked face of each frame is
found a few frames ahead (detection + smoothing), faces are generated in batches, pasted back and encoded straight
away. Memory does not grow with the video's length.

Options (frame rate, batch size, face choice, pads, duration policy, blending, detection stride, face backend)
are one `LipSyncOptions` (options.py), which holds their defaults and checks them; a call takes an `options=`
object and/or keyword overrides of its fields.

Timing: the audio is decoded at the generator's `sampling_rate`; the output has the generator's
`num_video_frames` for the audio (ceil(audio_seconds * fps), at least one: every bit of sound has a frame) and
carries the audio, so it lasts as long as the audio within one frame. Video frame i is driven by audio frame i
(`PreparedAudio.per_frame[i]`). When the audio outlasts the video, `duration_policy` decides how the video
continues:
  * "pingpong" (default): forward, then backward, then forward again, ... (no jump at the turns);
  * "loop": from the start again;
  * "cut": the output stops with the video and the audio is cut to match.
A photo is held for the whole audio. A video longer than the audio is cut to the audio's length.

The generator sees each face crop as float RGB [0, 1] (batch, 3, S, S): the pose input with its lower half
zeroed, and the same crop unmasked as the identity reference (as Wav2Lip's inference does). With `align_roll`
(default) and landmarks, the crop is the face box turned upright by the head's roll (its eye line), and the
generated face is turned back when pasted, so a tilted or sideways head gets its mouth redrawn in place; the
default `blend="feather"` pastes only the lower face inside the jaw line (talkface.faces.blending). The tracker
fits landmarks whenever the paste-back uses them; frames without landmarks get the box mask, unrotated (logged).

Precision (`precision.py`): `from_pretrained(..., precision="auto")` loads the generator on the exact fp32 path
(BatchNorms folded, channels-last) and runs it in fp32, bf16 (autocast), fp16 or int8; `auto` picks fp16 on CUDA,
bf16 on a CPU with native bf16 and fp32 otherwise. The mode is logged, returned and written into the metadata.

Hooks (for other parts of talkface; both optional):
  * `enhancer(frame_rgb, face) -> frame_rgb`: applied after paste-back to frames with a face (GFPGAN); `face` is
    the tracker's `FaceDetection` for the frame: its box and, when the tracker fitted them, its 68 landmarks
    (the pipeline asks the tracker for landmarks whenever an enhancer is installed, so it need not detect again).
  * `watermarker(frame_rgb, frame_index) -> frame_rgb`: applied last to every frame the generator redrew (frames
    without a face are the source's own pixels and pass through untouched). `from_pretrained` installs the
    talkface invisible watermark (watermark.py) by default, and every output carries container tags naming
    talkface and the model (`generation_metadata`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ... import media
from ...errors import MediaError, NoFaceError
from ...faces.backends import FaceBackend
from ...faces.blending import paste_face
from ...faces.roll import crop_face_aligned, roll_angle
from ...faces.tracking import FaceTracker
from ...hub.registry import DEFAULT_ENHANCER
from ...utils import io as safe_io
from ...utils.devices import resolve_device
from ...utils.sources import model_display_name
from .execution import (Part, Row, RowOutcome, Step, generate_parts, resolve_batch_files, resolve_overlap,
                        run_stages)
from .frames import frame_schedule, source_stream
from .generator import LipSyncGenerator, load_generator
from .options import DURATION_POLICIES, InvalidInputError, LipSyncOptions, default_batch_size
from .precision import DEFAULT_PRECISION, check_precision, resolve_precision
from .watermark import generation_metadata

LEGACY_ENHANCER_FOLDER = "models/gfpgan-v1.4"  # the default before registry names; still used when present

logger = logging.getLogger(__name__)

#: frames in a row's first generator call (then `batch_size`): its first frame comes out sooner (issue 14). 2, not
#: 1: oneDNN's fp32 convolutions give batches of 1 other rounding than larger ones, batches of 2 and more agree
#: (tests/pipelines/test_first_batch.py). 2 against 4: ~0.15 s sooner to the first frame on a 2-core CPU.
FIRST_BATCH_SIZE = 2


@dataclass
class LipSyncOutput:
    """What a pipeline call produced.

    Attributes:
        out_path: the written mp4.
        num_frames: frames in the output video.
        frames_without_face: output frames passed through unchanged because no face was found in them.
        fps: output frame rate.
        duration: output video length in seconds (num_frames / fps).
        audio_duration: length of the audio track in the output, in seconds.
        source_frames: frames of the face input on the fps grid (1 for a photo).
        options: the options the call ran with.
        precision: the generator's numeric precision ("fp32", "bf16", "fp16" or "int8").
    """

    out_path: Path
    num_frames: int
    frames_without_face: int
    fps: float
    duration: float
    audio_duration: float
    source_frames: int
    options: LipSyncOptions | None = None
    precision: str = "fp32"


def check_lipsync_inputs(face, audio, out, options: LipSyncOptions | None = None, **overrides):
    """Validate a pipeline call before any work starts; raise a `TalkFaceUserError` that names the fix.

    The options are checked by `LipSyncOptions` itself (when made, or here from `overrides`); this checks that the
    face input has a picture, the audio input has sound, the output can be written, and that a forced box fits the
    frame. Returns (face MediaInfo, audio MediaInfo, the options).
    """
    options = (options or LipSyncOptions()).replace(**overrides)
    face_info = media.probe(face)
    if not face_info.has_video:
        raise MediaError(f"{face} has no video stream; pass a face video or a photo as the face input")
    audio_info = media.probe(audio)
    if not audio_info.has_audio:
        raise MediaError(f"{audio} has no audio stream; pass a speech recording (wav, mp3, ...) or a video with "
                         "sound as the audio input")
    media.check_writable(out, inputs={"--face": face, "--audio": audio})  # never overwrite an input
    if Path(out).suffix.lower() != ".mp4":
        raise MediaError(f"output {out} must be an .mp4 file; give an output path ending in .mp4")
    options.check_frame_size(face_info.width, face_info.height)
    return face_info, audio_info, options


class LipSyncPipeline:
    """Lip-sync a face video or photo to a speech recording with any `LipSyncGenerator`.

    Args:
        generator: the generator adapter (e.g. from `load_generator`).
        enhancer / watermarker: optional hooks, see the module docstring.
        model_name: how the output's metadata names the model.
        frame_cache_bytes: when the duration policy revisits video frames, a video whose decoded frames fit in
            this many bytes is kept in memory instead of being decoded again.
        options: the default `LipSyncOptions` of this pipeline's calls.
        precision: how the generator computes: "fp32" (as loaded), "bf16" / "fp16" (autocast around the generator
            on the CPU; `from_pretrained` casts the weights to fp16 on CUDA) or "int8" (a generator quantized by
            `from_pretrained`); never "auto" here (`from_pretrained` resolves it).
        **option_defaults: `LipSyncOptions` fields changed on top of `options` (e.g. `face_backend=`,
            `detect_every=`).
    """

    def __init__(self, generator: LipSyncGenerator, enhancer: Callable | None = None,
                 watermarker: Callable | None = None, model_name: str | None = None,
                 frame_cache_bytes: int = 512 * 2**20, options: LipSyncOptions | None = None,
                 precision: str = "fp32", **option_defaults):
        if check_precision(precision) == "auto":
            raise InvalidInputError("LipSyncPipeline needs a resolved precision; use from_pretrained(precision='auto')")
        self.generator = generator
        self.precision = precision
        self.precision_reason = "requested"
        self.enhancer = enhancer
        self.watermarker = watermarker
        # never a full local path: a registry name, a Hub id or the folder's base name (utils/sources.py)
        self.model_name = model_display_name(model_name) or type(generator.model).__name__
        self.frame_cache_bytes = frame_cache_bytes
        self.options = (options or LipSyncOptions()).replace(**option_defaults)
        self._backends: dict[str, FaceBackend] = {}  # face backends this pipeline built, by name

    @classmethod
    def from_pretrained(cls, model, device="auto", precision: str = DEFAULT_PRECISION, dtype: torch.dtype | None = None,
                        enhance: str | None = None, enhance_model=None, watermark: bool = True,
                        **kwargs) -> "LipSyncPipeline":
        """Load the generator of a model folder or Hub id, optimised for inference, in `precision`.

        precision: "auto" (fp16 on CUDA, bf16 on a CPU with native bf16, else fp32), "fp32", "bf16", "fp16" or
        "int8" (see precision.py); `dtype` (torch.float32 / bfloat16 / float16), if given, names the precision
        instead. enhance: "gfpgan" to restore each generated face with GFPGAN v1.4 (weights from `enhance_model`,
        a folder, Hub id or the original GFPGANv1.4.pth); watermark: embed the talkface watermark in generated
        frames. Other keyword arguments go to the constructor (`options=`, `LipSyncOptions` fields, hooks, ...).
        """
        device = resolve_device(device)
        if dtype is not None:
            precision = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
        precision, reason = resolve_precision(precision, device.type)
        logger.info("generator precision: %s (%s)", precision, reason)
        if enhance and enhance != "none" and "enhancer" not in kwargs:
            from .enhancer import load_enhancer

            enhance_model = enhance_model or os.environ.get("TALKFACE_GFPGAN") or (
                LEGACY_ENHANCER_FOLDER if os.path.isdir(LEGACY_ENHANCER_FOLDER) else DEFAULT_ENHANCER)
            kwargs["enhancer"] = load_enhancer(enhance, enhance_model, device=device)
        if watermark and "watermarker" not in kwargs:
            from .watermark import Watermarker

            kwargs["watermarker"] = Watermarker().embed
        generator = load_generator(model)
        generator.to(device=device)
        generator.optimize_for_inference()
        if precision == "fp16" and device.type != "cpu":
            generator.to(dtype=torch.float16)  # GPUs run half-precision weights natively
        elif precision == "int8":
            from .quantization import quantize_generator

            quantize_generator(generator)
        pipeline = cls(generator, model_name=kwargs.pop("model_name", model_display_name(model)), precision=precision, **kwargs)
        pipeline.precision_reason = reason
        return pipeline

    @property
    def device(self) -> torch.device:
        return self.generator.device

    @property
    def face_backend(self):
        """The default options' face backend: the built instance once a call has used it, else its name."""
        backend = self.options.face_backend
        return backend if isinstance(backend, FaceBackend) else self._backends.get(backend, backend)

    def _backend(self, options: LipSyncOptions) -> FaceBackend:
        backend = options.face_backend
        if isinstance(backend, FaceBackend):
            return backend
        if backend not in self._backends:
            from ...faces.backends import get_face_backend

            self._backends[backend] = get_face_backend(backend)
        return self._backends[backend]

    def close(self):
        """Release the native resources of the face backends this pipeline built (it builds them again if used)."""
        backends, self._backends = self._backends, {}
        for backend in backends.values():
            backend.close()

    # ------------------------------------------------------------------------------------------------------
    def check_inputs(self, face, audio, out, options: LipSyncOptions | None = None, **overrides):
        """Validate everything before any work starts (see `check_lipsync_inputs`); the pipeline's options are the
        defaults. Returns (face MediaInfo, audio MediaInfo, options)."""
        return check_lipsync_inputs(face, audio, out, options or self.options, **overrides)

    # ------------------------------------------------------------------------------------------------------
    def __call__(self, face, audio, out, options: LipSyncOptions | None = None, *,
                 progress: bool | Callable = True, metadata: dict | None = None, **overrides) -> LipSyncOutput:
        """Write the lip-synced video to `out` (an .mp4) and return a `LipSyncOutput`.

        Args:
            face: face video or photo. audio: any file with an audio stream. out: output .mp4 path.
            options: a `LipSyncOptions` (default: the pipeline's); `overrides` change some of its fields, e.g.
                `fps=30, duration_policy="loop"` (see `LipSyncOptions` for every field and its default).
            progress: True for a tqdm bar, False for none, or a callable(done_frames, total_frames).
            metadata: extra container tags.
        Raises:
            MediaError / NoFaceError / InvalidInputError for bad input; nothing is left at `out` on any failure.
        """
        face_info, _, options = self.check_inputs(face, audio, out, options, **overrides)
        row = Row(face, audio, out, options, metadata, progress, face_info)
        self._run_rows([row], batch_files=1, overlap=options.overlap)
        if row.error is not None:
            raise row.error
        return row.result

    def generate_many(self, requests, batch_files="auto", overlap: str | None = None,
                      progress: bool | Callable = False) -> list[RowOutcome]:
        """Lip-sync many files with this pipeline, `batch_files` of them in flight at once: each file in flight
        gives its next batch of face crops to one shared generator call (cross-file batching; execution.py).

        Args:
            requests: dicts with the keys face, audio, out and optionally options (a `LipSyncOptions`, default
                the pipeline's) and metadata, as a call takes them.
            batch_files: files in flight (1: one after the other), or "auto" (more than one only on CUDA).
            overlap: "auto" / "on" / "off" (execution.py); None: the pipeline's default options say.
            progress: for every file, as a call's `progress`.
        Returns one `RowOutcome` per request, in order: its `LipSyncOutput`, or the exception that ended it (one
        bad file never stops the others; a signal or KeyboardInterrupt does). Every file is written exactly as
        one call writes it (the generator's values may move by float rounding where the batch composition
        changes them; docs/generation.md).
        """
        rows = []
        for request in requests:
            request = dict(request)
            options = request.pop("options", None) or self.options
            rows.append(Row(request.pop("face"), request.pop("audio"), request.pop("out"), options,
                             request.pop("metadata", None), progress, None))
            if request:
                raise TypeError(f"generate_many: unknown request key(s) {', '.join(sorted(request))}")
        count = resolve_batch_files(batch_files, self.device.type)
        self._run_rows(rows, batch_files=count, overlap=overlap or self.options.overlap)
        return [RowOutcome(row.result, row.error, row.seconds) for row in rows]

    # ------------------------------------------------------------------------------------------------------
    def _run_rows(self, rows: list[Row], batch_files: int, overlap: str):
        """Produce, compute and finish the rows (execution.run_stages); every row ends with a result or an error.
        The signal cleanup handlers are held by this (main) thread, since writers open and close in the finish
        stage, which may be another thread."""
        overlapped = resolve_overlap(overlap, self.device.type)
        try:
            with safe_io.signal_cleanup_held():
                run_stages(self._steps(rows, batch_files), self._compute_step, self._finish_step, overlapped)
        finally:
            for row in rows:  # a stop (signal, bug in a stage): nothing half-written stays
                row.release()

    def _steps(self, rows, batch_files: int):
        """The produce stage: up to `batch_files` rows in flight; each step holds the next batch of each of them
        (`_Part`s) and the rows that ended before it (their last batch is in an earlier step)."""
        pending, active = iter(rows), []
        try:
            while True:
                while len(active) < batch_files:
                    row = next(pending, None)
                    if row is None:
                        break
                    row.started = time.perf_counter()
                    try:
                        self._start_row(row)
                        active.append((row, self._row_parts(row)))
                    except Exception as err:
                        row.error = err
                        yield Step([], [row])
                if not active:
                    return
                parts, ended = [], []
                for row, row_parts in list(active):
                    part = None
                    if row.error is None:
                        try:
                            part = next(row_parts)
                        except StopIteration:
                            pass
                        except Exception as err:
                            row.error = err
                    if part is None:
                        row_parts.close()
                        active.remove((row, row_parts))
                        ended.append(row)
                    else:
                        parts.append(part)
                yield Step(parts, ended)
        finally:
            for _, row_parts in active:
                row_parts.close()

    def _start_row(self, row: Row):
        """Everything a row needs before its first frame: probe, audio, prepared audio, tracker, progress."""
        if row.face_info is None:
            row.face_info, _, row.options = self.check_inputs(row.face, row.audio, row.out, row.options)
        generator, options = self.generator, row.options
        row.fps = options.fps or generator.fps
        sampling_rate = generator.sampling_rate
        batch_size = options.batch_size or default_batch_size(self.device.type)
        step = max(1, int(getattr(generator, "frames_per_step", 1)))
        row.batch_size = -(-batch_size // step) * step  # whole k-frame groups per call

        waveform = media.read_audio(row.audio, sampling_rate)
        row.num_frames = generator.num_video_frames(len(waveform), row.fps)
        face_info = row.face_info
        row.num_source_frames = 1 if face_info.is_image else media.count_grid_frames(row.face, row.fps)
        if options.duration_policy == "cut" and not face_info.is_image and row.num_frames > row.num_source_frames:
            row.num_frames = row.num_source_frames
            # the longest audio that still needs exactly num_frames frames
            waveform = waveform[: math.floor(row.num_frames * sampling_rate / row.fps)]
        row.waveform = waveform
        row.prepared_audio = generator.prepare_audio(waveform, sampling_rate, row.fps)
        if row.prepared_audio.num_frames != row.num_frames:
            raise RuntimeError(f"{type(generator).__name__}.prepare_audio gave {row.prepared_audio.num_frames} "
                               f"frames, its num_video_frames says {row.num_frames}; an adapter must agree with itself")
        row.tracker = FaceTracker(None if options.box is not None else self._backend(options),
                                  face_index=options.face_index, box=options.box, pads=options.pads,
                                  detect_every=options.detect_every,
                                  landmarks=self.enhancer is not None or _paste_uses_landmarks(options))
        row.bar, row.report = _progress(row.progress, row.num_frames)

    def _row_parts(self, row: Row):
        """A row's batches of `batch_size` output frames, with the crops of their faces cut (the produce stage)."""
        face_info = row.face_info
        width, height = face_info.width, face_info.height
        stream = source_stream(row.face, face_info, row.fps, row.num_frames, row.num_source_frames,
                               row.options.duration_policy, row.tracker, self.frame_cache_bytes)
        batch, target = [], self._first_batch_size(row)
        try:
            for output_index, (source_index, frame, detection) in enumerate(stream):
                if frame.shape[:2] != (height, width):  # a stream that changes size midway
                    import cv2

                    frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
                batch.append((output_index, source_index, frame, detection))
                if len(batch) == target:
                    yield self._part(row, batch)
                    batch, target = [], row.batch_size
            if batch:
                yield self._part(row, batch)
        finally:
            stream.close()

    def _first_batch_size(self, row: Row) -> int:
        """A row's first batch is FIRST_BATCH_SIZE frames (whole k-frame groups), so that its first frame does not
        wait for a full batch of detections and generation (start-up, issue 14); the generator's outputs do not
        depend on the batch it computes in (tests/pipelines/test_first_batch.py). int8 keeps full batches: its first
        call calibrates the quantization on the batch it is given."""
        if self.precision == "int8":
            return row.batch_size
        step = max(1, int(getattr(self.generator, "frames_per_step", 1)))
        return min(row.batch_size, -(-FIRST_BATCH_SIZE // step) * step)

    def _part(self, row: Row, batch) -> Part:
        """The generator inputs of one batch: float RGB crops (batch, 3, S, S), the pose input's lower half zeroed
        (done in numpy: single-threaded, no contention with the generator's thread pool)."""
        size = self.generator.img_size
        with_face = [item for item in batch if item[3] is not None]
        rolls = {item[0]: self._roll(item[3], row) for item in with_face}
        part = Part(row, batch, with_face, rolls)
        if with_face:
            if row.face_info.is_image:  # a photo: every frame shows the same crop
                first = with_face[0]
                crop = crop_face_aligned(first[2], first[3].box, rolls[first[0]], size)
                crops = np.broadcast_to(crop, (len(with_face), size, size, 3))
            else:
                crops = np.stack([crop_face_aligned(frame, detection.box, rolls[index], size)
                                  for index, _, frame, detection in with_face])
            part.reference = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1 / 255)
            part.masked = part.reference.copy()
            part.masked[:, :, size // 2:] = 0.0  # the lower half is what the generator must produce
            part.frame_indices = torch.tensor([item[0] for item in with_face], dtype=torch.long)
        return part

    def _compute_step(self, step: Step):
        """The compute stage: the generated faces of every part with faces, (n, S, S, 3) float in [0, 1], by part.
        A generator error fails the rows of this step (a call with one row raises it)."""
        parts = [part for part in step.parts if part.with_face and part.row.error is None]
        if not parts:
            return {}
        try:
            faces = generate_parts(self.generator, parts, self._autocast)
        except Exception as err:
            for part in parts:
                part.row.error = err
            return {}
        return {id(part): face for part, face in zip(parts, faces)}

    def _finish_step(self, step: Step, generated: dict):
        """The finish stage: paste back, hooks, write; then end the rows that ended before this step."""
        for part in step.parts:
            row = part.row
            if row.error is not None:
                continue
            try:
                self._finish_part(part, generated.get(id(part)))
            except Exception as err:
                row.error = _output_error(err, row.out)
        for row in step.ended:
            self._end_row(row)

    def _finish_part(self, part: Part, faces):
        row, options = part.row, part.row.options
        if row.writer is None:
            face_info = row.face_info
            tags = generation_metadata(self.model_name, _version(), precision=self.precision)
            tags.update(row.metadata or {})
            writer = media.VideoWriter(row.out, fps=row.fps, width=face_info.width, height=face_info.height,
                                       audio=row.waveform, sampling_rate=self.generator.sampling_rate,
                                       metadata=tags, threads=1 if self.device.type == "cpu" else None,
                                       inputs={"--face": row.face, "--audio": row.audio})
            writer.open()
            row.writer = writer
        generated = {} if faces is None else {item[0]: face for item, face in zip(part.with_face, faces)}
        for output_index, _, frame, detection in part.batch:
            if detection is not None:
                frame = paste_face(frame, generated[output_index], detection.box, blend=options.blend,
                                   feather=options.feather, landmarks=detection.landmarks,
                                   roll_degrees=part.rolls[output_index])
                if self.enhancer is not None:
                    frame = self.enhancer(frame, detection)
                if self.watermarker is not None:
                    frame = self.watermarker(frame, output_index)
            row.writer.write(frame)
        row.frames_with_face += len(part.with_face)
        row.report(len(part.batch))

    def _end_row(self, row: Row):
        """Close a row's video (or drop it after an error) and make its `LipSyncOutput` (the finish stage)."""
        try:
            if row.error is None:
                if row.frames_with_face == 0:
                    raise NoFaceError(
                        f"no face found in {row.face}; pass a video or photo where a face is visible, try "
                        "--face-backend dlib/face_alignment, or give the face position with --box x1 y1 x2 y2")
                writer, row.writer = row.writer, None
                writer.close()
                row.result = self._output(row, writer.frames_written)
        except Exception as err:
            row.error = _output_error(err, row.out)
        finally:
            row.release()
            row.seconds = time.perf_counter() - row.started

    def _output(self, row: Row, num_written: int) -> LipSyncOutput:
        options, frames_with_face = row.options, row.frames_with_face
        frames_without_face = num_written - frames_with_face
        if row.missing_landmarks:
            logger.info("%d of %d frames with a face had no landmarks and were pasted with the box mask%s",
                        row.missing_landmarks, frames_with_face, " without roll alignment" if options.align_roll
                        else "")
        if frames_without_face:
            logger.info("%d of %d frames had no detectable face and were left unchanged", frames_without_face,
                        num_written)
        sampling_rate = self.generator.sampling_rate
        return LipSyncOutput(out_path=Path(row.out), num_frames=num_written, frames_without_face=frames_without_face,
                             fps=row.fps, duration=num_written / row.fps,
                             audio_duration=len(row.waveform) / sampling_rate, source_frames=row.num_source_frames,
                             options=options, precision=self.precision)

    def _autocast(self):
        """bf16 everywhere and fp16 on the CPU run under autocast (fp16 GPU weights are cast at load time)."""
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        if dtype is None or self.generator.dtype == dtype:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _roll(self, detection, row: Row) -> float:
        """The roll (degrees) the crop of this face is turned by: its eye line's, 0 without alignment or landmarks.
        Counts the row's faces whose paste-back wanted landmarks and had none (the box mask, no alignment)."""
        options = row.options
        if detection.landmarks is None:
            if _paste_uses_landmarks(options):
                if not row.missing_landmarks:
                    logger.info("no face landmarks (a forced --box, a boxes-only face backend, or none fitted): "
                                "pasting with the box-shaped mask%s", ", crops not roll-aligned"
                                if options.align_roll else "")
                row.missing_landmarks += 1
            return 0.0
        return roll_angle(detection.landmarks) if options.align_roll and options.blend != "none" else 0.0


def _output_error(err: Exception, out) -> Exception:
    """A full disk while writing `out` is the one-line `OutputError` (as `VideoWriter`'s `with` block makes it)."""
    if isinstance(err, OSError):
        return safe_io.disk_full_error(err, out) or err
    return err


def _paste_uses_landmarks(options: LipSyncOptions) -> bool:
    """Whether the paste-back of these options is shaped or aligned by the face's landmarks."""
    return options.blend != "none" and (options.blend in ("feather", "poisson") or options.align_roll)


def _version() -> str:
    try:
        from ... import __version__

        return __version__
    except ImportError:
        return "unknown"


def _progress(progress, total):
    """(tqdm bar or None, report(n) function)."""
    done = 0
    bar = None
    callback = progress if callable(progress) else None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="frame", desc="lip-sync")

    def report(count):
        nonlocal done
        done += count
        if bar is not None:
            bar.update(count)
        if callback is not None:
            callback(done, total)

    return bar, report


__all__ = ["DURATION_POLICIES", "InvalidInputError", "LipSyncOptions", "LipSyncOutput", "LipSyncPipeline",
           "check_lipsync_inputs", "frame_schedule", "resolve_device"]
