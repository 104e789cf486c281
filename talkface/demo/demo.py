"""What the web demo (`app.py`) does, without the page: configuration, lazily loaded models, upload checks and the
two actions (generate a lip-synced video; score videos).

`app.py` builds the Gradio page and turns the `TalkFaceUserError`s raised here into `gr.Error` messages, so this
module does not import gradio and can be tested on its own:

    demo = TalkFaceDemo(DemoConfig(generators={"wav2lip": "models/wav2lip"}, syncnet="models/syncnet-lse"))
    result = demo.generate(face_video="face.mp4", audio="speech.wav")
    result.video, result.score_rows

Models (generators, SyncNet for LSE, AV-HuBERT for AVS, GFPGAN for enhancement) are folders made by `talkface
convert` or Hub ids. Each is loaded the first time it is needed, once per process (thread-safe), and kept. A model
that is not configured or not found is reported with the command that provides it; everything that does not need
it keeps working.

Files: every request works in its own temporary folder, deleted when it ends (also on errors). What the page shows
(videos, tables to download, plots) is moved to `cache_dir/outputs/<request>/`; request folders older than
`cache_max_age` seconds are deleted at the start of each request.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MediaError, MissingDependencyError, ModelLoadError, NoFaceError, TalkFaceUserError
from ..evaluation.evaluate import (
    EVALUATION_FPS,
    EvaluationContext,
    EvaluationOptions,
    EvaluationReport,
    FilePair,
    PairMedia,
    write_report,
)
from ..metrics import METRICS, REFERENCE
from ..pipelines.lipsync.watermark import Watermarker

logger = logging.getLogger(__name__)

#: longest face video / audio the demo accepts (seconds); `talkface generate` has no limit
DEFAULT_MAX_SECONDS = 60.0
#: largest upload Gradio accepts
DEFAULT_MAX_FILE_SIZE = "200mb"
#: decoded frames (RGB at the evaluation frame rate) a scored video may fill in memory
MAX_SCORE_DECODED_BYTES = 2 * 2**30
#: most videos scored in one request
DEFAULT_MAX_FILES = 8
#: outputs older than this (seconds) are deleted
DEFAULT_CACHE_MAX_AGE = 3600
#: metrics of the Score tab, in table order (FID and WER are data-set metrics: use `talkface evaluate`)
SCORE_METRICS = ("lse", "avs", "ssim", "psnr", "lmd")
#: metrics shown for a generated video (no ground truth exists for it)
RESULT_METRICS = ("lse", "avs")
#: what a metric field means, for the result table
FIELD_HELP = {
    "lse_d": "LSE-D: SyncNet distance, lower is better",
    "lse_c": "LSE-C: SyncNet confidence, higher is better",
    "offset": "AV offset in frames found by SyncNet (0 = in sync)",
    "avs_u": "AVS_u: AV-HuBERT lips-vs-audio similarity, higher is better",
    "avs_m": "AVS_m: AV-HuBERT similarity to the ground truth (audio-visual), higher is better",
    "avs_v": "AVS_v: AV-HuBERT similarity to the ground truth (visual), higher is better",
    "ssim": "SSIM to the ground truth, higher is better",
    "psnr": "PSNR to the ground truth (dB), higher is better",
    "lmd": "mouth landmark distance to the ground truth, lower is better",
}

GENERATOR_HINT = (
    "download the Wav2Lip checkpoint wav2lip_gan.pth (see https://github.com/Rudrabha/Wav2Lip), run "
    "`talkface convert wav2lip --checkpoint wav2lip_gan.pth --out models/wav2lip` and start the demo with "
    "`python app.py --generator wav2lip=models/wav2lip` (or set TALKFACE_GENERATOR=wav2lip=models/wav2lip)"
)
SYNCNET_HINT = (
    "download syncnet_v2.model (http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model), run "
    "`talkface convert syncnet-lse --checkpoint syncnet_v2.model --out models/syncnet-lse` and start the demo with "
    "`--syncnet models/syncnet-lse` (or set TALKFACE_SYNCNET_LSE)"
)
AVHUBERT_HINT = (
    "download an AV-HuBERT checkpoint (e.g. base_vox_iter5.pt from https://facebookresearch.github.io/av_hubert), "
    "run `talkface convert avhubert --checkpoint base_vox_iter5.pt --out models/avhubert` and start the demo with "
    "`--avhubert models/avhubert` (or set TALKFACE_AVHUBERT)"
)
GFPGAN_HINT = (
    "download GFPGANv1.4.pth (https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth), run "
    "`talkface convert gfpgan --checkpoint GFPGANv1.4.pth --out models/gfpgan-v1.4` and start the demo with "
    "`--gfpgan models/gfpgan-v1.4` (or set TALKFACE_GFPGAN)"
)

#: folders used when no flag or environment variable names a model (the `--out` folders of the hints above)
DEFAULT_MODEL_FOLDERS = {
    "generators": {"wav2lip": "models/wav2lip", "talklip": "models/talklip", "talkface": "models/talkface"},
    "syncnet": "models/syncnet-lse",
    "avhubert": "models/avhubert",
    "gfpgan": "models/gfpgan-v1.4",
}
TINY_RANDOM_LABEL = "random weights, for testing the UI only"
NEEDS_GROUND_TRUTH = "needs a ground-truth video (upload one under 'Ground-truth video')"


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class DemoConfig:
    """Settings of the demo (the flags of `app.py`).

    generators: display name -> generator folder or Hub id (Wav2Lip, TalkLip, our generator).
    syncnet / avhubert / gfpgan: SyncNet LSE, AV-HuBERT and GFPGAN folders or Hub ids (None: not configured).
    device: torch device for every model ("auto": cuda, then mps, then cpu).
    face_backend: talkface.faces backend for tracking and landmarks.
    max_video_seconds / max_audio_seconds: longest accepted face video / audio.
    max_files: most videos scored in one request.
    cache_dir: where outputs handed to the page live (pruned); default: a folder in the system temp folder.
    cache_max_age: seconds an output is kept.
    tiny_random: the models are tiny random ones made by `create_tiny_random_models` (the page says so).
    """

    generators: dict[str, str] = field(default_factory=dict)
    syncnet: str | None = None
    avhubert: str | None = None
    gfpgan: str | None = None
    device: str = "auto"
    face_backend: str = "mediapipe"
    max_video_seconds: float = DEFAULT_MAX_SECONDS
    max_audio_seconds: float = DEFAULT_MAX_SECONDS
    max_files: int = DEFAULT_MAX_FILES
    cache_dir: Path | None = None
    cache_max_age: float = DEFAULT_CACHE_MAX_AGE
    tiny_random: bool = False

    def __post_init__(self):
        if self.cache_dir is None:
            self.cache_dir = Path(tempfile.gettempdir()) / "talkface-demo"
        self.cache_dir = Path(self.cache_dir).expanduser()
        for name in ("max_video_seconds", "max_audio_seconds", "max_files", "cache_max_age"):
            if not getattr(self, name) > 0:
                raise TalkFaceUserError(f"{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")


def parse_generator_specs(specs) -> dict[str, str]:
    """["wav2lip=models/wav2lip", "models/talklip", ...] -> {"wav2lip": ..., "talklip": ...}.

    A spec without a name is named after its folder (or the last part of its Hub id).
    """
    generators = {}
    for spec in specs or []:
        spec = spec.strip()
        if not spec:
            continue
        name, sep, source = spec.partition("=")
        if not sep:
            name, source = Path(spec.rstrip("/\\")).name or spec, spec
        name, source = name.strip(), source.strip()
        if not name or not source:
            raise TalkFaceUserError(f"bad generator {spec!r}; write NAME=FOLDER_OR_HUB_ID, e.g. "
                                    "wav2lip=models/wav2lip")
        if name in generators:
            raise TalkFaceUserError(f"two generators are named {name!r}; give each its own NAME=")
        generators[name] = source
    return generators


def config_from_args(args, environ=None) -> DemoConfig:
    """A `DemoConfig` from app.py's parsed flags, then environment variables, then the default model folders.

    With `args.demo_tiny_models`, tiny random models are written to cache_dir/tiny-random-models and used for
    every model role that no flag or variable names.
    """
    environ = os.environ if environ is None else environ
    generators = parse_generator_specs(args.generator or environ.get("TALKFACE_GENERATOR", "").split(","))
    models = {
        "syncnet": args.syncnet or environ.get("TALKFACE_SYNCNET_LSE") or None,
        "avhubert": args.avhubert or environ.get("TALKFACE_AVHUBERT") or None,
        "gfpgan": args.gfpgan or environ.get("TALKFACE_GFPGAN") or None,
    }
    config = DemoConfig(generators=generators, device=args.device, face_backend=args.face_backend,
                        max_video_seconds=args.max_video_seconds, max_audio_seconds=args.max_audio_seconds,
                        max_files=args.max_files, cache_dir=args.cache_dir, cache_max_age=args.cache_max_age,
                        tiny_random=args.demo_tiny_models, **models)
    if args.demo_tiny_models:
        tiny = create_tiny_random_models(config.cache_dir / "tiny-random-models")
        if not config.generators:
            config.generators = {f"tiny-wav2lip ({TINY_RANDOM_LABEL})": str(tiny["generator"])}
        config.syncnet = config.syncnet or str(tiny["syncnet"])
        config.avhubert = config.avhubert or str(tiny["avhubert"])
        return config
    # nothing named: use the conventional folders of the conversion commands when they exist
    if not config.generators:
        config.generators = {name: folder for name, folder in DEFAULT_MODEL_FOLDERS["generators"].items()
                             if (Path(folder) / "config.json").is_file()}
    for role in ("syncnet", "avhubert", "gfpgan"):
        folder = DEFAULT_MODEL_FOLDERS[role]
        if getattr(config, role) is None and (Path(folder) / "config.json").is_file():
            setattr(config, role, folder)
    return config


def create_tiny_random_models(folder) -> dict[str, Path]:
    """Write a tiny random Wav2Lip, SyncNet LSE and AV-HuBERT to `folder` (once) and return their folders.

    Their outputs are noise: they exist so that the page can be tried (and tested) end to end on a machine without
    converted weights. Built with a fixed seed, so every run makes the same models.
    """
    import torch

    from ..models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
    from ..models.avhubert import AVHubertConfig, AVHubertModel
    from ..models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor
    from ..models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEFeatureExtractor, SyncNetLSEModel
    from ..models.wav2lip import Wav2LipConfig, Wav2LipModel

    folder = Path(folder)
    folders = {"generator": folder / "wav2lip", "syncnet": folder / "syncnet-lse", "avhubert": folder / "avhubert"}
    builders = {
        "generator": lambda: [
            Wav2LipModel(Wav2LipConfig(
                img_size=48, hidden_size=16, face_encoder_channels=[4, 8, 8, 16, 16],
                face_encoder_kernel_sizes=[7, 3, 3, 3, 3], face_encoder_strides=[1, 2, 2, 2, 2],
                face_encoder_residual_layers=[0, 1, 1, 0, 0], audio_encoder_channels=[4, 8, 8, 16],
                audio_encoder_residual_layers=[1, 0, 1, 0], decoder_channels=[16, 16, 8, 8, 4],
                decoder_residual_layers=[1, 0, 1, 1, 0], output_hidden_channels=4)),
            TalkingFaceAudioFeatureExtractor()],
        "syncnet": lambda: [
            _spread_weights(SyncNetLSEModel(SyncNetLSEConfig(
                audio_channels=[4, 6, 8, 8, 8, 12], video_channels=[4, 6, 8, 8, 8, 12], fc_hidden_size=10,
                embedding_size=7, image_size=64))),
            SyncNetLSEFeatureExtractor(image_size=64)],
        "avhubert": lambda: [
            AVHubertModel(AVHubertConfig(
                encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
                conv_pos=8, conv_pos_groups=4, video_frontend_channels=8, resnet_channels=(8, 8, 16, 16),
                resnet_blocks=(1, 1, 1, 1))),
            AVHubertFeatureExtractor()],
    }
    for role, build in builders.items():
        target = folders[role]
        if (target / "config.json").is_file():
            continue
        torch.manual_seed(0)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
        for item in build():
            item.save_pretrained(partial)
        try:
            partial.rename(target)  # another process may have won the race: keep its folder
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    return folders


def _spread_weights(model):
    """He-initialise a tiny random model's weights: with the small default init, a tiny SyncNet's embeddings are
    about 1e-8 and every LSE distance rounds to 0, which looks like a bug on the page."""
    import torch

    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                torch.nn.init.kaiming_normal_(parameter)
    return model


def check_ffmpeg() -> str | None:
    """None when the ffmpeg program is on PATH, else a message saying what is lost and how to install it.

    talkface reads and writes media through PyAV (which bundles the ffmpeg libraries); Gradio calls the `ffmpeg`
    program to convert uploads browsers cannot play (e.g. .mkv, .avi) for preview, and webcam recordings.
    """
    if shutil.which("ffmpeg"):
        return None
    return ("ffmpeg was not found on PATH: videos in formats browsers cannot play (.mkv, .avi, ...) will not "
            "preview on the page. Install it: `sudo apt install ffmpeg` (Debian/Ubuntu), `brew install ffmpeg` "
            "(macOS) or `conda install -c conda-forge ffmpeg`; see https://ffmpeg.org/download.html")


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    """One model role as the page shows it."""

    role: str
    name: str
    source: str | None
    missing: str | None  # None when configured (it may still fail to load; that is reported when used)


def _missing_reason(source: str | None, hint: str) -> str | None:
    """Why a model cannot be used, judged without loading it (None: looks usable)."""
    if not source:
        return f"not configured; {hint}"
    path = Path(source).expanduser()
    # "org/name" may be a Hub id; anything else, or a path whose parent folder exists here, is a local folder
    looks_local = (path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1
                   or "\\" in source or path.parent.is_dir())
    if looks_local and not (path / "config.json").is_file():
        return f"no converted model at {source}; {hint}"
    return None


class LazyModelCache:
    """Loads each model on first use, once per process, and keeps it; safe to use from several threads.

    A failed load is not kept: the next request tries again (the user may have converted the model meanwhile).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._values: dict = {}
        self.load_counts: Counter = Counter()

    def get(self, key: str, load: Callable):
        with self._lock:
            if key in self._values:
                return self._values[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one load per key; other keys load in parallel
            with self._lock:
                if key in self._values:
                    return self._values[key]
            logger.info("loading %s", key)
            value = load()
            with self._lock:
                self._values[key] = value
                self.load_counts[key] += 1
            return value


# ----------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class GenerateResult:
    """What the Generate tab shows."""

    video: Path
    message: str
    score_rows: list[list[str]]  # [metric, value, meaning]
    score_note: str


@dataclass
class ScoreResult:
    """What the Score tab shows."""

    headers: list[str]
    rows: list[list[str]]
    note: str
    plots: list[Path]
    downloads: list[Path]


ProgressCallback = Callable[[float, str], None]


def _no_progress(fraction: float, description: str):
    pass


# ----------------------------------------------------------------------------------------------------------------
# The demo
# ----------------------------------------------------------------------------------------------------------------


class TalkFaceDemo:
    """The actions behind the page; one instance per process, shared by all requests."""

    def __init__(self, config: DemoConfig | None = None):
        self.config = config or DemoConfig()
        self.models = LazyModelCache()
        #: every generated video carries talkface's invisible mark (the pipeline adds the metadata tags)
        self.watermarker = Watermarker()
        self.outputs_dir = self.config.cache_dir / "outputs"
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        self.prune_outputs()

    # -- model status and loading ---------------------------------------------------------------------------------
    def model_status(self) -> list[ModelStatus]:
        config = self.config
        rows = [ModelStatus("generator", name, source, _missing_reason(source, GENERATOR_HINT))
                for name, source in config.generators.items()]
        if not config.generators:
            rows.append(ModelStatus("generator", "-", None, f"not configured; {GENERATOR_HINT}"))
        rows += [
            ModelStatus("lip-sync scorer (LSE)", "SyncNet", config.syncnet, _missing_reason(config.syncnet,
                                                                                              SYNCNET_HINT)),
            ModelStatus("lip-sync scorer (AVS)", "AV-HuBERT", config.avhubert,
                        _missing_reason(config.avhubert, AVHUBERT_HINT)),
            ModelStatus("face enhancer", "GFPGAN", config.gfpgan, _missing_reason(config.gfpgan, GFPGAN_HINT)),
        ]
        return rows

    @property
    def enhancer_missing(self) -> str | None:
        return _missing_reason(self.config.gfpgan, GFPGAN_HINT)

    def _device(self):
        from ..pipelines.lipsync.pipeline import resolve_device

        return resolve_device(self.config.device)

    def pipeline(self, name: str, enhance: bool = False):
        """A `LipSyncPipeline` for this request around the cached generator (its own face backend and hooks)."""
        from ..pipelines.lipsync.pipeline import LipSyncPipeline

        source = self.config.generators.get(name)
        if source is None:
            if not self.config.generators:
                raise ModelLoadError(f"no generator model is configured; {GENERATOR_HINT}")
            raise TalkFaceUserError(f"unknown generator {name!r}; choose one of: {', '.join(self.config.generators)}")
        missing = _missing_reason(source, GENERATOR_HINT)
        if missing:
            raise ModelLoadError(f"generator {name}: {missing}")
        try:
            cached = self.models.get(f"generator:{source}",
                                     lambda: LipSyncPipeline.from_pretrained(source, device=self._device(),
                                                                             model_name=name))
        except ModelLoadError as err:
            if "--checkpoint" in str(err):  # already names the exact command
                raise
            raise ModelLoadError(f"generator {name}: {err}; {GENERATOR_HINT}") from err
        enhancer = self.enhancer() if enhance else None
        return LipSyncPipeline(cached.generator, face_backend=self.config.face_backend, enhancer=enhancer,
                               watermarker=self.watermarker, model_name=cached.model_name)

    def enhancer(self):
        missing = self.enhancer_missing
        if missing:
            raise ModelLoadError(f"face enhancement needs GFPGAN, which is {missing}")
        from ..pipelines.lipsync.enhancer import load_enhancer

        source = self.config.gfpgan
        return self.models.get(f"gfpgan:{source}", lambda: load_enhancer("gfpgan", source, device=self._device()))

    def lse_scorer(self):
        missing = _missing_reason(self.config.syncnet, SYNCNET_HINT)
        if missing:
            raise ModelLoadError(f"SyncNet (for LSE) is {missing}")
        from ..metrics.sync import LSEScorer

        source = self.config.syncnet
        return self.models.get(f"syncnet:{source}", lambda: LSEScorer.from_pretrained(source, device=self._device()))

    def avs_scorer(self, face_backend):
        """An `AVSScorer` around the cached AV-HuBERT, using this request's face backend (backends hold state)."""
        missing = _missing_reason(self.config.avhubert, AVHUBERT_HINT)
        if missing:
            raise ModelLoadError(f"AV-HuBERT (for AVS) is {missing}")
        from ..metrics.avs import AVSScorer, load_avhubert

        source = self.config.avhubert
        model, feature_extractor = self.models.get(f"avhubert:{source}",
                                                   lambda: load_avhubert(source, device=self._device()))
        return AVSScorer(model, feature_extractor, face_backend=face_backend)

    # -- files ----------------------------------------------------------------------------------------------------
    def prune_outputs(self):
        """Delete output folders older than `cache_max_age` seconds."""
        limit = time.time() - self.config.cache_max_age
        for entry in self.outputs_dir.iterdir():
            try:
                if entry.stat().st_mtime < limit:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            except OSError:  # another request pruned it first
                pass

    def _new_output_dir(self) -> Path:
        folder = self.outputs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    # -- upload checks --------------------------------------------------------------------------------------------
    def check_face(self, path):
        """Probe the face upload: a readable video (not too long) or photo. Returns its MediaInfo."""
        from .. import media

        name = _display_name(path)
        try:
            info = media.probe(path)
        except MediaError as err:
            logger.info("unreadable face upload: %s", err)
            raise MediaError(f"the face file {name} is not a video or photo that can be read; upload a video (mp4, "
                             "mov, webm, mkv, ...) or a photo (png, jpg)") from err
        if not info.has_video:
            raise MediaError(f"the face file {name} has no picture (is it an audio file?); upload a video or photo "
                             "showing a face")
        if not info.is_image and info.duration > self.config.max_video_seconds:
            raise MediaError(f"the face video {name} lasts {info.duration:.1f} s; this demo accepts at most "
                             f"{self.config.max_video_seconds:g} s: upload a shorter clip (or use `talkface "
                             "generate` on your machine, which has no limit)")
        return info

    def check_audio(self, path, role="audio"):
        """Probe an audio upload (or a video used for its sound): it must have sound and not be too long."""
        from .. import media

        name = _display_name(path)
        try:
            info = media.probe(path)
        except MediaError as err:
            logger.info("unreadable %s upload: %s", role, err)
            raise MediaError(f"the {role} file {name} cannot be read as audio; upload a speech recording (wav, mp3, "
                             "m4a, flac, ...)") from err
        if not info.has_audio:
            raise MediaError(f"the {role} file {name} has no sound; upload a speech recording (wav, mp3, ...) or a "
                             "video with sound")
        if info.audio_duration > self.config.max_audio_seconds:
            raise MediaError(f"the {role} file {name} lasts {info.audio_duration:.1f} s; this demo accepts at most "
                             f"{self.config.max_audio_seconds:g} s: upload a shorter recording")
        return info

    def check_video(self, path, role="video"):
        """Probe a video to score: it must have a picture (a still image is not a video) and not be too long."""
        from .. import media

        name = _display_name(path)
        try:
            info = media.probe(path)
        except MediaError as err:
            logger.info("unreadable %s upload: %s", role, err)
            raise MediaError(f"the {role} {name} cannot be read as a video; upload video files (mp4, mov, webm, mkv, "
                             "...)") from err
        if info.is_image or not info.has_video:
            raise MediaError(f"the {role} {name} is not a video; upload video files (mp4, mov, webm, mkv, ...)")
        if info.duration > self.config.max_video_seconds:
            raise MediaError(f"the {role} {name} lasts {info.duration:.1f} s; this demo accepts at most "
                             f"{self.config.max_video_seconds:g} s per video: upload shorter clips (or use "
                             "`talkface evaluate` on your machine)")
        # scoring holds a video's frames in memory (at 25 fps): refuse what would not fit
        decoded_bytes = info.duration * EVALUATION_FPS * info.width * info.height * 3
        if decoded_bytes > MAX_SCORE_DECODED_BYTES:
            raise MediaError(f"the {role} {name} ({info.width}x{info.height}, {info.duration:.1f} s) is too large to "
                             f"score here (about {decoded_bytes / 2**30:.1f} GiB of frames, at most "
                             f"{MAX_SCORE_DECODED_BYTES / 2**30:.1f}); upload a shorter or smaller version "
                             "(e.g. 720p)")
        return info

    # -- Generate -------------------------------------------------------------------------------------------------
    def generate(self, face_video=None, face_photo=None, audio=None, generator: str | None = None,
                 face_index: int = 0, pads=(0, 10, 0, 0), duration_policy: str = "pingpong",
                 blend: str = "feather", feather: float = 0.15, enhance: bool = False,
                 score: bool = True, progress: ProgressCallback = _no_progress) -> GenerateResult:
        """Lip-sync the face video (or photo) to the audio; score the result when scorers are configured."""
        face = face_video or face_photo
        if not face:
            raise TalkFaceUserError("no face given: upload a face video (or, in the 'Face photo' tab, a photo)")
        if not audio:
            raise TalkFaceUserError("no audio given: upload a speech recording or record one with the microphone")
        self.check_face(face)
        self.check_audio(audio)
        generator = generator or next(iter(self.config.generators), "")
        try:
            face_index = int(face_index)
            pads = tuple(int(p) for p in pads)
        except (TypeError, ValueError) as err:
            raise TalkFaceUserError(f"face index and padding must be whole numbers ({err})") from err
        if enhance and self.enhancer_missing:
            raise ModelLoadError(f"face enhancement needs GFPGAN, which is {self.enhancer_missing}")

        self.prune_outputs()
        progress(0.0, f"loading {generator}")
        pipeline = self.pipeline(generator, enhance=enhance)
        name = f"talkface_{_safe_stem(face)}_{_safe_stem(audio)}.mp4"
        with tempfile.TemporaryDirectory(prefix="talkface-demo-") as work:
            work_out = Path(work) / name
            share = 0.85 if score else 1.0

            def report(done, total):
                progress(share * done / max(total, 1), f"lip-sync: frame {done} of {total}")

            try:
                result = pipeline(face=face, audio=audio, out=work_out, face_index=face_index, pads=pads,
                                  duration_policy=duration_policy, blend=blend, feather=feather, progress=report)
            except NoFaceError as err:
                raise NoFaceError(
                    f"no face found in {_display_name(face)} (face index {face_index}); upload a video or photo in "
                    "which the face is clearly visible (front view, not too small), or lower the face index") from err
            finally:
                _close_backend(pipeline)
            out = self._new_output_dir() / name
            shutil.move(str(work_out), out)
        message = (f"{result.num_frames} frames at {result.fps:g} fps ({result.duration:.2f} s) with "
                   f"{generator}")
        if result.frames_without_face:
            message += f"; {result.frames_without_face} frames without a detectable face were left unchanged"
        rows, note = [], ""
        if score:
            rows, note = self._score_generated(out, lambda f, d: progress(share + (1 - share) * f, d))
        progress(1.0, "done")
        return GenerateResult(video=out, message=message, score_rows=rows, score_note=note)

    def _score_generated(self, video: Path, progress: ProgressCallback) -> tuple[list[list[str]], str]:
        """LSE and AVS_u of a generated video with its own sound track."""
        options = EvaluationOptions(face_mode="track", face_backend=self.config.face_backend, plots=False,
                                    use_cache=False)
        pair = FilePair(stem=video.stem, generated=video)
        run = self._run_metrics([pair], RESULT_METRICS, options, progress)
        values = run["files"][0]["values"]
        rows = [[name, _format_value(values[name], name), FIELD_HELP.get(name, "")]
                for metric in RESULT_METRICS for name in _fields(metric) if name in values]
        notes = [f"**{metric.upper()}** not computed: {reason}" for metric, reason in run["unavailable"].items()]
        notes += [f"**{item['metric'].upper()}** not computed: {item['reason']}" for item in run["skipped"]]
        if rows and self.config.tiny_random:
            notes.append(f"The scoring models have {TINY_RANDOM_LABEL}: these numbers mean nothing.")
        return rows, "\n\n".join(notes)

    # -- Score ----------------------------------------------------------------------------------------------------
    def score(self, videos, audios=None, references=None, face_mode: str = "track",
              progress: ProgressCallback = _no_progress) -> ScoreResult:
        """Every available metric of each video, with per-frame sync curves and downloadable results."""
        videos = _as_list(videos)
        if not videos:
            raise TalkFaceUserError("no video given: upload one or more videos to score")
        if len(videos) > self.config.max_files:
            raise TalkFaceUserError(f"{len(videos)} videos given; this demo scores at most {self.config.max_files} at "
                                    "once (use `talkface evaluate` for folders)")
        audios, references = _as_list(audios), _as_list(references)
        for video in videos:
            self.check_video(video)
        for audio in audios:
            self.check_audio(audio, role="audio")
        for reference in references:
            self.check_video(reference, role="ground-truth video")
        stems = _unique_stems(videos)
        audio_for = _match_files(audios, videos, stems, "audio files")
        reference_for = _match_files(references, videos, stems, "ground-truth videos")
        pairs = [FilePair(stem=stem, generated=Path(video), reference=reference_for[i], audio=audio_for[i])
                 for i, (stem, video) in enumerate(zip(stems, videos))]
        options = EvaluationOptions(face_mode=face_mode, face_backend=self.config.face_backend, use_cache=False)
        self.prune_outputs()
        run = self._run_metrics(pairs, SCORE_METRICS, options, lambda f, d: progress(0.95 * f, d))
        runnable = [m for m in SCORE_METRICS if m not in run["unavailable"]]
        # columns that no video has a value for (AVS_m / AVS_v without a ground truth) are left out, with the reason
        fields = [name for metric in runnable for name in _fields(metric)
                  if any(name in row["values"] for row in run["files"])]
        left_out = {}
        for row in run["files"]:
            for name, reason in row["details"].get("avs", {}).get("skipped", {}).items():
                if name not in fields:  # the scorer's reason names a CLI flag; say it in the page's words
                    left_out.setdefault(name, NEEDS_GROUND_TRUTH if "reference" in reason else reason)
        summary = _summary(runnable, run["files"])

        skipped_by_stem = {}
        for item in run["skipped"]:
            skipped_by_stem.setdefault(item["stem"], []).append(f"{item['metric']}: {item['reason']}")
        headers = ["file", *fields, "notes"]
        rows = [[row["stem"], *(_format_value(row["values"].get(name), name) for name in fields),
                 "; ".join(skipped_by_stem.get(row["stem"], []))] for row in run["files"]]
        if len(rows) > 1:
            rows.append(["mean", *(_format_value(summary.get(name, {}).get("value"), name) for name in fields), ""])
        notes = [f"- **{metric.upper()}** not computed: {reason}" for metric, reason in run["unavailable"].items()]
        notes += [f"- **{name}** not computed: {reason}" for name, reason in left_out.items()]
        if self.config.tiny_random and any(m in runnable for m in ("lse", "avs")):
            notes.append(f"- LSE and AVS come from models with {TINY_RANDOM_LABEL}: those numbers mean nothing.")
        legend = ("**Columns**: " + "; ".join(FIELD_HELP[name] for name in fields) + ".") if fields else ""

        progress(0.95, "writing plots")
        report = EvaluationReport(metrics=runnable, summary=summary, files=run["files"], skipped=run["skipped"],
                                  unavailable=run["unavailable"], unpaired_references=[],
                                  settings=_settings(options))
        output = self._new_output_dir()
        with tempfile.TemporaryDirectory(prefix="talkface-demo-") as work:
            written = write_report(report, work, options)
            downloads = []
            for key in ("csv", "json"):
                if key in written:
                    downloads.append(Path(shutil.move(str(written[key]), output / Path(written[key]).name)))
            plots = []
            for key, path in written.items():
                if key.startswith("curve_"):
                    plots.append(Path(shutil.move(str(path), output / f"sync_{Path(path).name}")))
        progress(1.0, "done")
        note = "\n\n".join(part for part in (legend, "\n".join(notes)) if part)
        return ScoreResult(headers=headers, rows=rows, note=note, plots=plots, downloads=downloads)

    # -- shared scoring loop --------------------------------------------------------------------------------------
    def _run_metrics(self, pairs, metrics, options, progress: ProgressCallback) -> dict:
        """Run `metrics` on each pair with the demo's cached models.

        Returns {"files": rows as in `EvaluationReport.files`, "skipped": [...], "unavailable": {metric: why}}.
        """
        context = _DemoEvaluationContext(options, self)
        try:
            unavailable = {}
            for metric in metrics:
                spec = METRICS[metric]
                try:
                    if REFERENCE in spec.needs and not any(p.reference is not None for p in pairs):
                        unavailable[metric] = NEEDS_GROUND_TRUTH
                        continue
                    if metric == "lmd" or (metric == "lse" and options.face_mode == "track") or metric == "avs":
                        context.face_backend()
                    if spec.model_option is not None:
                        context.model(metric)
                except (ModelLoadError, MissingDependencyError) as err:
                    unavailable[metric] = str(err).splitlines()[0]
            runnable = [m for m in metrics if m not in unavailable]
            files, skipped = [], []
            steps, done = max(1, len(pairs) * len(runnable)), 0
            for pair in pairs:
                media = PairMedia(pair)
                row = {"stem": pair.stem, "generated": str(pair.generated),
                       "reference": str(pair.reference) if pair.reference else None,
                       "audio": str(pair.audio) if pair.audio else None, "values": {}, "details": {}, "curves": {},
                       "num_frames": {}, "counts": {}}
                for metric in runnable:
                    progress(done / steps, f"{metric.upper()} of {pair.stem}")
                    done += 1
                    spec = METRICS[metric]
                    if REFERENCE in spec.needs and pair.reference is None:
                        skipped.append({"stem": pair.stem, "metric": metric, "reason": "no ground-truth video"})
                        continue
                    module_name, function_name = spec.compute.split(":")
                    compute = getattr(importlib.import_module(module_name), function_name)
                    try:
                        result = compute(media, context)
                    except TalkFaceUserError as err:  # no face, too short, unreadable: reported per file
                        skipped.append({"stem": pair.stem, "metric": metric, "reason": _short(err, 300)})
                        continue
                    row["values"].update(result.get("values", {}))
                    row["curves"].update(result.get("curves", {}))
                    if result.get("details"):
                        row["details"][metric] = result["details"]
                    if "num_frames" in result:
                        row["num_frames"][metric] = result["num_frames"]
                files.append(row)
        finally:
            context.close()
        return {"files": files, "skipped": skipped, "unavailable": unavailable}


class _DemoEvaluationContext(EvaluationContext):
    """`talkface.evaluation.evaluate.EvaluationContext` whose models come from the demo's cache."""

    def __init__(self, options: EvaluationOptions, demo: TalkFaceDemo):
        super().__init__(options)
        self.demo = demo

    def model(self, metric: str):
        if metric == "lse":
            return self.demo.lse_scorer()
        if metric == "avs":
            return self.demo.avs_scorer(self.face_backend())
        return super().model(metric)


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------


def _fields(metric: str) -> tuple[str, ...]:
    return METRICS[metric].fields


def _summary(metrics, files) -> dict:
    """Means over files ("mean") or over all frames ("frame_mean"), as `talkface evaluate` reports them."""
    summary = {}
    for metric in metrics:
        spec = METRICS[metric]
        for name in spec.fields:
            rows = [f for f in files if name in f["values"] and _finite(f["values"][name])]
            if not rows:
                continue
            values = [float(f["values"][name]) for f in rows]
            if spec.aggregate == "frame_mean":
                weights = [f["num_frames"].get(metric, 1) for f in rows]
                value = sum(v * w for v, w in zip(values, weights)) / sum(weights)
            else:
                value = sum(values) / len(values)
            summary[name] = {"value": value, "files": len(rows), "metric": metric,
                             "higher_is_better": spec.higher_is_better.get(name)}
    return summary


def _settings(options) -> dict:
    return dataclasses.asdict(options)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _format_value(value, name: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if name == "offset" and float(value).is_integer():
            return f"{int(value):d}"  # frames
        return f"{value:.3f}"
    return str(value)


def _as_list(files) -> list[str]:
    if files is None:
        return []
    if isinstance(files, (str, Path)):
        return [str(files)]
    return [str(getattr(f, "name", f)) for f in files if f]


def _display_name(path) -> str:
    return f"'{Path(str(path)).name}'"


def _short(err, limit: int = 160) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _safe_stem(path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(path)).stem)[:40] or "input"


def _unique_stems(paths) -> list[str]:
    """File stems, made unique with a suffix when two uploads share a name."""
    stems, seen = [], Counter()
    for path in paths:
        stem = Path(path).stem
        seen[stem] += 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def _match_files(files, videos, stems, what) -> list[Path | None]:
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


def _close_backend(pipeline):
    backend = getattr(pipeline, "face_backend", None)
    if backend is not None and not isinstance(backend, str):
        backend.close()


__all__ = ["DemoConfig", "GenerateResult", "LazyModelCache", "ModelStatus", "ScoreResult", "TalkFaceDemo",
           "check_ffmpeg", "config_from_args", "create_tiny_random_models", "parse_generator_specs"]
