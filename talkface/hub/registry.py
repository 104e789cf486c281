"""The public releases talkface can download, one entry per model name (pure data).

    talkface download wav2lip-gan --accept-license      # fetch wav2lip_gan.pth, convert it, keep the folder
    talkface generate --face F --audio A --out O        # --model defaults to the name wav2lip-gan

Every place that takes a model (a command's `--model`, `--syncnet`, `--avhubert`, `from_pretrained`, the demo)
accepts one of these names as well as a folder or Hub id; this module is the only table of them. An entry says what
the model is, which `talkface convert` kind turns the original file into a model folder, where the original file is
published (tried in order), how big it is, and its licence. The download itself lives in `talkface.hub.download`.

Sources are plain URLs, or `hf://OWNER/REPO/PATH` for a file in a Hugging Face Hub repository (fetched with
huggingface_hub, so its cache, resume, token and `HF_ENDPOINT` apply). `TALKFACE_DOWNLOAD_MIRROR=URL` puts
`URL/<name>/<file name>` before all of them (a company mirror, an air-gapped copy).

A name resolves (`resolve_name`, the registry step of `talkface.utils.sources`) to its folder in the models dir
(`~/.cache/talkface/models/<name>`, or `TALKFACE_MODELS_DIR`). A name not downloaded yet is one error line with the
exact `talkface download NAME` command, at once (no Hub request); with `--download` or `TALKFACE_AUTO_DOWNLOAD=1`
it is downloaded on first use instead, by the downloader `talkface.hub.download` registers here.

This module imports nothing from talkface but its errors: it is data, at the bottom of the layers.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotDownloadedError

HUB_SCHEME = "hf://"
MODELS_DIR_ENV = "TALKFACE_MODELS_DIR"
AUTO_DOWNLOAD_ENV = "TALKFACE_AUTO_DOWNLOAD"
DEFAULT_MODELS_DIR = Path("~/.cache/talkface/models")


@dataclass(frozen=True)
class License:
    name: str
    url: str
    summary: str  # one line
    must_accept: bool  # non-commercial / research-only terms: shown and accepted before the download


@dataclass(frozen=True)
class RegistryEntry:
    """One downloadable model."""

    name: str
    description: str
    converter: str  # the `talkface convert` kind that turns `file_name` into a model folder
    file_name: str
    sources: tuple  # URLs or hf://OWNER/REPO/PATH, tried in order
    size_range: tuple  # (min bytes, max bytes) of the original file; () when not known
    license: License
    manual_page: str = ""  # set when no source can be scripted: the page where a person downloads the file

    @property
    def sha256_prefix(self) -> str:
        """The hash start that the file name carries (`vgg19-dcbb9e9d.pth`, torch hub's convention), else ""."""
        match = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z]+$", self.file_name)
        return match.group(1) if match else ""

    @property
    def approximate_size(self) -> int:
        return sum(self.size_range) // 2 if self.size_range else 0


def _mb(low: float, high: float) -> tuple:
    return (int(low * 1e6), int(high * 1e6))


WAV2LIP_LICENSE = License(
    "Wav2Lip (non-commercial)", "https://github.com/Rudrabha/Wav2Lip#license-and-citation",
    "personal, research or non-commercial use only; commercial use of the LRS2-trained models is prohibited",
    must_accept=True,
)
AVHUBERT_LICENSE = License(
    "AV-HuBERT licence (non-commercial)", "https://github.com/facebookresearch/av_hubert/blob/main/LICENSE",
    "Meta's AV-HuBERT licence: non-commercial research use only, with attribution",
    must_accept=True,
)
SYNCNET_LICENSE = License(
    "MIT", "https://github.com/joonson/syncnet_python/blob/master/LICENSE.md",
    "syncnet_python and the weights its download script points to are MIT-licensed",
    must_accept=False,
)
S3FD_LICENSE = License(
    "research use (no stated licence)", "https://github.com/joonson/syncnet_python",
    "no licence is stated for sfd_face.pth (an S3FD re-implementation trained on WIDER FACE): research use only",
    must_accept=True,
)
GFPGAN_LICENSE = License(
    "GFPGAN + NVIDIA StyleGAN2 terms (non-commercial)",
    "https://github.com/TencentARC/GFPGAN/blob/master/License_GFPGAN.txt",
    "Apache-2.0 except its StyleGAN2 parts (NVIDIA, non-commercial); trained on FFHQ: treat as non-commercial",
    must_accept=True,
)
VGG19_LICENSE = License(
    "BSD-3-Clause (torchvision)", "https://github.com/pytorch/vision/blob/main/LICENSE",
    "torchvision's BSD-3-Clause; ImageNet-trained, so check the data set's terms for your use",
    must_accept=False,
)
FID_LICENSE = License(
    "Apache-2.0 (pytorch-fid)", "https://github.com/mseitzer/pytorch-fid/blob/master/LICENSE",
    "pytorch-fid's Apache-2.0; a port of TensorFlow's FID Inception graph",
    must_accept=False,
)
TALKLIP_LICENSE = License(
    "TalkLip (no stated licence; non-commercial parts)", "https://github.com/Sxjdwang/TalkLip",
    "no licence stated; contains AV-HuBERT (non-commercial) and was trained on LRS2: non-commercial research only",
    must_accept=True,
)

_CAMENDURU = HUB_SCHEME + "camenduru/Wav2Lip/checkpoints/"
_AVHUBERT = "https://dl.fbaipublicfiles.com/avhubert/model/lrs3_vox/"
_SYNCNET_PYTHON = "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/"

ENTRIES = (
    RegistryEntry(
        "wav2lip-gan", "Wav2Lip generator trained with the visual-quality GAN loss (the sharper one)",
        "wav2lip", "wav2lip_gan.pth",
        (_CAMENDURU + "wav2lip_gan.pth", HUB_SCHEME + "Nekochu/Wav2Lip/wav2lip_gan.pth"),
        _mb(420, 450), WAV2LIP_LICENSE,
    ),
    RegistryEntry(
        "wav2lip", "Wav2Lip generator without the GAN loss (more accurate sync, blurrier mouths)",
        "wav2lip", "wav2lip.pth",
        (_CAMENDURU + "wav2lip.pth", HUB_SCHEME + "Nekochu/Wav2Lip/Wav2Lip/wav2lip.pth"),
        _mb(420, 450), WAV2LIP_LICENSE,
    ),
    RegistryEntry(
        "wav2lip-expert", "Wav2Lip's lip-sync expert (SyncNet on colour mouths), the training loss",
        "syncnet", "lipsync_expert.pth", (_CAMENDURU + "lipsync_expert.pth",),
        _mb(150, 250), WAV2LIP_LICENSE,
    ),
    RegistryEntry(
        "wav2lip-discriminator", "Wav2Lip's visual-quality discriminator (training)",
        "wav2lip-discriminator", "visual_quality_disc.pth", (_CAMENDURU + "visual_quality_disc.pth",),
        _mb(100, 300), WAV2LIP_LICENSE,
    ),
    RegistryEntry(
        "syncnet-lse", "SyncNet of syncnet_python, the network behind LSE-C / LSE-D",
        "syncnet-lse", "syncnet_v2.model", (_SYNCNET_PYTHON + "syncnet_v2.model",),
        _mb(50, 60), SYNCNET_LICENSE,
    ),
    RegistryEntry(
        "s3fd", "S3FD face detector of syncnet_python (the syncnet_python LSE protocol, --face-backend s3fd)",
        "s3fd", "sfd_face.pth", (_SYNCNET_PYTHON + "sfd_face.pth",),
        _mb(80, 100), S3FD_LICENSE,
    ),
    RegistryEntry(
        "avhubert-base", "AV-HuBERT Base, LRS3 + VoxCeleb2 pre-training (the AVS scores)",
        "avhubert", "base_vox_iter5.pt", (_AVHUBERT + "clean-pretrain/base_vox_iter5.pt",),
        _mb(300, 2500), AVHUBERT_LICENSE,
    ),
    RegistryEntry(
        "avhubert-large", "AV-HuBERT Large, LRS3 + VoxCeleb2 pre-training",
        "avhubert", "large_vox_iter5.pt", (_AVHUBERT + "clean-pretrain/large_vox_iter5.pt",),
        _mb(1000, 7000), AVHUBERT_LICENSE,
    ),
    RegistryEntry(
        "avhubert-base-lipreading", "AV-HuBERT Base lip reader, fine-tuned on LRS3 433 h (talkface lipread, WER)",
        "avhubert", "base_vox_433h.pt", (_AVHUBERT + "vsr/base_vox_433h.pt",),
        _mb(300, 2500), AVHUBERT_LICENSE,
    ),
    RegistryEntry(
        "avhubert-large-lipreading", "AV-HuBERT Large lip reader, self-trained, fine-tuned on LRS3 433 h",
        "avhubert", "self_large_vox_433h.pt", (_AVHUBERT + "vsr/self_large_vox_433h.pt",),
        _mb(5500, 6000), AVHUBERT_LICENSE,
    ),
    RegistryEntry(
        "gfpgan-v1.4", "GFPGAN v1.4 face restoration (--enhancer gfpgan)",
        "gfpgan", "GFPGANv1.4.pth",
        ("https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",),
        _mb(330, 370), GFPGAN_LICENSE,
    ),
    RegistryEntry(
        "vgg19", "VGG-19 ImageNet features (torchvision), the perceptual training loss",
        "vgg19", "vgg19-dcbb9e9d.pth", ("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",),
        _mb(560, 590), VGG19_LICENSE,
    ),
    RegistryEntry(
        "fid-inception", "pytorch-fid's Inception-v3 (FID)",
        "fid-inception", "pt_inception-2015-12-05-6726825d.pth",
        ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",),
        _mb(85, 105), FID_LICENSE,
    ),
    RegistryEntry(
        "talklip", "TalkLip generator (contains a whole AV-HuBERT)",
        "talklip", "TalkLip checkpoint (.pt)", (), (), TALKLIP_LICENSE,
        manual_page="https://github.com/Sxjdwang/TalkLip (README: 'Checkpoints', Google Drive links)",
    ),
)

REGISTRY = {entry.name: entry for entry in ENTRIES}
NAMES = tuple(REGISTRY)

#: the name each role uses when no model is given (commands' defaults, metrics, the demo)
DEFAULT_GENERATOR = "wav2lip-gan"
DEFAULT_SYNCNET = "syncnet-lse"
DEFAULT_AVHUBERT = "avhubert-base"
DEFAULT_LIP_READER = "avhubert-base-lipreading"
DEFAULT_S3FD = "s3fd"
DEFAULT_ENHANCER = "gfpgan-v1.4"
DEFAULT_FID = "fid-inception"


def get(name: str):
    """The entry of a model name, or None."""
    return REGISTRY.get(name)


def is_name(spec) -> bool:
    return isinstance(spec, str) and spec in REGISTRY


# --- where names live, and the registry step of the source rule -------------------------------------------------


def models_dir(path=None) -> Path:
    """The models dir: `path`, else `TALKFACE_MODELS_DIR`, else ~/.cache/talkface/models."""
    return Path(path or os.environ.get(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR).expanduser()


def model_folder(name: str, models_dir_path=None) -> Path:
    return models_dir(models_dir_path) / name


def is_downloaded(name: str, models_dir_path=None) -> bool:
    return (model_folder(name, models_dir_path) / "config.json").is_file()


def download_command(name: str) -> str:
    """The exact command that downloads `name` (with --accept-license where its licence needs it)."""
    entry = REGISTRY[name]
    return f"talkface download {name}" + (" --accept-license" if entry.license.must_accept else "")


_auto_download = {"enabled": False, "downloader": None}


def set_auto_download(enabled: bool = True):
    """Download names on first use in this process (what `--download` does; `TALKFACE_AUTO_DOWNLOAD=1` too)."""
    _auto_download["enabled"] = bool(enabled)


def auto_download_enabled() -> bool:
    return _auto_download["enabled"] or os.environ.get(AUTO_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def register_downloader(downloader):
    """`downloader(name) -> folder`, called for a name not downloaded yet when auto-download is on."""
    _auto_download["downloader"] = downloader


def resolve_name(spec):
    """The registry step of `talkface.utils.sources.resolve_source`: None when `spec` is not a name; the model
    folder of a downloaded name; else a download on first use (when enabled) or `ModelNotDownloadedError`."""
    if not is_name(spec):
        return None
    folder = model_folder(spec)
    if is_downloaded(spec):
        return folder
    if auto_download_enabled() and _auto_download["downloader"] is not None:
        return _auto_download["downloader"](spec)
    raise ModelNotDownloadedError(
        f"{spec} ({REGISTRY[spec].file_name}) is not downloaded yet (no {folder}); run: {download_command(spec)} "
        f"(or pass --download / set {AUTO_DOWNLOAD_ENV}=1 to download on first use)")


__all__ = ["AUTO_DOWNLOAD_ENV", "DEFAULT_AVHUBERT", "DEFAULT_ENHANCER", "DEFAULT_FID", "DEFAULT_GENERATOR",
           "DEFAULT_LIP_READER", "DEFAULT_MODELS_DIR", "DEFAULT_S3FD", "DEFAULT_SYNCNET", "ENTRIES", "HUB_SCHEME", "License", "MODELS_DIR_ENV", "NAMES",
           "REGISTRY", "RegistryEntry", "auto_download_enabled", "download_command", "get", "is_downloaded",
           "is_name", "model_folder", "models_dir", "register_downloader", "resolve_name", "set_auto_download"]
