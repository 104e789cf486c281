"""Hugging Face Hub uploads of talkface model folders, with our model card.

* `push_to_hub(objects, repo_id)` saves models / feature extractors / tokenizers with a card into a temporary folder
  and uploads it (what `model.push_to_hub(repo)` does, through `talkface.hub.mixin.TalkFaceHubMixin`);
* `upload_folder_to_hub(folder, repo_id)` uploads an existing folder (`talkface convert --push-to-hub`,
  `train/train.py --push-to-hub`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def upload_folder_to_hub(folder, repo_id: str, *, private: bool | None = None, token=None, revision=None,
                         create_pr: bool = False, commit_message: str = "Upload talkface model",
                         commit_description: str | None = None):
    """Create `repo_id` if needed and upload every file of `folder` in one commit; returns the `CommitInfo`."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json; save the model into it (save_pretrained) first")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                             commit_description=commit_description, token=token, revision=revision,
                             create_pr=create_pr)


def push_to_hub(objects, repo_id: str, *, kind: str | None = None, private: bool | None = None, token=None,
                revision=None, create_pr: bool = False, commit_message: str | None = None,
                commit_description: str | None = None, card_info: dict | None = None,
                max_shard_size="50GB"):
    """Save `objects` (the model first, then feature extractors / tokenizers) with a model card and upload them.

    The card is rendered for `kind` (default: from the model's `model_type`) with `card_info` and `repo_id`.
    Returns the `CommitInfo` of the upload.
    """
    from .cards import card_kind, write_model_card

    objects = list(objects) if isinstance(objects, (list, tuple)) else [objects]
    model = next((obj for obj in objects if hasattr(obj, "config")), None)
    if model is None:
        raise ValueError("push_to_hub needs a model (an object with a config) among the objects")
    kind = kind or card_kind(model)
    with tempfile.TemporaryDirectory(prefix="talkface-push-") as tmp_dir:
        for obj in objects:
            if obj is model:
                obj.save_pretrained(tmp_dir, max_shard_size=max_shard_size)
            else:
                obj.save_pretrained(tmp_dir)
        write_model_card(tmp_dir, kind, model=model, repo_id=repo_id, **(card_info or {}))
        message = commit_message or f"Upload {type(model).__name__} with talkface"
        return upload_folder_to_hub(tmp_dir, repo_id, private=private, token=token, revision=revision,
                                    create_pr=create_pr, commit_message=message,
                                    commit_description=commit_description)


__all__ = ["push_to_hub", "upload_folder_to_hub"]
