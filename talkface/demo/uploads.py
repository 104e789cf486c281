"""Checks of the files users upload (probed before any model runs, so a wrong file fails at once with one line
naming it and the fix), and helpers for lists of uploads."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from ..errors import MediaError, TalkFaceUserError
from ..evaluation.pairing import EVALUATION_FPS

logger = logging.getLogger(__name__)

#: decoded frames (RGB at the evaluation frame rate) a scored video may fill in memory
MAX_SCORE_DECODED_BYTES = 2 * 2**30


def check_face(config, path):
    """Probe the face upload: a readable video (not too long) or photo. Returns its MediaInfo."""
    from .. import media

    name = display_name(path)
    try:
        info = media.probe(path)
    except MediaError as err:
        logger.info("unreadable face upload: %s", err)
        what = media.describe_content(path)
        looks = f" (it looks like {what})" if what else ""
        if media.is_image_file(path):  # named like a photo: say it is not one, and what it seems to be
            raise MediaError(f"the face file {name} is not an image{looks}; upload a PNG/JPEG photo or a video "
                             "(mp4, mov, webm, mkv, ...) showing a face") from err
        raise MediaError(f"the face file {name} is not a video or photo that can be read{looks}; upload a video "
                         "(mp4, mov, webm, mkv, ...) or a photo (png, jpg)") from err
    if not info.has_video:
        raise MediaError(f"the face file {name} has no picture (is it an audio file?); upload a video or photo "
                         "showing a face")
    if not info.is_image and info.duration > config.max_video_seconds:
        raise MediaError(f"the face video {name} lasts {info.duration:.1f} s; this demo accepts at most "
                         f"{config.max_video_seconds:g} s: upload a shorter clip (or use `talkface "
                         "generate` on your machine, which has no limit)")
    return info


def check_audio(config, path, role="audio"):
    """Probe an audio upload (or a video used for its sound): it must have sound and not be too long."""
    from .. import media

    name = display_name(path)
    try:
        info = media.probe(path)
    except MediaError as err:
        logger.info("unreadable %s upload: %s", role, err)
        raise MediaError(f"the {role} file {name} cannot be read as audio; upload a speech recording (wav, mp3, "
                         "m4a, flac, ...)") from err
    if not info.has_audio:
        raise MediaError(f"the {role} file {name} has no sound; upload a speech recording (wav, mp3, ...) or a "
                         "video with sound")
    if info.audio_duration > config.max_audio_seconds:
        raise MediaError(f"the {role} file {name} lasts {info.audio_duration:.1f} s; this demo accepts at most "
                         f"{config.max_audio_seconds:g} s: upload a shorter recording")
    return info


def check_video(config, path, role="video"):
    """Probe a video to score: it must have a picture (a still image is not a video) and not be too long."""
    from .. import media

    name = display_name(path)
    try:
        info = media.probe(path)
    except MediaError as err:
        logger.info("unreadable %s upload: %s", role, err)
        raise MediaError(f"the {role} {name} cannot be read as a video; upload video files (mp4, mov, webm, mkv, "
                         "...)") from err
    if info.is_image or not info.has_video:
        raise MediaError(f"the {role} {name} is not a video; upload video files (mp4, mov, webm, mkv, ...)")
    if info.duration > config.max_video_seconds:
        raise MediaError(f"the {role} {name} lasts {info.duration:.1f} s; this demo accepts at most "
                         f"{config.max_video_seconds:g} s per video: upload shorter clips (or use "
                         "`talkface evaluate` on your machine)")
    # scoring holds a video's frames in memory (at 25 fps): refuse what would not fit
    decoded_bytes = info.duration * EVALUATION_FPS * info.width * info.height * 3
    if decoded_bytes > MAX_SCORE_DECODED_BYTES:
        raise MediaError(f"the {role} {name} ({info.width}x{info.height}, {info.duration:.1f} s) is too large to "
                         f"score here (about {decoded_bytes / 2**30:.1f} GiB of frames, at most "
                         f"{MAX_SCORE_DECODED_BYTES / 2**30:.1f}); upload a shorter or smaller version "
                         "(e.g. 720p)")
    return info


def as_list(files) -> list[str]:
    if files is None:
        return []
    if isinstance(files, (str, Path)):
        return [str(files)]
    # Gradio gives paths, or file objects whose .name is the path (a Path's .name is only the file name)
    return [str(f if isinstance(f, (str, Path)) else getattr(f, "name", f)) for f in files if f]


def display_name(path) -> str:
    return f"'{Path(str(path)).name}'"


def short(err, limit: int = 160) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_stem(path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(path)).stem)[:40] or "input"


def unique_stems(paths) -> list[str]:
    """File stems, made unique with a suffix when two uploads share a name."""
    stems, seen = [], Counter()
    for path in paths:
        stem = Path(path).stem
        seen[stem] += 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def match_files(files, videos, stems, what) -> list[Path | None]:
    """One optional file per video: none, one for all, or one per video with the same name (stem)."""
    if not files:
        return [None] * len(videos)
    if len(files) == 1:
        return [Path(files[0])] * len(videos)
    by_stem = {Path(f).stem: Path(f) for f in files}
    matched = [by_stem.get(Path(video).stem) for video in videos]
    if any(m is None for m in matched):
        missing = [stem for stem, m in zip(stems, matched) if m is None]
        raise TalkFaceUserError(
            f"{len(files)} {what} given, but none is named like {', '.join(missing)}; give one file for all videos, "
            "or one per video with the same name (talk.mp4 with talk.wav)")
    return matched
