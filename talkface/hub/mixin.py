"""What every talkface model and feature extractor class gets from the hub layer, by inheritance.

`TalkFaceHubMixin` is a base of every talkface model base class (`Wav2LipPreTrainedModel`, `AVHubertPreTrainedModel`,
...; listed before transformers' `PreTrainedModel`), so the class itself defines:

* `push_to_hub(repo_id, ...)`: saves the weights and config with **our** model card (`talkface.hub.cards`) and
  uploads them in one commit, in place of transformers' generic card;
* `from_pretrained(name_or_path, ...)`: a registry name (``AVHubertModel.from_pretrained("avhubert-base")``) is
  resolved by `talkface.utils.sources` to its folder in the models dir; a name not downloaded yet is one
  `ModelLoadError` line with the exact `talkface download NAME` command, before any Hub request. Folders and Hub ids
  go to transformers unchanged.

`FeatureExtractorHubMixin` gives the feature extractors the same `from_pretrained`.

The model card facts that need code come from the classes too: a model class that states `card_variants()` (the
labelled configurations of its card's parameter table) is listed under its card kind (`card_model_classes`), and
a feature extractor that states `card_preprocessing` (the card's preprocessing style, e.g. ``"mel"``) is what
the card's preprocessing table is computed from (`card_feature_extractor`). This module imports no model: the
models import it.
"""

from __future__ import annotations

import os
from typing import ClassVar

from ..utils.sources import resolve_registry_name

# card kind -> model classes that state card_variants(), in the order they were defined
_CARD_MODEL_CLASSES: dict[str, list] = {}
# preprocessing style ("mel", "avhubert", "mfcc", "s3fd") -> the feature extractor class whose defaults it shows
_CARD_FEATURE_EXTRACTORS: dict[str, type] = {}


def _registry_folder(spec, what: str):
    """The folder of a registry name (see `talkface.utils.sources.resolve_registry_name`), else `spec` as given."""
    if isinstance(spec, (str, os.PathLike)):
        folder = resolve_registry_name(spec, what=what)
        if folder is not None:
            return folder
    return spec


class RegistryNameMixin:
    """`from_pretrained` that also takes a registry name (`talkface download --list`)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        location = _registry_folder(pretrained_model_name_or_path, what=cls.__name__)
        return super().from_pretrained(location, *args, **kwargs)


class TalkFaceHubMixin(RegistryNameMixin):
    """Base of every talkface model base class: card-writing `push_to_hub`, registry names in `from_pretrained`."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "card_variants" in cls.__dict__:  # a class that states its card rows is the one its card describes
            from .cards import card_kind

            kind = card_kind(cls.config_class.model_type)  # fails at once for a class without a card
            _CARD_MODEL_CLASSES.setdefault(kind, []).append(cls)

    @classmethod
    def card_variants(cls) -> list:
        """(label, config) of the standard configurations the model card's parameter table lists for this class."""
        return []

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, commit_description: str | None = None,
                    private: bool | None = None, token=None, revision: str | None = None, create_pr: bool = False,
                    max_shard_size="50GB", tags=None, preprocessors=(), card_info: dict | None = None):
        """Upload this model to the Hub with its talkface model card (README.md).

        Same arguments as transformers' `PreTrainedModel.push_to_hub`, plus:
            preprocessors: feature extractors / tokenizers to upload beside the weights (their `save_pretrained`
                files, e.g. `preprocessor_config.json`, `tokenizer.model`).
            card_info: extra facts for the card (`source_checkpoint`, training figures).
        The card replaces any README.md already in the repository; it is rendered from the model's kind and config.
        """
        from .upload import push_to_hub

        info = dict(card_info or {})
        if tags:
            info["tags"] = list(tags)
        return push_to_hub([self, *preprocessors], repo_id, private=private, token=token, revision=revision,
                           create_pr=create_pr, commit_message=commit_message, commit_description=commit_description,
                           card_info=info, max_shard_size=max_shard_size)


class FeatureExtractorHubMixin(RegistryNameMixin):
    """Base of the talkface feature extractors: registry names in `from_pretrained`; `card_preprocessing` names
    the model card preprocessing table this class's defaults fill."""

    card_preprocessing: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        style = cls.__dict__.get("card_preprocessing")
        if style:
            _CARD_FEATURE_EXTRACTORS[style] = cls


def card_model_classes(kind: str) -> list:
    """The model classes that state the card rows of `kind` (empty until `talkface.models` is imported)."""
    return list(_CARD_MODEL_CLASSES.get(kind, ()))


def card_feature_extractor(style: str):
    """The feature extractor class of a card preprocessing style; a `LookupError` until `talkface.models` is
    imported (the hub layer cannot import models itself)."""
    try:
        return _CARD_FEATURE_EXTRACTORS[style]
    except KeyError:
        raise LookupError(f"no feature extractor states card_preprocessing {style!r}; import talkface.models "
                          "before rendering model cards") from None


__all__ = ["FeatureExtractorHubMixin", "RegistryNameMixin", "TalkFaceHubMixin", "card_feature_extractor",
           "card_model_classes"]
