"""The frames a lip-sync call works on: the face input's frames on the output's fps grid, in output order, with
their tracked faces (`source_stream`), extended past the video's end by the duration policy (`frame_schedule`)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

from ... import media
from ...errors import MediaError, NoFaceError

logger = logging.getLogger(__name__)


def frame_schedule(num_output_frames: int, num_source_frames: int, policy: str) -> Iterator[int]:
    """Source frame index for each output frame under a duration policy."""
    n = num_source_frames
    for i in range(num_output_frames):
        if i < n or n == 1:
            yield min(i, n - 1)
        elif policy == "loop":
            yield i % n
        elif policy == "pingpong":
            period = 2 * n - 2  # 0 1 .. n-1 n-2 .. 1 | 0 1 ..: the turning frames are not repeated
            phase = i % period
            yield phase if phase < n else period - phase
        else:  # "cut" never asks for more output frames than source frames
            raise ValueError(f"policy {policy!r} cannot extend {n} source frames to {num_output_frames}")


def _monotonic_runs(indices: Iterator[int]) -> Iterator[tuple[int, int, int]]:
    """Group consecutive indices into runs (first, last, step) with step +1 or -1."""
    first = last = step = None
    for index in indices:
        if first is None:
            first = last = index
        elif step is None and abs(index - last) == 1:
            step, last = index - last, index
        elif step is not None and index - last == step:
            last = index
        else:
            yield first, last, step or 1
            first = last = index
            step = None
    if first is not None:
        yield first, last, step or 1



def source_stream(face, face_info, fps, num_frames, num_source_frames, policy, tracker, frame_cache_bytes):
    """(source index, frame, box or None) for every output frame, in output order."""
    if face_info.is_image:
        image = media.read_frames(face)[0]
        (_, image_face), = tracker.track([image])
        if image_face is None:
            raise NoFaceError(f"no face found in the photo {face}; pass a photo with a clearly visible face, "
                              "or give its position with --box x1 y1 x2 y2")
        for _ in range(num_frames):
            yield 0, image, image_face
        return

    first_pass = min(num_frames, num_source_frames)
    revisits = num_frames > num_source_frames
    frame_bytes = face_info.width * face_info.height * 3
    cache = [] if revisits and num_source_frames * frame_bytes <= frame_cache_bytes else None
    faces: list = [None] * num_source_frames  # the tracked face of every source frame, reused on revisits
    tracked = tracker.track(itertools.islice(media.iter_frames(face, fps=fps), first_pass))
    count = 0
    for source_index, (frame, detection) in enumerate(tracked):
        faces[source_index] = detection
        if cache is not None:
            cache.append(frame)
        count += 1
        yield source_index, frame, detection
    if count == 0:
        raise MediaError(f"{face} contains no decodable video frames; re-encode it, e.g. to H.264 mp4")
    if count < first_pass:  # decoding ended before the timestamps said it would: hold the last frame
        logger.debug("%s delivered %d frames on the grid, %d expected", face, count, first_pass)
        for _ in range(first_pass - count):
            yield count - 1, frame, detection
        num_source_frames = count
    if not revisits:
        return
    schedule = itertools.islice(frame_schedule(num_frames, num_source_frames, policy), first_pass, None)
    for first, last, step in _monotonic_runs(schedule):
        for source_index, frame in _decode_run(face, fps, first, last, step, cache):
            yield source_index, frame, faces[source_index]

def _decode_run(face, fps, first, last, step, cache, chunk=64):
    """Frames first..last (inclusive, step +-1) from the cache or by decoding again (backwards in chunks)."""
    if cache is not None:
        for index in range(first, last + step, step):
            yield index, cache[index]
        return
    if step == 1:
        frames = media.iter_frames(face, fps=fps, start=first)
        for index, frame in zip(range(first, last + 1), frames):
            yield index, frame
        return
    # backwards: decode chunks of `chunk` frames forwards (seeking to each) and hand them out reversed
    chunk_last = first
    while chunk_last >= last:
        chunk_first = max(last, chunk_last - chunk + 1)
        frames = list(itertools.islice(media.iter_frames(face, fps=fps, start=chunk_first),
                                       chunk_last - chunk_first + 1))
        for offset in range(len(frames) - 1, -1, -1):
            yield chunk_first + offset, frames[offset]
        chunk_last = chunk_first - 1


__all__ = ["frame_schedule", "source_stream"]
