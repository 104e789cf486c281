"""BatchNorm folding and channels-last weights for inference: `talkface.networks.optimization`, under this name too.

The code lives in `talkface.networks` (torch only) so that the generation path can fold a network without
importing `talkface.models`, which registers every model folder with transformers (issue 14, start-up).
"""

from ..networks.optimization import fold_batch_norms, inference_copy, optimize_for_inference, to_channels_last

__all__ = ["fold_batch_norms", "inference_copy", "optimize_for_inference", "to_channels_last"]
