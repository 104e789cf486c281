"""Evaluation metrics: one `Metric` class each, registered from the class itself.

Each metric module can be used on its own (`talkface.metrics.sync` for SyncNet LSE, `.avs`, `.lmd`,
`.image_quality` for SSIM / PSNR, `.fid`, `.wer`). Each also defines the metric's `Metric` class (`lse.py` for LSE),
which says, for `talkface evaluate`, `talkface score`, `talkface.evaluation.evaluate.evaluate` and the demo, what the
metric reports, which inputs and model it needs, how it scores one file and how it aggregates (see
`talkface.metrics.base`). Importing this package registers them; heavy imports (transformers, face backends)
happen only when a metric loads its model or runs.

    from talkface.metrics import METRICS, get_metric
    METRICS["lse"].fields          # ('lse_d', 'lse_c', 'offset')
    get_metric("ssim").needs       # frozenset({'generated', 'reference'})

Adding a metric is one class decorated with `@register_metric` (see `talkface.metrics.base`).
"""

from __future__ import annotations

# Registry names (`syncnet-lse`) download on first use under --download / TALKFACE_AUTO_DOWNLOAD=1 through the
# downloader this import registers with talkface.hub.registry.
from ..hub import download as _download  # noqa: F401

from .base import (
    AGGREGATIONS,
    ALWAYS_AVAILABLE,
    AUDIO,
    GENERATED,
    METRICS,
    REFERENCE,
    TEXT,
    Metric,
    get_metric,
    is_number,
    missing_requirements,
    parse_metric_names,
    register_metric,
    unregister_metric,
)

# the built-in metrics, registered in this order (the order of report columns)
from .lse import SYNCNET_HINT, LSEMetric  # noqa: E402  isort: skip
from .avs import AVHUBERT_HINT, AVSMetric  # noqa: E402  isort: skip
from .lmd import LMDMetric  # noqa: E402  isort: skip
from .image_quality import PSNRMetric, SSIMMetric  # noqa: E402  isort: skip
from .fid import FID_HINT, FIDMetric  # noqa: E402  isort: skip
from .wer import LIP_READER_HINT, WERMetric  # noqa: E402  isort: skip

#: what `talkface evaluate` runs without --metrics
DEFAULT_METRICS = ("lse", "ssim", "psnr", "lmd")

__all__ = [
    "AGGREGATIONS",
    "ALWAYS_AVAILABLE",
    "AUDIO",
    "AVHUBERT_HINT",
    "AVSMetric",
    "DEFAULT_METRICS",
    "FIDMetric",
    "FID_HINT",
    "GENERATED",
    "LIP_READER_HINT",
    "LMDMetric",
    "LSEMetric",
    "METRICS",
    "Metric",
    "PSNRMetric",
    "REFERENCE",
    "SSIMMetric",
    "SYNCNET_HINT",
    "TEXT",
    "WERMetric",
    "get_metric",
    "is_number",
    "missing_requirements",
    "parse_metric_names",
    "register_metric",
    "unregister_metric",
]
