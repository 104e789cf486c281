"""How `LipSyncPipeline` runs its three stages, in one thread or overlapped in three.

A lip-sync call is a stream of steps. Each step goes through
  1. *produce*: decode the next frames, find their faces (detection, smoothing) and cut the face crops;
  2. *compute*: the generator redraws the crops' lower halves (one batched call, on the pipeline's device);
  3. *finish*: paste the faces back, run the enhancer and watermark hooks, encode and write the frames.

With `overlap` off every step runs the three in turn in the calling thread (the way talkface always ran). With it
on, produce and finish run in their own threads, joined to the calling thread (which computes) by bounded queues
of `QUEUE_DEPTH` steps: while the generator works on step n, step n+1 is decoded and step n-1 written. The work of
each stage and its order are the same either way (one thread per stage, steps in order), so the output is the same
bit for bit; only the wall time differs.

Errors: an exception (or the SystemExit / KeyboardInterrupt of a signal) in any stage stops the others at their
next step, the threads are joined, and the calling thread raises it, so a run ends as it does without threads.

`overlap="auto"`: on for CUDA (the generator runs on the GPU while the CPU decodes and encodes); on a CPU it is
what `AUTO_OVERLAP` says for it, from the A/B measurement in docs/generation.md: there the three stages share the
same few cores, and threads only move work around.

Cross-file batching (`batch_files`, `LipSyncPipeline.generate_many`): K files in flight at once, each contributing
its next batch of crops to one generator call, so a GPU gets K times larger batches from short clips. Only for
generators whose `generate` depends on the audio through `PreparedAudio.per_frame[frame_indices]` alone
(`LipSyncGenerator.per_frame_audio`); others run one file per call. `batch_files="auto"`: `AUTO_BATCH_FILES`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import InvalidInputError
from .generator import PreparedAudio
from .options import OVERLAP_MODES

logger = logging.getLogger(__name__)

#: what overlap="auto" means per device type (missing: off). CPU: see docs/generation.md "Several processes, GPUs
#: and machines" (on the 2-core test machine the threads cost more than they hid)
AUTO_OVERLAP = {"cuda": True}
#: files in flight per generator call for batch_files="auto", by device type (missing: 1)
AUTO_BATCH_FILES = {"cuda": 4}
#: steps waiting between two stages (decoded frames + crops of a batch each; bounded so memory stays flat)
QUEUE_DEPTH = 2
#: how long a stage waits on a queue before it looks whether the run was stopped (seconds)
POLL_SECONDS = 0.05
#: a stage thread that has not ended this long after a stop is left (daemon) and reported
JOIN_SECONDS = 60.0


def check_overlap(mode) -> str:
    if mode not in OVERLAP_MODES:
        raise InvalidInputError(f"overlap must be one of {', '.join(OVERLAP_MODES)}, got {mode!r} (--overlap)")
    return mode


def resolve_overlap(mode: str, device_type: str) -> bool:
    """Whether the stages run in their own threads: "on" / "off", or "auto" by `AUTO_OVERLAP`."""
    check_overlap(mode)
    return AUTO_OVERLAP.get(device_type, False) if mode == "auto" else mode == "on"


def resolve_batch_files(value, device_type: str) -> int:
    """Files in flight per generator call: a whole number >= 1, or "auto"/None (`AUTO_BATCH_FILES`)."""
    if value is None or value == "auto":
        return AUTO_BATCH_FILES.get(device_type, 1)
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if isinstance(value, bool) or str(count) != str(value).strip() or count < 1:
        raise InvalidInputError(f"--batch-files takes a whole number >= 1 or auto, got {value!r}")
    return count


@dataclass
class RowOutcome:
    """What one file of `LipSyncPipeline.generate_many` came to: its `LipSyncOutput`, or the exception that ended
    it (a `TalkFaceUserError` for bad input, anything else for a bug), and its wall time from start to written."""

    result: object | None
    error: Exception | None
    seconds: float


class Row:
    """One file in flight: its request, what the produce stage prepared for it, its writer, and how it ended."""

    def __init__(self, face, audio, out, options, metadata, progress, face_info):
        self.face, self.audio, self.out, self.options = face, audio, out, options
        self.metadata, self.progress, self.face_info = metadata, progress, face_info
        self.fps = self.waveform = self.prepared_audio = self.tracker = None
        self.num_frames = self.num_source_frames = self.batch_size = 0
        self.writer = None  # the open VideoWriter (finish stage)
        self.bar, self.report = None, (lambda count: None)
        self.frames_with_face = self.missing_landmarks = 0
        self.started = self.seconds = 0.0
        self.result = None  # the LipSyncOutput once written
        self.error: Exception | None = None  # what ended the row (any stage may set it; the others then skip it)

    def release(self):
        """Abort a writer still open (nothing half-written stays) and close the progress bar; idempotent."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@dataclass
class Part:
    """One batch of a row: its (output index, source index, frame, face or None) items, those with a face, their
    rolls, and the generator inputs of those (masked / reference (n, 3, S, S) float32, output frame indices)."""

    row: Row
    batch: list
    with_face: list
    rolls: dict
    masked: np.ndarray | None = None
    reference: np.ndarray | None = None
    frame_indices: torch.Tensor | None = None


@dataclass
class Step:
    """What goes through the three stages at once: the next part of every row in flight, and the rows that ended
    before it."""

    parts: list = field(default_factory=list)
    ended: list = field(default_factory=list)


def generate_parts(generator, parts: list[Part], autocast: Callable) -> list[np.ndarray]:
    """The generated faces of each part, (n, S, S, 3) float in [0, 1]. One part: the generator's call exactly as a
    single file makes it. Several: one call over all of them when the generator takes per-frame audio rows (each
    part padded to whole `frames_per_step` groups by repeating its last face, as the adapters pad a call), else a
    call per part."""
    if len(parts) > 1 and getattr(generator, "per_frame_audio", False):
        shapes = {tuple(part.row.prepared_audio.per_frame.shape[1:]) for part in parts}
        if len(shapes) == 1:
            return _generate_together(generator, parts, autocast)
    return [_generate(generator, torch.from_numpy(part.masked), torch.from_numpy(part.reference),
                      part.row.prepared_audio, part.frame_indices, autocast) for part in parts]


def _generate(generator, masked, reference, audio, frame_indices, autocast) -> np.ndarray:
    with torch.no_grad(), autocast():
        faces = generator.generate(masked, reference, audio, frame_indices)
    return np.clip(faces.detach().float().cpu().numpy().transpose(0, 2, 3, 1), 0.0, 1.0)  # (batch, S, S, 3)


def _generate_together(generator, parts: list[Part], autocast) -> list[np.ndarray]:
    step = max(1, int(getattr(generator, "frames_per_step", 1)))
    masked, reference, rows, sizes = [], [], [], []
    for part in parts:
        count = len(part.with_face)
        take = np.arange(count + (-count) % step).clip(max=count - 1)  # the last face repeated up to a whole group
        masked.append(part.masked[take])
        reference.append(part.reference[take])
        rows.append(part.row.prepared_audio.per_frame[part.frame_indices[torch.from_numpy(take)]])
        sizes.append((count, len(take)))
    per_frame = torch.cat(rows)
    audio = PreparedAudio(per_frame=per_frame, num_frames=len(per_frame), fps=parts[0].row.fps)
    faces = _generate(generator, torch.from_numpy(np.concatenate(masked)), torch.from_numpy(np.concatenate(reference)),
                      audio, torch.arange(len(per_frame)), autocast)
    out, start = [], 0
    for count, padded in sizes:
        out.append(faces[start:start + count])
        start += padded
    return out


_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def run_stages(steps: Iterator, compute: Callable, finish: Callable, overlap: bool, depth: int = QUEUE_DEPTH):
    """finish(step, compute(step)) for every step of `steps` (iterated = produced), in order; see the module
    docstring. `steps` is closed at the end (a generator's cleanup runs in the thread that iterated it)."""
    if not overlap:
        try:
            for step in steps:
                finish(step, compute(step))
        finally:
            _close(steps)
        return

    stop = threading.Event()
    produced: queue.Queue = queue.Queue(depth)
    computed: queue.Queue = queue.Queue(depth)
    finish_failure: list[BaseException] = []

    def put(target: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                target.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def get(source: queue.Queue):
        while True:
            try:
                return source.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if stop.is_set():
                    return _END

    def produce():
        try:
            for step in steps:
                if not put(produced, step):
                    return
            put(produced, _END)
        except BaseException as err:  # noqa: B036  a signal's SystemExit too: the calling thread raises it
            put(produced, _Failed(err))
        finally:
            _close(steps)

    def write():
        try:
            while True:
                item = get(computed)
                if item is _END:
                    return
                finish(*item)
        except BaseException as err:  # noqa: B036
            finish_failure.append(err)
            stop.set()

    threads = [threading.Thread(target=produce, name="talkface-produce", daemon=True),
               threading.Thread(target=write, name="talkface-finish", daemon=True)]
    for thread in threads:
        thread.start()
    try:
        while not finish_failure:
            item = get(produced)
            if item is _END:
                break
            if isinstance(item, _Failed):
                raise item.error
            if not put(computed, (item, compute(item))):
                break
        put(computed, _END)
        threads[1].join()  # everything computed is written before the call returns
        if finish_failure:
            raise finish_failure[0]
    finally:
        stop.set()
        for thread in threads:
            thread.join(JOIN_SECONDS)
            if thread.is_alive():
                logger.warning("the %s thread did not end within %g s of the stop", thread.name, JOIN_SECONDS)


def _close(steps):
    close = getattr(steps, "close", None)
    if close is not None:
        close()


__all__ = ["AUTO_BATCH_FILES", "AUTO_OVERLAP", "OVERLAP_MODES", "Part", "QUEUE_DEPTH", "Row", "RowOutcome", "Step",
           "check_overlap", "generate_parts", "resolve_batch_files", "resolve_overlap", "run_stages"]
