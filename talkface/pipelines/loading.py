"""Loaders that turn a model spec (folder, Hub id or registry name) into a ready model and its preprocessor.

They sit in the pipelines layer so that pipelines (the lip reader) and the layers above (metrics, evaluation) share
them; `talkface.metrics.avs.load_avhubert` is the same function under its old name.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

from ..errors import ModelLoadError
from ..utils.sources import resolve_source

logger = logging.getLogger(__name__)

CONVERT_HINT = (
    "convert an official checkpoint with: talkface convert avhubert --checkpoint base_vox_iter5.pt --out {path} "
    "(checkpoints: https://dl.fbaipublicfiles.com/avhubert/model/lrs3_vox/clean-pretrain/base_vox_iter5.pt and "
    "others at https://facebookresearch.github.io/av_hubert)"
)


def load_avhubert(path_or_id, lip_reading: bool = False, device="cpu"):
    """Load an AV-HuBERT model folder (local path or Hub id) written by `talkface convert avhubert`.

    Returns (model, feature_extractor): an `AVHubertModel` (the encoder; a lip-reading folder works too), or an
    `AVHubertForLipReading` when `lip_reading`. Raises `ModelLoadError` with the fix for a missing folder, a folder
    of another model type, or an encoder-only folder where a lip reader is needed.
    """
    from ..models.avhubert import AVHubertForLipReading, AVHubertModel
    from ..models.avhubert.feature_extraction_avhubert import AVHubertFeatureExtractor

    source = resolve_source(path_or_id, what="AV-HuBERT model folder",
                            hint=CONVERT_HINT.format(path=Path(str(path_or_id)).expanduser()))
    config_path = source.config_file(what="converted AV-HuBERT model", hint=CONVERT_HINT.format(path=source))
    _check_model_type(config_path, source, lip_reading)
    load_from = source.location
    source = source.spec
    model_class = AVHubertForLipReading if lip_reading else AVHubertModel
    try:
        with _quiet_progress_bars():
            model = model_class.from_pretrained(load_from)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load AV-HuBERT weights from {source} ({str(err).splitlines()[0][:200]}); "
                             "re-run the conversion") from err
    try:
        feature_extractor = AVHubertFeatureExtractor.from_pretrained(load_from)
    except (OSError, ValueError):
        logger.warning("%s has no preprocessor_config.json; using the default AV-HuBERT preprocessing", source)
        feature_extractor = AVHubertFeatureExtractor()
    return model.to(device).eval(), feature_extractor


@contextlib.contextmanager
def _quiet_progress_bars():
    """No "Loading weights" bar from transformers: command output stays one table (or one error line)."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def _check_model_type(config_path: Path, source, lip_reading: bool):
    try:
        config = json.loads(Path(config_path).read_text())
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot read {config_path} ({err}); re-run the conversion") from err
    model_type = config.get("model_type")
    if model_type != "avhubert":
        raise ModelLoadError(f"{source} holds a {model_type or 'unknown'} model, not AV-HuBERT; pass the folder "
                             "written by talkface convert avhubert")
    if lip_reading and "AVHubertForLipReading" not in (config.get("architectures") or []):
        raise ModelLoadError(f"{source} holds an AV-HuBERT encoder without the lip-reading decoder; convert a "
                             "fine-tuned checkpoint (e.g. lrs3_vox/vsr/base_vox_433h.pt) with talkface convert "
                             "avhubert")


__all__ = ["CONVERT_HINT", "load_avhubert"]
