"""Which files are evaluated together: generated videos paired by name with references, audio and transcripts,
and `PairMedia`, which decodes one pair's frames and audio once for all metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TalkFaceUserError

VIDEO_EXTENSIONS = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus"}
TEXT_EXTENSIONS = {".txt"}
#: all metrics read video at this rate (SyncNet and AV-HuBERT were trained on 25 fps)
EVALUATION_FPS = 25.0
#: sample rate the audio is read at (SyncNet MFCCs, AV-HuBERT filterbanks)
EVALUATION_SAMPLING_RATE = 16000


@dataclass
class FilePair:
    """The files of one evaluated item, found by stem."""

    stem: str
    generated: Path
    reference: Path | None = None
    audio: Path | None = None
    text: Path | None = None


def _index_folder(folder: Path, extensions: set[str], what: str) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in extensions:
            continue
        if path.stem in files:
            raise TalkFaceUserError(
                f"{what} folder {folder} has two files named {path.stem!r} ({files[path.stem].name}, {path.name}); "
                "files are paired by name, so keep one"
            )
        files[path.stem] = path
    return files


#: what each folder flag holds, for the message when a file is passed instead
_FOLDER_CONTENTS = {"--generated": "the generated videos", "--reference": "the reference videos",
                    "--audio": "the driving audio files", "--text": "the transcripts NAME.txt"}


def _check_dir(path, flag: str) -> Path:
    folder = Path(path).expanduser()
    if folder.is_file():
        fix = f"pass the folder that holds {_FOLDER_CONTENTS.get(flag, 'the files')} (paired by file name)"
        if flag == "--generated":
            fix += f", or score this one video with `talkface score {path}`"
        raise TalkFaceUserError(f"{flag} {folder} is a file, not a folder; {fix}")
    if not folder.is_dir():
        raise TalkFaceUserError(f"{flag} folder {folder} does not exist; pass an existing folder")
    return folder


def pair_files(generated, reference=None, audio=None, text=None) -> tuple[list[FilePair], list[str]]:
    """Pair the generated videos with reference videos, audio and transcripts of the same stem.

    Returns the pairs (one per generated video, sorted by stem) and the reference files nobody pairs with.
    Raises `TalkFaceUserError` for missing folders, an empty generated folder, or (with `reference`) no file
    name in common.
    """
    generated_dir = _check_dir(generated, "--generated")
    generated_files = _index_folder(generated_dir, VIDEO_EXTENSIONS, "generated")
    if not generated_files:
        raise TalkFaceUserError(
            f"no videos in {generated_dir} (looked for {', '.join(sorted(VIDEO_EXTENSIONS))}); pass the folder of "
            "generated videos"
        )
    references = {}
    if reference is not None:
        references = _index_folder(_check_dir(reference, "--reference"), VIDEO_EXTENSIONS, "reference")
        if not set(references) & set(generated_files):
            raise TalkFaceUserError(
                f"no file name in {generated_dir} matches one in {reference}; files are paired by name (stem), e.g. "
                "generated/abc.mp4 with reference/abc.mp4"
            )
    audios = _index_folder(_check_dir(audio, "--audio"), AUDIO_EXTENSIONS | VIDEO_EXTENSIONS, "audio") if audio else {}
    if text is not None:
        texts = _index_folder(_check_dir(text, "--text"), TEXT_EXTENSIONS, "text")
    elif reference is not None:
        texts = _index_folder(Path(reference), TEXT_EXTENSIONS, "reference")
    else:
        texts = {}
    pairs = [FilePair(stem=stem, generated=path, reference=references.get(stem), audio=audios.get(stem),
                      text=texts.get(stem)) for stem, path in generated_files.items()]
    unpaired = sorted(str(path) for stem, path in references.items() if stem not in generated_files)
    return pairs, unpaired


class PairMedia:
    """Decodes a pair's frames and audio once, on first use, for all metrics (a failure is kept and re-raised)."""

    def __init__(self, pair: FilePair, fps: float = EVALUATION_FPS, sampling_rate: int = EVALUATION_SAMPLING_RATE):
        self.pair = pair
        self.fps = fps
        self.sampling_rate = sampling_rate
        self._values = {}

    def _get(self, key, load):
        if key not in self._values:
            try:
                self._values[key] = (True, load())
            except TalkFaceUserError as err:
                self._values[key] = (False, err)
        ok, value = self._values[key]
        if not ok:
            raise value
        return value

    @property
    def generated_frames(self) -> np.ndarray:
        """RGB uint8 (frames, H, W, 3) at 25 fps."""
        from .. import media

        return self._get("generated", lambda: media.read_frames(self.pair.generated, fps=self.fps))

    @property
    def reference_frames(self) -> np.ndarray:
        from .. import media

        if self.pair.reference is None:
            raise TalkFaceUserError(f"no reference video named {self.pair.stem}.* in the --reference folder")
        return self._get("reference", lambda: media.read_frames(self.pair.reference, fps=self.fps))

    @property
    def audio_source(self) -> Path:
        """--audio file, else the generated video's own sound track."""
        return self.pair.audio or self.pair.generated

    @property
    def audio(self) -> np.ndarray:
        """float32 mono in [-1, 1] at 16 kHz."""
        return self._get("audio", self._read_audio)

    def _read_audio(self) -> np.ndarray:
        from .. import media
        from ..errors import MediaError

        try:
            return media.read_audio(self.audio_source, sampling_rate=self.sampling_rate)
        except MediaError as err:
            try:
                silent = not media.probe(self.audio_source).has_audio
            except MediaError:
                silent = False  # unreadable: the first error says so
            if not silent:
                raise
            fix = "pass the driving speech with --audio" if self.pair.audio is None else "pass a file with sound"
            raise MediaError(f"{self.audio_source} has no sound track; {fix}") from err

    @property
    def audio_coverage(self) -> float:
        """How much of the generated video's duration its audio covers, in [0, 1] (1: the audio is as long or
        longer). Metrics that compare the lips with the audio pad a shorter audio with silence, so below
        `talkface.evaluation.report.SHORT_AUDIO_COVERAGE` their scores say little; the report warns."""
        return self._get("audio_coverage", self._audio_coverage)

    def _audio_coverage(self) -> float:
        from .. import media

        loaded, frames = self._values.get("generated", (False, None))
        num_frames = len(frames) if loaded else media.count_grid_frames(self.pair.generated, fps=self.fps)
        video_seconds = num_frames / self.fps
        return round(min(1.0, len(self.audio) / self.sampling_rate / video_seconds), 4) if video_seconds else 1.0

    @property
    def transcript(self) -> str:
        if self.pair.text is None:
            raise TalkFaceUserError(
                f"no transcript {self.pair.stem}.txt (pass --text DIR or put it beside the reference)")
        from ..pipelines.lip_reading.pipeline import read_reference_text

        # LRS2/LRS3 transcripts hold "Text: ..." lines; a plain text file is used as it is
        return self._get("text", lambda: read_reference_text(str(self.pair.text)))

    def value(self, key, compute):
        """Memoise something derived from the media (e.g. the face-region crops that ssim and psnr share)."""
        return self._get(key, compute)
