"""Previews of uploads for the page: a browser cannot play every video a user has (MPEG-4 Part 2 in an .mp4,
.avi, .mkv, .mov, ...), so such a face video is transcoded to a small H.264/AAC mp4 (PyAV) that the page shows;
speech (an audio file or a video's sound track) is shown as the 16 kHz mono WAV the generator hears.

Previews are for looking and listening only: generation and scoring always read the original upload."""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import numpy as np

from ..errors import MediaError

logger = logging.getLogger(__name__)

#: (container suffix) -> (video codecs, audio codecs) that every current browser plays in it; anything else gets a
#: preview. (Gradio's own check knows the same video pairs; audio matters too: PCM in an mp4 plays silently.)
BROWSER_PLAYABLE = {
    ".mp4": ({"h264", "av1"}, {"aac", "mp3", "mp3float", "opus", "flac"}),
    ".webm": ({"vp8", "vp9", "av1"}, {"opus", "vorbis"}),
}
#: longest side of a transcoded preview, in pixels (a preview only needs to show the face)
PREVIEW_MAX_SIDE = 640
#: highest frame rate of a transcoded preview
PREVIEW_MAX_FPS = 30.0
#: sampling rate of speech previews: the rate every generator reads
SPEECH_PREVIEW_RATE = 16000


def stream_codecs(path) -> tuple[str | None, str | None]:
    """(video codec, audio codec) names of the first streams of a media file (None where there is none)."""
    import av

    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0].codec_context.name if container.streams.video else None
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    except av.error.FFmpegError as err:
        raise MediaError(f"cannot read {Path(path).name} ({err})") from err
    return video, audio


def browser_can_play(path) -> bool:
    """Whether browsers play this video file as it is (container and both codecs), judged from its streams."""
    allowed = BROWSER_PLAYABLE.get(Path(path).suffix.lower())
    if allowed is None:
        return False
    video, audio = stream_codecs(path)
    return video in allowed[0] and (audio is None or audio in allowed[1])


def describe_codecs(path) -> str:
    """"MPEG-4 Part 2 video with AAC sound in .mp4" style description of a file, for the page."""
    try:
        video, audio = stream_codecs(path)
    except MediaError:
        return "this file"
    suffix = Path(path).suffix.lower() or "a file without extension"
    text = f"{_CODEC_NAMES.get(video, video or 'no')} video"
    if audio:
        name = "PCM" if audio.startswith("pcm_") else _CODEC_NAMES.get(audio, audio)
        text += f" with {name} sound"
    return f"{text} in {suffix}"


_CODEC_NAMES = {"mpeg4": "MPEG-4 Part 2", "h264": "H.264", "hevc": "H.265", "vp9": "VP9", "vp8": "VP8", "av1": "AV1",
                "mjpeg": "Motion JPEG", "prores": "ProRes", "theora": "Theora", "msmpeg4v3": "MS MPEG-4 v3",
                "aac": "AAC", "mp3": "MP3", "mp3float": "MP3", "opus": "Opus", "vorbis": "Vorbis", "flac": "FLAC",
                "alac": "ALAC", "ac3": "AC-3"}


def video_preview(path, out_dir, max_side: int = PREVIEW_MAX_SIDE, max_fps: float = PREVIEW_MAX_FPS) -> Path:
    """A browser-playable H.264/AAC mp4 of the video at `path`, written into `out_dir` (which must exist).

    Scaled down to `max_side` pixels on its longest side, at most `max_fps` frames per second, sound as mono
    AAC. Rotated phone videos come out upright (the frames are read as a player shows them)."""
    import cv2

    from .. import media

    path, out_dir = Path(path), Path(out_dir)
    info = media.probe(path)
    if info.is_image or not info.has_video:
        raise MediaError(f"{path.name} is not a video; nothing to preview")
    fps = min(info.fps or 25.0, max_fps)
    scale = min(1.0, max_side / max(info.width, info.height, 1))
    width, height = max(2, round(info.width * scale)), max(2, round(info.height * scale))
    audio = media.read_audio(path, SPEECH_PREVIEW_RATE) if info.has_audio else None
    out = out_dir / f"preview_{path.stem[:60]}.mp4"
    with media.VideoWriter(out, fps=fps, width=width, height=height, audio=audio,
                           sampling_rate=SPEECH_PREVIEW_RATE, crf=26, preset="veryfast") as writer:
        for frame in media.iter_frames(path, fps=fps):
            if frame.shape[:2] != (height, width):
                frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
            writer.write(frame)
    logger.info("preview of %s (%s): %s", path.name, describe_codecs(path), out)
    return out


def speech_preview(path, out_dir, sampling_rate: int = SPEECH_PREVIEW_RATE) -> Path:
    """The sound of `path` (an audio file or a video) as a 16-bit mono WAV in `out_dir`: what generation hears."""
    from .. import media

    path = Path(path)
    waveform = media.read_audio(path, sampling_rate)
    out = Path(out_dir) / f"speech_{path.stem[:60]}.wav"
    with wave.open(str(out), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sampling_rate)
        handle.writeframes((np.clip(waveform, -1, 1) * 32767).astype("<i2").tobytes())
    return out
