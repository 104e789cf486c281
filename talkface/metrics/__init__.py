"""Evaluation metrics and their registry.

Each metric module can be used on its own (`talkface.metrics.sync`, `.image_quality`, `.lmd`, `.avs`, `.fid`,
`.wer`); this registry says, for `talkface evaluate` and `talkface.evaluation.evaluate.evaluate`, what each metric reports,
which inputs it needs, which model it loads and how to get that model. Nothing is imported here: a metric's
module (and its model) is loaded only when the metric runs.

    from . import METRICS, get_metric
    METRICS["lse"].fields          # ('lse_d', 'lse_c', 'offset')
    get_metric("ssim").needs       # frozenset({'generated', 'reference'})
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import TalkFaceUserError

#: inputs a metric may need for one file
GENERATED, REFERENCE, AUDIO, TEXT = "generated", "reference", "audio", "text"


@dataclass(frozen=True)
class MetricSpec:
    """What `talkface evaluate` needs to know about a metric.

    name: the name used in `--metrics`.
    fields: the values it reports per file and in the summary.
    needs: inputs per file ("generated", "reference", "audio", "text").
    compute: "module:function" scoring one file pair; called as `function(pair_media, context) -> dict`.
    aggregate: how per-file values become the data-set value: "mean" (over files), "frame_mean" (over all frames
        of all files, weighted by each file's `num_frames`), "corpus" (summed counts, e.g. WER), or "dataset"
        (computed from all files at once, e.g. FID; per-file rows stay empty).
    higher_is_better: field -> True / False / None (no direction, e.g. the AV offset).
    model_option: name of the option / CLI flag holding the model folder (None: no model).
    model_env: environment variable read when the option is not given.
    model_hint: how to get the model (shown when it is missing).
    description: one line for the report.
    """

    name: str
    fields: tuple[str, ...]
    needs: frozenset
    compute: str
    aggregate: str = "mean"
    higher_is_better: dict = field(default_factory=dict)
    model_option: str | None = None
    model_env: str | None = None
    model_hint: str = ""
    description: str = ""


SYNCNET_HINT = (
    "download syncnet_v2.model (http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model), run "
    "`talkface convert syncnet-lse --checkpoint syncnet_v2.model --out models/syncnet-lse` and pass "
    "--syncnet models/syncnet-lse (or set TALKFACE_SYNCNET_LSE)"
)
AVHUBERT_HINT = (
    "convert an AV-HuBERT checkpoint with `talkface convert avhubert --checkpoint base_vox_iter5.pt --out "
    "models/avhubert` (checkpoints: https://facebookresearch.github.io/av_hubert) and pass --avhubert "
    "models/avhubert (or set TALKFACE_AVHUBERT)"
)
LIP_READER_HINT = (
    "convert a fine-tuned AV-HuBERT lip reader with `talkface convert avhubert --checkpoint base_vox_433h.pt --out "
    "models/avhubert-vsr` (checkpoints: https://facebookresearch.github.io/av_hubert) and pass --lip-reader "
    "models/avhubert-vsr (or set TALKFACE_LIP_READER)"
)
FID_HINT = (
    "download pt_inception-2015-12-05-6726825d.pth (https://github.com/mseitzer/pytorch-fid/releases/download/"
    "fid_weights/pt_inception-2015-12-05-6726825d.pth), run `talkface convert fid-inception --checkpoint "
    "pt_inception-2015-12-05-6726825d.pth --out models/fid_inception` and pass --fid-inception "
    "models/fid_inception (or set TALKFACE_FID_MODEL)"
)

METRICS: dict[str, MetricSpec] = {
    "lse": MetricSpec(
        name="lse", fields=("lse_d", "lse_c", "offset"), needs=frozenset({GENERATED, AUDIO}),
        compute="talkface.evaluation.evaluate:lse_for_pair", aggregate="mean",
        higher_is_better={"lse_d": False, "lse_c": True, "offset": None},
        model_option="syncnet", model_env="TALKFACE_SYNCNET_LSE", model_hint=SYNCNET_HINT,
        description="SyncNet lip-sync error: distance (LSE-D, lower is better) and confidence (LSE-C, higher)",
    ),
    "avs": MetricSpec(
        # AVS_m and AVS_v also use the reference video when there is one; AVS_u needs only the generated video
        name="avs", fields=("avs_u", "avs_m", "avs_v"), needs=frozenset({GENERATED, AUDIO}),
        compute="talkface.evaluation.evaluate:avs_for_pair", aggregate="mean",
        higher_is_better={"avs_u": True, "avs_m": True, "avs_v": True},
        model_option="avhubert", model_env="TALKFACE_AVHUBERT", model_hint=AVHUBERT_HINT,
        description="AV-HuBERT lip-sync scores (cosine similarities; AVS_u needs no reference)",
    ),
    "lmd": MetricSpec(
        name="lmd", fields=("lmd",), needs=frozenset({GENERATED, REFERENCE}),
        compute="talkface.evaluation.evaluate:lmd_for_pair", aggregate="frame_mean", higher_is_better={"lmd": False},
        description="mouth landmark distance, pixels of a 256-pixel face after mouth-centre alignment",
    ),
    "ssim": MetricSpec(
        name="ssim", fields=("ssim",), needs=frozenset({GENERATED, REFERENCE}),
        compute="talkface.evaluation.evaluate:ssim_for_pair", aggregate="frame_mean", higher_is_better={"ssim": True},
        description="structural similarity (Gaussian window sigma 1.5, as scikit-image / TalkLip)",
    ),
    "psnr": MetricSpec(
        name="psnr", fields=("psnr",), needs=frozenset({GENERATED, REFERENCE}),
        compute="talkface.evaluation.evaluate:psnr_for_pair", aggregate="frame_mean", higher_is_better={"psnr": True},
        description="peak signal-to-noise ratio in dB (per frame, capped for identical frames)",
    ),
    "fid": MetricSpec(
        name="fid", fields=("fid",), needs=frozenset({GENERATED, REFERENCE}),
        compute="talkface.evaluation.evaluate:fid_for_pair", aggregate="dataset", higher_is_better={"fid": False},
        model_option="fid_inception", model_env="TALKFACE_FID_MODEL", model_hint=FID_HINT,
        description="Frechet Inception distance between all generated and all reference frames",
    ),
    "wer": MetricSpec(
        name="wer", fields=("wer",), needs=frozenset({GENERATED, TEXT}),
        compute="talkface.evaluation.evaluate:wer_for_pair", aggregate="corpus", higher_is_better={"wer": False},
        model_option="lip_reader", model_env="TALKFACE_LIP_READER", model_hint=LIP_READER_HINT,
        description="word error rate of the AV-HuBERT lip reader on the generated video (corpus-level)",
    ),
}

#: what `talkface evaluate` runs without --metrics
DEFAULT_METRICS = ("lse", "ssim", "psnr", "lmd")


def get_metric(name: str) -> MetricSpec:
    try:
        return METRICS[name]
    except KeyError:
        raise TalkFaceUserError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}") from None


def parse_metric_names(names) -> list[str]:
    """'lse,ssim' or a list -> validated names, in the order given, without repeats."""
    if isinstance(names, str):
        names = names.split(",")
    result = []
    for name in (n.strip().lower() for n in names):
        if name and name not in result:
            get_metric(name)
            result.append(name)
    if not result:
        raise TalkFaceUserError(f"no metric given; pass --metrics with some of: {', '.join(METRICS)}")
    return result


__all__ = ["DEFAULT_METRICS", "METRICS", "MetricSpec", "get_metric", "parse_metric_names"]
