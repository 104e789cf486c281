"""Fréchet Inception Distance (FID) between two sets of frames.

FID (Heusel et al., 2017) fits a Gaussian to the 2048-d pool3 activations of the FID Inception network for
each set of images and measures the Fréchet distance between the two Gaussians:

    FID = |mu_1 - mu_2|^2 + Tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^(1/2))

This module follows pytorch-fid's protocol, so numbers are comparable with papers that used it: uint8 RGB frames
are scaled to [0, 1], resized to 299x299 (bilinear, align_corners=False) and mapped to [-1, 1] inside
`FIDInceptionModel`; the covariance is the unbiased sample covariance (N - 1).

Frames are streamed: only running sums (float64) are kept, never all activations, so a whole test set of videos
can be scored from a generator that decodes one video at a time.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelLoadError, ModelNotDownloadedError, TalkFaceUserError
from ..hub import registry
from ..utils.sources import resolve_source
from .base import GENERATED, REFERENCE, Metric, register_metric

logger = logging.getLogger(__name__)

# Where `load_fid_model()` looks when given no path: $TALKFACE_FID_MODEL, else this folder (relative to the
# working directory), which is where the convert command in the error message writes.
FID_MODEL_ENV_VAR = "TALKFACE_FID_MODEL"
DEFAULT_FID_MODEL_DIR = "models/fid_inception"
DEFAULT_BATCH_SIZE = 50
# Added to the covariance diagonals when their product is too singular for a finite matrix square root.
SQRTM_EPS = 1e-6
# Largest imaginary part on the diagonal of the matrix square root still put down to round-off.
MAX_IMAGINARY_COMPONENT = 1e-3



@dataclass
class ActivationStatistics:
    """Mean and covariance of the pool3 activations of a set of frames (what FID compares)."""

    mu: np.ndarray  # (dim,) float64
    sigma: np.ndarray  # (dim, dim) float64
    num_frames: int

    def save(self, path):
        """Save as .npz with arrays `mu` and `sigma` (pytorch-fid's layout) and `num_frames`."""
        np.savez(path, mu=self.mu, sigma=self.sigma, num_frames=np.int64(self.num_frames))

    @classmethod
    def load(cls, path) -> "ActivationStatistics":
        with np.load(path) as data:
            num_frames = int(data["num_frames"]) if "num_frames" in data else 0
            return cls(mu=data["mu"].astype(np.float64), sigma=data["sigma"].astype(np.float64), num_frames=num_frames)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = SQRTM_EPS) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    When the product of the covariances is singular (fewer samples than dimensions), its square root is not
    finite; the square root is then taken of (sigma1 + eps I)(sigma2 + eps I) instead. A complex square root
    whose diagonal has an imaginary part above 1e-3 means the statistics are broken and raises ValueError.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"mean vectors must have the same (dim,) shape, got {mu1.shape} and {mu2.shape}")
    dim = mu1.shape[0]
    if sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(f"covariances must be ({dim}, {dim}), got {sigma1.shape} and {sigma2.shape}")

    mean_term = float(np.sum((mu1 - mu2) ** 2))
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        logger.warning("FID: the covariance product is singular; adding %g to the diagonals", eps)
        offset = np.eye(dim) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        largest_imaginary = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if largest_imaginary > MAX_IMAGINARY_COMPONENT:
            raise ValueError(
                f"the matrix square root has an imaginary component of {largest_imaginary:.3g} on its diagonal; "
                "the activation statistics are not valid covariances"
            )
        covmean = covmean.real
    return mean_term + float(np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


class _StreamingMoments:
    """Running mean and unbiased covariance of rows, in float64.

    Rows are shifted by the mean of the first batch before accumulating sums of outer products, which keeps the
    one-pass formula accurate when the mean is large compared with the spread.
    """

    def __init__(self):
        self.count = 0
        self.shift = self.sum = self.outer = None

    def update(self, rows: np.ndarray):
        rows = np.asarray(rows, dtype=np.float64)  # (n, dim)
        if self.shift is None:
            self.shift = rows.mean(axis=0)
            self.sum = np.zeros_like(self.shift)
            self.outer = np.zeros((rows.shape[1], rows.shape[1]))
        centered = rows - self.shift
        self.sum += centered.sum(axis=0)
        self.outer += centered.T @ centered
        self.count += rows.shape[0]

    def finalize(self) -> tuple[np.ndarray, np.ndarray]:
        centered_mean = self.sum / self.count
        sigma = (self.outer - self.count * np.outer(centered_mean, centered_mean)) / (self.count - 1)
        return self.shift + centered_mean, sigma


def _frame_batches(frames_iterable, batch_size: int):
    """Group uint8 RGB frames into (n, height, width, 3) batches of one frame size each.

    Items may be single frames (height, width, 3) or stacks of frames (n, height, width, 3), e.g. one decoded
    video per item.
    """
    pending, pending_shape = [], None
    for item in frames_iterable:
        array = np.asarray(item)
        if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-1] != 3:
            raise TalkFaceUserError(
                f"FID needs uint8 RGB frames shaped (height, width, 3) or (frames, height, width, 3), got "
                f"{array.dtype} {array.shape}; convert float images with (x * 255).round().astype(np.uint8)"
            )
        for frame in array if array.ndim == 4 else array[None]:
            if pending and frame.shape != pending_shape:
                yield np.stack(pending)
                pending = []
            pending.append(frame)
            pending_shape = frame.shape
            if len(pending) == batch_size:
                yield np.stack(pending)
                pending = []
    if pending:
        yield np.stack(pending)


@torch.no_grad()
def activation_statistics(frames_iterable, model, batch_size: int = DEFAULT_BATCH_SIZE) -> ActivationStatistics:
    """Mean and covariance of the FID Inception pool3 activations of uint8 RGB frames.

    `frames_iterable` yields (height, width, 3) frames or (n, height, width, 3) stacks (a 4-D array works
    too); frames may differ in size between items (the network resizes to 299). Channel order must be RGB:
    flip OpenCV's BGR first. The model runs in eval mode on its own device and dtype.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    parameter = next(model.parameters())
    was_training = model.training
    model.eval()
    moments = _StreamingMoments()
    try:
        for batch in _frame_batches(frames_iterable, batch_size):
            pixel_values = torch.from_numpy(batch).permute(0, 3, 1, 2)  # (n, 3, height, width) uint8
            pixel_values = pixel_values.to(device=parameter.device, dtype=parameter.dtype) / 255.0
            features = model(pixel_values, return_dict=True).pooled_features  # (n, dim)
            moments.update(features.float().cpu().numpy())
    finally:
        model.train(was_training)

    if moments.count < 2:
        raise TalkFaceUserError(f"FID needs at least 2 frames per set, got {moments.count}; pass more frames")
    mu, sigma = moments.finalize()
    if moments.count < mu.shape[0]:
        logger.warning(
            "FID on %d frames with %d-d features: the covariance is rank-deficient, so the score is biased "
            "upwards and not comparable with scores on more frames", moments.count, mu.shape[0],
        )
    return ActivationStatistics(mu=mu, sigma=sigma, num_frames=moments.count)


def compute_fid(generated_frames, reference_frames, model=None, batch_size: int = DEFAULT_BATCH_SIZE) -> float:
    """FID between two sets of uint8 RGB frames (see `activation_statistics` for the accepted inputs).

    Either set may also be given as precomputed `ActivationStatistics` (e.g. cached reference statistics).
    `model` defaults to `load_fid_model()`.
    """
    if model is None:
        model = load_fid_model()
    statistics = [
        frames if isinstance(frames, ActivationStatistics) else activation_statistics(frames, model, batch_size)
        for frames in (generated_frames, reference_frames)
    ]
    return frechet_distance(statistics[0].mu, statistics[0].sigma, statistics[1].mu, statistics[1].sigma)


def _missing_weights_message(source) -> str:
    from ..models.fid_inception.convert_fid_inception_checkpoint import FID_WEIGHTS_FILENAME, FID_WEIGHTS_URL

    return (
        f"FID Inception weights not found at {source}; download {FID_WEIGHTS_FILENAME} from {FID_WEIGHTS_URL}, "
        f"convert it with `talkface convert fid-inception --checkpoint {FID_WEIGHTS_FILENAME} "
        f"--out {DEFAULT_FID_MODEL_DIR}` and pass that folder (or set {FID_MODEL_ENV_VAR})"
    )


def load_fid_model(path_or_hub_id=None, device=None):
    """Load the FID Inception network in eval mode.

    `path_or_hub_id` is a folder written by `talkface convert fid-inception`, a Hub id of such a folder, or the
    original `pt_inception-2015-12-05-6726825d.pth` itself (converted in memory). Without it, the folder named
    by $TALKFACE_FID_MODEL, `models/fid_inception` when it exists, else the registry name fid-inception (`talkface
    download fid-inception`) is used. Missing weights raise `ModelLoadError` saying
    where to download the file and how to convert it; a name downloads only under --download / TALKFACE_AUTO_DOWNLOAD=1.
    """
    # the model package (transformers) is imported only here: `talkface.metrics` stays light
    from ..models.convert_utils import load_original_checkpoint, unwrap_state_dict
    from ..models.fid_inception import FIDInceptionConfig, FIDInceptionModel
    from ..models.fid_inception.convert_fid_inception_checkpoint import FID_WEIGHTS_FILENAME, model_from_state_dict

    source = path_or_hub_id or os.environ.get(FID_MODEL_ENV_VAR) or (
        DEFAULT_FID_MODEL_DIR if Path(DEFAULT_FID_MODEL_DIR).is_dir() else registry.DEFAULT_FID)
    path = Path(source)
    # only a Hub id the user named: the default folder is never looked up on the Hub
    try:
        resolved = resolve_source(source, what="FID Inception weights", allow_hub=source != DEFAULT_FID_MODEL_DIR)
    except ModelNotDownloadedError:
        raise  # a registry name: its own line says how to download it
    except ModelLoadError as err:
        raise ModelLoadError(_missing_weights_message(path)) from err
    if resolved.is_file:
        path = resolved.path
        if path.suffix not in (".pth", ".pt"):
            raise ModelLoadError(
                f"{path} is not a model folder nor {FID_WEIGHTS_FILENAME}; {_missing_weights_message(path)}"
            )
        model = model_from_state_dict(unwrap_state_dict(load_original_checkpoint(path)))
    elif resolved.is_local:
        path = resolved.path
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ModelLoadError(_missing_weights_message(path))
        model_type = FIDInceptionConfig.get_config_dict(str(path))[0].get("model_type")
        if model_type != FIDInceptionConfig.model_type:
            raise ModelLoadError(
                f"{path} holds a {model_type!r} model, not the FID Inception network; {_missing_weights_message(path)}"
            )
        model = FIDInceptionModel.from_pretrained(path)
    else:
        try:
            model = FIDInceptionModel.from_pretrained(resolved.location)
        except Exception as err:  # missing repo, no network, wrong kind: all mean "no FID weights here"
            raise ModelLoadError(f"{_missing_weights_message(source)} ({type(err).__name__})") from err

    config = model.config
    if config.channel_divisor != 1 or config.image_size != 299 or not config.resize_input:
        logger.warning("the FID model at %s is not the standard FID Inception; its scores are not comparable", source)
    if device is not None:
        model.to(device)
    return model.eval()


# ----------------------------------------------------------------------------------------------------------------
# The metric of `talkface evaluate`: per-file activations, one FID over all files
# ----------------------------------------------------------------------------------------------------------------

FID_HINT = (
    "run `talkface download fid-inception` (the default), or download pt_inception-2015-12-05-6726825d.pth (https://github.com/mseitzer/pytorch-fid/releases/download/"
    "fid_weights/pt_inception-2015-12-05-6726825d.pth), run `talkface convert fid-inception --checkpoint "
    "pt_inception-2015-12-05-6726825d.pth --out models/fid_inception` and pass --fid-inception "
    "models/fid_inception (or set TALKFACE_FID_MODEL)"
)


def frame_activations(frames: np.ndarray, model, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """(frames, 2048) float32 pool3 activations of RGB uint8 frames, with this module's input recipe."""
    parameter = next(model.parameters())
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size])).permute(0, 3, 1, 2)
            pixel_values = batch.to(device=parameter.device, dtype=parameter.dtype) / 255.0  # (n, 3, H, W) in [0, 1]
            outputs.append(model(pixel_values, return_dict=True).pooled_features.float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 2048), np.float32)


@register_metric
class FIDMetric(Metric):
    """Fréchet Inception distance between all generated and all reference frames of the data set.

    Per file, the pool3 activations of both videos are kept (as REPORT_DIR/cache/STEM.fid.npz, or in memory
    without a cache); the FID is computed once from all of them. Options read: fid_inception, fid_every, device.
    """

    name = "fid"
    fields = ("fid",)
    needs = frozenset({GENERATED, REFERENCE})
    aggregate = "dataset"
    higher_is_better = {"fid": False}
    description = "Frechet Inception distance between all generated and all reference frames"
    field_help = {"fid": "FID to the ground truth frames, lower is better"}
    model_option = "fid_inception"
    model_env = FID_MODEL_ENV_VAR
    model_hint = FID_HINT
    model_required = False  # load_fid_model has a default folder

    def load_model(self, source, options):
        return load_fid_model(source, device=options.device)  # has its own default folder and error message

    def settings(self, options) -> dict:
        return {"every": options.fid_every}

    def artifacts(self, result: dict) -> list[str]:
        name = result.get("details", {}).get("activations")
        return [name] if name else []

    def compute(self, media, context) -> dict:
        model = context.model(self)
        every = context.options.fid_every
        generated = frame_activations(media.generated_frames[::every], model)
        reference = frame_activations(media.reference_frames[::every], model)
        artifact = context.save_arrays(media.pair.stem, self.name, generated=generated, reference=reference)
        return {"values": {}, "num_frames": len(generated), "details": {"activations": artifact}}

    def summarise(self, results, context) -> dict:
        """FID of all generated frames against all reference frames, from the per-file activations."""
        sums = {}
        count = 0
        for result in results:
            details = result.get("details")
            if details is None:
                continue
            arrays = context.load_arrays(result["stem"], self.name, details.get("activations"))
            if arrays is None:
                continue
            count += 1
            for name in ("generated", "reference"):
                activations = arrays[name].astype(np.float64)
                total, outer, n = sums.get(name, (0.0, 0.0, 0))
                sums[name] = (total + activations.sum(0), outer + activations.T @ activations, n + len(activations))
        if count == 0:
            return {}
        stats = []
        for name in ("generated", "reference"):
            total, outer, n = sums[name]
            if n < 2:
                return {}
            mu = total / n
            sigma = (outer - n * np.outer(mu, mu)) / (n - 1)  # unbiased, as numpy.cov / pytorch-fid
            stats.append((mu, sigma))
        value = float(frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1]))
        return {"fid": self.entry("fid", value, count)}
