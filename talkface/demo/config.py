"""The demo's settings (`DemoConfig`, the flags of app.py), tiny random models to try the page without weights,
and the start-up check for ffmpeg."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TalkFaceUserError
from ..hub import registry
from ..metrics import parse_metric_names
from ..utils.devices import check_device
from ..utils.io import SafeOutput

#: longest face video / audio the demo accepts (seconds); `talkface generate` has no limit
DEFAULT_MAX_SECONDS = 60.0
#: largest upload Gradio accepts
DEFAULT_MAX_FILE_SIZE = "200mb"
#: most videos scored in one request
DEFAULT_MAX_FILES = 8
#: outputs older than this (seconds) are deleted
DEFAULT_CACHE_MAX_AGE = 3600
#: metrics of the Score tab, in table order (FID and WER are data-set metrics: use `talkface evaluate`); the
#: Generate tab shows those of them that need no ground truth
DEFAULT_SCORE_METRICS = ("lse", "avs", "ssim", "psnr", "lmd")

GENERATOR_HINT = (
    "download wav2lip-gan with the Models tab's Download button (or `talkface download wav2lip-gan "
    "--accept-license`), or convert the Wav2Lip checkpoint wav2lip_gan.pth (see https://github.com/Rudrabha/Wav2Lip): "
    "`talkface convert wav2lip --checkpoint wav2lip_gan.pth --out models/wav2lip` and restart the demo from the "
    "folder holding models/ (it finds models/wav2lip by itself; another folder or a Hub id: "
    "`python app.py --generator wav2lip=FOLDER` or TALKFACE_GENERATOR=wav2lip=FOLDER)"
)
GFPGAN_HINT = (
    "download GFPGANv1.4.pth (https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth), run "
    "`talkface convert gfpgan --checkpoint GFPGANv1.4.pth --out models/gfpgan-v1.4` and start the demo with "
    "`--gfpgan models/gfpgan-v1.4` (or set TALKFACE_GFPGAN)"
)

#: folders used when no flag or environment variable names a model: the `--out` folders that the README, the docs
#: (models/wav2lip-gan in docs/models.md and the model cards) and the hints write; generators are named after them
DEFAULT_MODEL_FOLDERS = {
    "generators": {"wav2lip-gan": "models/wav2lip-gan", "wav2lip": "models/wav2lip", "talklip": "models/talklip",
                   "talkface": "models/talkface"},
    "syncnet": "models/syncnet-lse",
    "avhubert": "models/avhubert",
    "gfpgan": "models/gfpgan-v1.4",
    "s3fd": "models/s3fd",
}
#: registry names (`talkface download --list`) used for the roles that no flag, variable or folder above fills
DEFAULT_GENERATOR_NAMES = (registry.DEFAULT_GENERATOR, "wav2lip")
DEFAULT_MODEL_NAMES = {"syncnet": registry.DEFAULT_SYNCNET, "avhubert": registry.DEFAULT_AVHUBERT,
                       "gfpgan": registry.DEFAULT_ENHANCER, "s3fd": registry.DEFAULT_S3FD}
TINY_RANDOM_LABEL = "random weights, for testing the UI only"

#: progress callback of the actions: (fraction done in [0, 1], what is being done)
ProgressCallback = Callable[[float, str], None]


def no_progress(fraction: float, description: str):
    pass


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class DemoConfig:
    """Settings of the demo (the flags of `app.py`).

    generators: display name -> generator folder or Hub id (Wav2Lip, TalkLip, our generator).
    syncnet / avhubert / gfpgan: SyncNet LSE, AV-HuBERT and GFPGAN folders or Hub ids (None: not configured).
    s3fd: S3FD folder for LSE with syncnet_python's protocol (None: that protocol needs a face box).
    device: torch device for every model ("auto": cuda, then mps, then cpu).
    face_backend: talkface.faces backend for tracking and landmarks.
    max_video_seconds / max_audio_seconds: longest accepted face video / audio.
    max_files: most videos scored in one request.
    cache_dir: where outputs handed to the page live (pruned); default: a folder in the system temp folder.
    cache_max_age: seconds an output is kept.
    tiny_random: the models are tiny random ones made by `create_tiny_random_models` (the page says so).
    examples_dir: a folder of example faces and speech for the Generate tab (rule: talkface/demo/examples.py).
    score_metrics: the metrics of the Score tab (names of `talkface.metrics.METRICS`, in table order); the
        Generate tab scores its result with those that need no ground truth.
    """

    generators: dict[str, str] = field(default_factory=dict)
    syncnet: str | None = None
    avhubert: str | None = None
    gfpgan: str | None = None
    s3fd: str | None = None
    device: str = "auto"
    face_backend: str = "mediapipe"
    max_video_seconds: float = DEFAULT_MAX_SECONDS
    max_audio_seconds: float = DEFAULT_MAX_SECONDS
    max_files: int = DEFAULT_MAX_FILES
    cache_dir: Path | None = None
    cache_max_age: float = DEFAULT_CACHE_MAX_AGE
    tiny_random: bool = False
    score_metrics: tuple[str, ...] = DEFAULT_SCORE_METRICS
    examples_dir: Path | None = None

    def __post_init__(self):
        self.device = check_device(self.device)
        if self.examples_dir is not None:
            self.examples_dir = Path(self.examples_dir).expanduser()
            if not self.examples_dir.is_dir():
                raise TalkFaceUserError(f"examples folder {self.examples_dir} not found; give --examples a folder "
                                        "of face videos or photos and speech files")
        self.score_metrics = tuple(parse_metric_names(self.score_metrics))
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
        "s3fd": getattr(args, "s3fd", None) or environ.get("TALKFACE_S3FD") or None,
    }
    config = DemoConfig(generators=generators, device=args.device, face_backend=args.face_backend,
                        max_video_seconds=args.max_video_seconds, max_audio_seconds=args.max_audio_seconds,
                        max_files=args.max_files, cache_dir=args.cache_dir, cache_max_age=args.cache_max_age,
                        tiny_random=args.demo_tiny_models,
                        examples_dir=getattr(args, "examples", None) or environ.get("TALKFACE_DEMO_EXAMPLES") or None,
                        **models)
    if args.demo_tiny_models:
        tiny = create_tiny_random_models(config.cache_dir / "tiny-random-models")
        if not config.generators:
            config.generators = {f"tiny-wav2lip ({TINY_RANDOM_LABEL})": str(tiny["generator"])}
        config.syncnet = config.syncnet or str(tiny["syncnet"])
        config.avhubert = config.avhubert or str(tiny["avhubert"])
        return config
    # nothing named: the conventional folders of the conversion commands when they exist, else the registry names
    # (downloaded by the Models tab's Download button, or `talkface download NAME`; usable without a restart)
    if not config.generators:
        config.generators = {name: folder for name, folder in DEFAULT_MODEL_FOLDERS["generators"].items()
                             if (Path(folder) / "config.json").is_file()}
        for name in DEFAULT_GENERATOR_NAMES:
            config.generators.setdefault(name, name)
    for role in ("syncnet", "avhubert", "gfpgan", "s3fd"):
        folder = DEFAULT_MODEL_FOLDERS[role]
        if getattr(config, role) is None:
            setattr(config, role, folder if (Path(folder) / "config.json").is_file() else DEFAULT_MODEL_NAMES[role])
    return config


def create_tiny_random_models(folder) -> dict[str, Path]:
    """Write a tiny random Wav2Lip, SyncNet LSE and AV-HuBERT to `folder` (once) and return their folders.

    Their outputs are noise: they exist so that the page can be tried (and tested) end to end on a machine without
    converted weights. Built with a fixed seed, so every run makes the same models.
    """
    import torch

    from ..models.avhubert import AVHubertConfig, AVHubertModel
    from ..models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor
    from ..models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEFeatureExtractor, SyncNetLSEModel
    from ..models.wav2lip import Wav2LipConfig, Wav2LipModel
    from ..models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor

    folder = Path(folder)
    folders = {"generator": folder / "wav2lip", "syncnet": folder / "syncnet-lse", "avhubert": folder / "avhubert"}
    builders = {
        "generator": lambda: [
            Wav2LipModel(Wav2LipConfig(
                image_size=48, hidden_size=16, face_encoder_channels=[4, 8, 8, 16, 16],
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
        target.parent.mkdir(parents=True, exist_ok=True)
        # a leftover without config.json is replaced; a folder another process finishes meanwhile is swapped for
        # this one (same seed, same weights)
        with SafeOutput(target, folder=True, replace_folder=lambda leftover: None) as output:
            for item in build():
                item.save_pretrained(output.tmp_path)
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

