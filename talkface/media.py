"""Media I/O: audio as 16 kHz mono float32, video frames on a constant fps grid, streaming H.264 + AAC mp4 writing.

Everything goes through PyAV (the ffmpeg libraries), so any container/codec ffmpeg decodes works, and nothing
here holds a whole video in memory: `iter_frames` decodes lazily and `VideoWriter` encodes frame by frame.

Timing model:
  * A file's video and audio are read on ONE timeline, the file's own: it starts at the earliest start time of its
    first video stream and its first audio stream (a start before 0, encoder delay that players skip, counts as 0).
    Streams that start together (nearly every file) are read exactly as before; a stream that starts later is
    padded at its front, so the decoded frames and samples line up as a player shows them:
      - a video that starts after its audio: the leading grid frames repeat its first frame;
      - an audio track that starts after its video: `read_audio` puts silence in front of it.
    So scoring a file against its own sound track is in sync even when its video starts 0.5 s after its sound.
  * Video frames are delivered on a constant grid of `fps` frames per second from that origin: grid frame i shows
    the latest decoded frame whose presentation time (relative to the origin) is <= i / fps. Variable-frame-rate
    input (phone recordings, screen captures) therefore comes out evenly spaced, with frames repeated or dropped
    as a constant-rate player would show them.
  * The grid covers the stream up to the end of its last frame (last pts + that frame's duration); `probe`'s
    durations are measured from the same origin.
  * A still image is one frame; callers decide how long to hold it.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from pathlib import Path

import numpy as np

from .errors import MediaError
from .utils.filetypes import describe_content  # noqa: F401  (also media.describe_content)
from .utils.io import SafeOutput, check_output, disk_full_error
from .utils.pixels import rgb_to_yuv420p

logger = logging.getLogger(__name__)

#: file extensions read as still images (with OpenCV, which also honours EXIF orientation)
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}

# Containers round timestamps (matroska to 1 ms: a 30 fps frame at 66.67 ms is stored as 67 ms). A frame counts
# as due on the grid when its timestamp is at most this much late, far below any frame interval.
_TIMESTAMP_TOLERANCE = Fraction(1, 1000)
# the most end-of-stream padding a frame-based audio codec adds (AAC: up to one 1024-sample frame + priming)
_MAX_CODEC_PADDING = 4096
# full scale of integer sample formats, to map them to [-1, 1]
_SAMPLE_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _av():
    import av  # PyAV is a hard requirement; imported here to keep `import talkface` light

    return av


def check_file(path) -> Path:
    """`path` as a Path when it is an existing file; a `MediaError` that says what it is otherwise (missing, or a
    folder)."""
    path = Path(path)
    if path.is_dir():
        raise MediaError(f"{path} is a folder, not a file; pass a media file")
    if not path.is_file():
        raise MediaError(f"file not found: {path}; check the path")
    return path


_check_file = check_file


def _looks_like(path) -> str:
    """ " (it looks like a PDF document)" or "" """
    what = describe_content(path)
    return f" (it looks like {what})" if what else ""


def _open(path):
    av = _av()
    try:
        return av.open(str(path))
    except av.error.FFmpegError as err:
        looks = _looks_like(path)
        raise MediaError(f"cannot read {path} as audio/video{looks or f' ({err})'}; pass a file ffmpeg can decode"
                         ) from err


def is_image_file(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _stream_start(stream) -> Fraction | None:
    """Where a stream starts on the file's timeline, in seconds (None when the container does not say); a start
    before 0 (encoder delay) counts as 0."""
    if stream is None or stream.start_time is None or stream.time_base is None:
        return None
    return max(Fraction(0), stream.start_time * stream.time_base)


def _timeline_origin(container) -> Fraction | None:
    """The start of the file's timeline in seconds: the earliest start of its first video and first audio stream
    (the timing model in the module docstring); None when neither says where it starts."""
    streams = [container.streams.video[0] if container.streams.video else None,
               container.streams.audio[0] if container.streams.audio else None]
    starts = [start for start in map(_stream_start, streams) if start is not None]
    return min(starts) if starts else None


def _lead(stream, container) -> Fraction:
    """How long after the timeline's origin `stream` starts, in seconds (0 for the stream that starts first)."""
    start, origin = _stream_start(stream), _timeline_origin(container)
    if start is None or origin is None or start - origin <= _TIMESTAMP_TOLERANCE:
        return Fraction(0)
    return start - origin


# --------------------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------------------


def _audio_frame_to_float(frame) -> np.ndarray:
    """A decoded audio frame -> (channels, samples) float32 in [-1, 1]."""
    data = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    if not fmt.is_planar:
        data = data.reshape(-1, channels).T  # packed (1, samples*channels) -> (channels, samples)
    name = fmt.name.rstrip("p")
    if name in ("flt", "dbl"):
        return data.astype(np.float32, copy=False)
    if name == "u8":
        return (data.astype(np.float32) - 128.0) / 128.0
    if name in _SAMPLE_SCALE:
        return (data.astype(np.float64) / _SAMPLE_SCALE[name]).astype(np.float32)
    raise MediaError(f"unsupported audio sample format {fmt.name!r}; convert the audio to wav first")


def resample_audio(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited polyphase resampling of a mono signal (Kaiser-windowed FIR, scipy.signal.resample_poly)."""
    if orig_sr == target_sr:
        return waveform.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    divisor = gcd(int(orig_sr), int(target_sr))
    up, down = int(target_sr) // divisor, int(orig_sr) // divisor
    return resample_poly(waveform.astype(np.float64), up, down).astype(np.float32)


def read_audio(path, sampling_rate: int = 16000) -> np.ndarray:
    """Read the first audio stream of any file as mono float32 in [-1, 1] at `sampling_rate`.

    Works for audio files (wav, flac, mp3, m4a, ogg, ...) and for a video's own track. Channels are averaged. A
    track that starts after the file's video gets that much silence in front (the timing model above). Raises `MediaError` for a missing file, a file without an audio stream, or empty audio.
    """
    path = _check_file(path)
    container = _open(path)
    try:
        if not container.streams.audio:
            raise MediaError(f"{path} has no audio stream; pass a speech recording (wav, mp3, ...) or a video "
                             "with sound")
        stream = container.streams.audio[0]
        chunks, source_rate = [], None
        av = _av()
        try:
            for frame in container.decode(stream):
                source_rate = source_rate or frame.sample_rate
                if frame.sample_rate != source_rate:  # very rare (e.g. concatenated mp3s): bring it to the first rate
                    chunks.append(resample_audio(_audio_frame_to_float(frame).mean(axis=0), frame.sample_rate,
                                                 source_rate))
                    continue
                chunks.append(_audio_frame_to_float(frame).mean(axis=0))  # (samples,) channels averaged
        except av.error.FFmpegError as err:
            raise MediaError(f"cannot decode the audio of {path} ({err}); re-encode it, e.g. to wav") from err
        declared = _stream_seconds(stream, container) if stream.duration is not None else None
        lead = _lead(stream, container)  # the sound starts after the video: silence in front (timing model)
    finally:
        container.close()
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise MediaError(f"{path} contains no audio samples; pass a non-empty speech recording")
    waveform = np.concatenate(chunks)
    if declared:
        # Frame-based codecs (AAC, ...) decode whole frames; the container's duration (from its edit list) says
        # where the real signal ends. Trim only such codec padding, never more than a few frames' worth.
        declared_samples = int(round(declared * source_rate))
        if 0 < len(waveform) - declared_samples <= _MAX_CODEC_PADDING:
            waveform = waveform[:declared_samples]
    if lead:
        waveform = np.concatenate([np.zeros(int(round(lead * source_rate)), dtype=np.float32), waveform])
    waveform = resample_audio(waveform, source_rate, sampling_rate)
    return np.clip(waveform, -1.0, 1.0)


# --------------------------------------------------------------------------------------------------------------
# Probing
# --------------------------------------------------------------------------------------------------------------


@dataclass
class MediaInfo:
    """What a media file holds. Durations are in seconds; `fps` is the video's average frame rate."""

    path: str
    is_image: bool
    has_video: bool
    has_audio: bool
    fps: float | None = None
    num_frames: int = 0
    width: int = 0
    height: int = 0
    duration: float = 0.0
    audio_duration: float = 0.0


def _stream_seconds(stream, container) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def _packet_span(container, stream) -> tuple[int, float]:
    """(number of packets, seconds from the stream's start to the end of its last packet), by demuxing only."""
    time_base = stream.time_base
    fallback = (1 / stream.average_rate) if getattr(stream, "average_rate", None) else 0
    count, first, end = 0, None, None
    for packet in container.demux(stream):
        if packet.pts is None or not packet.size:
            continue
        count += 1
        first = packet.pts if first is None else min(first, packet.pts)
        packet_end = packet.pts * time_base + (packet.duration * time_base if packet.duration else fallback)
        end = packet_end if end is None else max(end, packet_end)
    if first is None:
        return 0, 0.0
    origin = stream.start_time if stream.start_time is not None else first
    return count, float(end - origin * time_base)


def _first_frame(container, stream):
    av = _av()
    try:
        return next(container.decode(stream), None)
    except av.error.FFmpegError as err:
        raise MediaError(f"cannot decode the video of {container.name} ({err}); re-encode it, e.g. to H.264 "
                         "mp4") from err


def probe(path) -> MediaInfo:
    """Inspect a file without decoding it (packets are counted when the container does not store a frame count)."""
    path = _check_file(path)
    if is_image_file(path):
        image = _read_image(path)
        height, width = image.shape[:2]
        return MediaInfo(str(path), is_image=True, has_video=True, has_audio=False, fps=None, num_frames=1,
                         width=width, height=height)
    container = _open(path)
    try:
        info = MediaInfo(str(path), is_image=False, has_video=bool(container.streams.video),
                         has_audio=bool(container.streams.audio))
        if info.has_video:
            stream = container.streams.video[0]
            info.width, info.height = stream.codec_context.width, stream.codec_context.height
            first_frame = _first_frame(container, stream)
            if first_frame is not None and _quarter_turns(first_frame) % 2:  # shown rotated by 90 or 270 degrees
                info.width, info.height = info.height, info.width
            container.seek(0)
            num_frames, info.duration = stream.frames, 0.0
            if stream.duration is not None:
                info.duration = float(stream.duration * stream.time_base)
            if not num_frames or not info.duration:
                # matroska/webm store neither: demux the packets (no decoding) and measure them
                counted, span = _packet_span(container, stream)
                container.seek(0)
                num_frames = num_frames or counted
                info.duration = info.duration or span
            info.num_frames = num_frames
            info.duration += float(_lead(stream, container))  # measured from the file's timeline origin
            if stream.average_rate:
                info.fps = float(stream.average_rate)
            elif info.duration > 0:
                info.fps = num_frames / info.duration
        if info.has_audio:
            stream = container.streams.audio[0]
            if stream.duration is not None:
                info.audio_duration = float(stream.duration * stream.time_base)
            else:
                info.audio_duration = _packet_span(container, stream)[1]
            info.audio_duration += float(_lead(stream, container))
    finally:
        container.close()
    return info


# --------------------------------------------------------------------------------------------------------------
# Video frames
# --------------------------------------------------------------------------------------------------------------


def _read_image(path) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)  # imdecode rather than imread: works with any path encoding
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)  # 3 channels, EXIF orientation applied
    if image is None:
        raise MediaError(f"{path} is not an image that can be decoded{_looks_like(path)}; pass a PNG or JPEG photo")
    return np.ascontiguousarray(image[:, :, ::-1])  # BGR -> RGB


def _quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns a player applies to show this frame (its display matrix), 0..3."""
    return int(round((getattr(frame, "rotation", 0) or 0) / 90.0)) % 4


def _frame_to_rgb(frame, reformatter=None) -> np.ndarray:
    """RGB of a decoded frame; a `VideoReformatter` kept for the stream reuses its scaler (same pixels, less set-up)"""
    image = (reformatter.reformat(frame, format="rgb24") if reformatter else frame).to_ndarray(format="rgb24")
    rotation = _quarter_turns(frame)
    if rotation:  # phone videos: apply the display matrix like a player does (counter-clockwise quarter turns)
        image = np.ascontiguousarray(np.rot90(image, k=rotation))
    return image


def iter_frames(path, fps: float = 25.0, start: int = 0) -> Iterator[np.ndarray]:
    """Yield RGB uint8 (H, W, 3) frames on a constant `fps` grid, from grid frame `start` on.

    A still image yields exactly one frame (whatever `start`). Frames are decoded lazily; converting to RGB happens
    only for frames that are delivered, and a frame repeated on the grid is converted once (the same array is
    yielded again: treat frames as read-only, copy before drawing on them).
    """
    path = _check_file(path)
    if fps is None or fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if is_image_file(path):
        yield _read_image(path)
        return
    av = _av()
    container = _open(path)
    try:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream; pass a face video or a photo")
        stream = container.streams.video[0]
        # slice threads only: frame threading decodes ahead on background threads, which steal the cores of a
        # generator running on the CPU (measured: generator calls 21.5 s -> 17.6 s per 250 frames, bench_generate)
        stream.thread_type = "SLICE"
        time_base = stream.time_base
        grid_step = Fraction(fps).limit_denominator(1_000_000) ** -1
        # the timeline's origin in seconds (timing model); None for some raw streams -> the first decoded frame
        origin = _timeline_origin(container) if _stream_start(stream) is not None else None
        if start > 0 and origin is not None:
            # Seek to the keyframe at or before the first wanted grid time; decoding catches up from there.
            target = int((origin + start * grid_step) / time_base)
            container.seek(max(target, stream.start_time), stream=stream, backward=True, any_frame=False)
        fallback_duration = (1 / stream.average_rate) if stream.average_rate else grid_step

        def decoded():
            try:
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    yield frame
            except av.error.FFmpegError as err:
                raise MediaError(f"cannot decode the video of {path} ({err}); re-encode it, e.g. to H.264 "
                                 "mp4") from err

        frames = decoded()
        current = next(frames, None)
        if current is None:
            raise MediaError(f"{path} contains no video frames; pass a face video or a photo")
        if origin is None:
            origin = current.pts * time_base

        def seconds(frame) -> Fraction:
            return frame.pts * time_base - origin

        def duration(frame) -> Fraction:
            return frame.duration * time_base if frame.duration else fallback_duration

        upcoming = next(frames, None)
        current_rgb, reformatter = None, av.video.reformatter.VideoReformatter()
        index = start
        while True:
            grid_time = index * grid_step
            while upcoming is not None and seconds(upcoming) <= grid_time + _TIMESTAMP_TOLERANCE:
                current, current_rgb = upcoming, None
                upcoming = next(frames, None)
            if upcoming is None and grid_time >= seconds(current) + duration(current) - _TIMESTAMP_TOLERANCE:
                return
            if current_rgb is None:
                current_rgb = _frame_to_rgb(current, reformatter)
            yield current_rgb
            index += 1
    finally:
        container.close()


def read_frames(path, fps: float = 25.0, max_frames: int | None = None) -> np.ndarray:
    """All (or the first `max_frames`) grid frames as one (T, H, W, 3) uint8 RGB array; for short clips only."""
    frames = []
    for frame in iter_frames(path, fps=fps):
        if max_frames is not None and len(frames) >= max_frames:
            break
        frames.append(frame)
    return np.stack(frames)


def count_grid_frames(path, fps: float = 25.0) -> int:
    """Number of frames `iter_frames(path, fps)` delivers, computed from packet timestamps (no decoding)."""
    path = _check_file(path)
    if is_image_file(path):
        return 1
    container = _open(path)
    try:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream; pass a face video or a photo")
        stream = container.streams.video[0]
        time_base = stream.time_base
        fallback = (1 / stream.average_rate) if stream.average_rate else Fraction(1, 25)
        first, end = None, None
        for packet in container.demux(stream):
            if packet.pts is None or not packet.size:
                continue
            first = packet.pts if first is None else min(first, packet.pts)
            packet_end = packet.pts * time_base + (packet.duration * time_base if packet.duration else fallback)
            end = packet_end if end is None else max(end, packet_end)
        if first is None:
            raise MediaError(f"{path} contains no video frames; pass a face video or a photo")
        origin = _timeline_origin(container) if _stream_start(stream) is not None else first * time_base
        span = end - origin
        grid_step = Fraction(fps).limit_denominator(1_000_000) ** -1
        # grid frames i with i * step < span (up to the tolerance iter_frames applies)
        return max(1, -(-(span - _TIMESTAMP_TOLERANCE) // grid_step))
    finally:
        container.close()


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------


#: x264 preset of the videos talkface writes. Measured on clip01 (512x512, 100 frames, crf 18, one thread, this 2-core
#: CPU): veryfast 14.4 ms/frame, 775 kB, PSNR 38.5 dB against the frames given; superfast 10.4 ms, 976 kB, 38.8 dB;
#: ultrafast 5.8 ms, 1563 kB, 39.1 dB. The same crf keeps the picture (PSNR even a little higher); ultrafast spends
#: about twice the bytes to take the encode, the largest per-frame cost outside the generator, from 14 to 6 ms.
X264_PRESET = "ultrafast"


class VideoWriter:
    """Streaming H.264 (yuv420p) + AAC mp4 writer; a context manager.

    >>> with VideoWriter("out.mp4", fps=25, width=512, height=512, audio=waveform) as writer:
    ...     for frame in frames:
    ...         writer.write(frame)  # RGB uint8 (height, width, 3)

    Audio (mono float32 at `sampling_rate`) is encoded alongside the video as frames arrive, so both streams start
    at time 0 and stay interleaved. Write round(audio_seconds * fps) frames to get a video exactly as long as the
    audio (within one frame). Odd sizes are padded by one pixel (edge replicated), since yuv420p needs even sizes.

    The file goes through `talkface.utils.io.SafeOutput`: a temporary name beside `out_path`, renamed on a successful
    close; on an exception inside the `with` block, `abort()`, SIGINT, SIGTERM or SIGHUP the temporary file is
    deleted and nothing appears at `out_path`. `inputs` ({flag: path} or paths) are refused as `out_path`, also
    through links; a full disk is a one-line `OutputError`.
    """

    def __init__(self, out_path, fps: float, width: int, height: int, audio: np.ndarray | None = None,
                 sampling_rate: int = 16000, metadata: dict | None = None, crf: int = 18, preset: str = X264_PRESET,
                 threads: int | None = None, inputs=None):
        self.out_path = Path(out_path)
        self.fps = Fraction(fps).limit_denominator(10_000)
        self.width, self.height = int(width), int(height)
        self.encoded_width, self.encoded_height = self.width + self.width % 2, self.height + self.height % 2
        self.sampling_rate = int(sampling_rate)
        self.audio = None if audio is None else np.asarray(audio, dtype=np.float32).reshape(-1)
        self.metadata = dict(metadata or {})
        # x264 threads (None: x264's own choice). Where a network shares the CPU with the encoder, 1 keeps x264's
        # background frame threads from stealing cores from the network mid-batch.
        self.crf, self.preset, self.threads = crf, preset, threads
        self.frames_written = 0
        self._audio_cursor = 0
        self._container = None
        self._inputs = inputs
        self._output = None  # the SafeOutput (temporary file beside out_path) while the file is open
        check_output(self.out_path, inputs)

    # -- context manager --------------------------------------------------------------------------------------
    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
            return False
        self.abort()
        full = disk_full_error(exc, self.out_path) if isinstance(exc, OSError) else None
        if full is not None:
            raise full from exc
        return False

    def open(self):
        av = _av()
        self._output = SafeOutput(self.out_path, self._inputs, suffix=".mp4", example="result.mp4")
        try:
            self._container = av.open(str(self._output.tmp_path), mode="w", format="mp4",
                                      options={"movflags": "+faststart"})
        except (av.error.FFmpegError, OSError) as err:
            self.abort()
            raise (disk_full_error(err, self.out_path) or
                   MediaError(f"cannot write {self.out_path} ({err}); choose a writable output path")) from err
        for key, value in self.metadata.items():
            self._container.metadata[key] = str(value)
        video = self._container.add_stream("libx264", rate=self.fps)
        video.width, video.height = self.encoded_width, self.encoded_height
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = 1 / self.fps
        video.options = {"crf": str(self.crf), "preset": self.preset,
                         **({"threads": str(self.threads)} if self.threads else {})}
        self._video = video
        self._audio_stream = None
        if self.audio is not None and len(self.audio):
            audio_stream = self._container.add_stream("aac", rate=self.sampling_rate)
            audio_stream.layout = "mono"
            audio_stream.codec_context.time_base = Fraction(1, self.sampling_rate)
            self._audio_stream = audio_stream
        return self

    def write(self, frame_rgb: np.ndarray):
        """Encode one RGB uint8 (height, width, 3) frame."""
        av = _av()
        if self._container is None:
            raise RuntimeError("VideoWriter.write called before open() / outside its `with` block")
        self._output.raise_if_stopped()
        if frame_rgb.shape != (self.height, self.width, 3) or frame_rgb.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame of shape {(self.height, self.width, 3)}, got "
                             f"{frame_rgb.dtype} {frame_rgb.shape}")
        if (self.encoded_width, self.encoded_height) != (self.width, self.height):
            frame_rgb = np.pad(frame_rgb, ((0, self.encoded_height - self.height),
                                           (0, self.encoded_width - self.width), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame_rgb), format="yuv420p")
        frame.pts = self.frames_written
        frame.time_base = 1 / self.fps
        self._container.mux(self._video.encode(frame))
        self.frames_written += 1
        # Keep the audio up to date with the video so the muxer interleaves them and nothing piles up in memory.
        self._write_audio_until(int(self.frames_written / self.fps * self.sampling_rate))

    def _write_audio_until(self, end_sample: int | None):
        if self._audio_stream is None:
            return
        av = _av()
        end_sample = len(self.audio) if end_sample is None else min(end_sample, len(self.audio))
        block = 4096
        while self._audio_cursor < end_sample:
            stop = min(self._audio_cursor + block, end_sample)
            samples = self.audio[self._audio_cursor:stop].reshape(1, -1)  # (channels=1, samples)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout="mono")
            frame.sample_rate = self.sampling_rate
            frame.pts = self._audio_cursor
            frame.time_base = Fraction(1, self.sampling_rate)
            self._container.mux(self._audio_stream.encode(frame))
            self._audio_cursor = stop

    def close(self):
        """Flush the encoders, finish the file and move it to `out_path`."""
        if self._container is None:
            return
        try:
            self._output.raise_if_stopped()  # a signal removed the temporary: stop as the handler did
            if self.frames_written == 0:
                raise MediaError(f"no frames were written to {self.out_path}; nothing to save")
            self._write_audio_until(None)
            self._container.mux(self._video.encode(None))
            if self._audio_stream is not None:
                self._container.mux(self._audio_stream.encode(None))
            self._container.close()
            self._container = None
            self._output.commit()
        except BaseException as err:
            self.abort()
            full = disk_full_error(err, self.out_path) if isinstance(err, OSError) else None
            if full is not None:
                raise full from err
            raise

    def abort(self):
        """Drop everything written so far; nothing is left at `out_path` or at the temporary path."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception as err:  # closing a half-written file may fail; it is deleted just below anyway
                logger.debug("ignored error while closing an aborted video: %s", err)
            self._container = None
        if self._output is not None:
            self._output.abort()


def check_writable(out_path, inputs=None) -> Path:
    """Raise a one-line `OutputError` unless a file can be created at `out_path` without touching `inputs`."""
    return check_output(out_path, inputs, example="result.mp4")
