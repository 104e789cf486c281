"""The train and validation datasets named by a training config's `dataset` section."""

from pathlib import Path

from ...errors import TalkFaceUserError
from .dataset import SyntheticTalkFaceDataset, TalkFaceDataset


def check_data_config(data: dict):
    """Fail on a missing data folder (before any network is loaded), naming the fix."""
    if data["name"] == "synthetic":
        return
    if data["name"] != "preprocessed":
        raise TalkFaceUserError(f"dataset.name={data['name']!r}: use 'preprocessed' or 'synthetic'")
    if not data["root"]:
        raise TalkFaceUserError("no training data: pass --data-root DIR (made by train/preprocess.py) or "
                                "--dataset synthetic for a smoke run")
    if not (Path(data["root"]) / "manifest.jsonl").is_file():
        raise TalkFaceUserError(f"no manifest.jsonl in {data['root']}; preprocess the videos first (python "
                                f"train/preprocess.py --input-dir VIDEOS --output-dir {data['root']}) or pass "
                                "--data-root")
    for key in ("train_list", "val_list"):
        if data[key] and not Path(data[key]).is_file():
            raise TalkFaceUserError(f"dataset.{key}: {data[key]} not found; give a file of video ids or null")


def _read_ids(list_file) -> list[str] | None:
    if list_file is None:
        return None
    return [line.split()[0] for line in Path(list_file).read_text(encoding="utf-8").splitlines() if line.strip()]


def build_datasets(config: dict, needs_context: bool, num_frames: int, img_size: int):
    """(train, validation) datasets of `num_frames`-frame windows of `img_size` faces.

    `needs_context`: items carry the utterance context (faces, mouth transforms, AV-HuBERT audio features) that the
    lip-sync and lip-reading losses read.
    """
    data = config["dataset"]
    seed = config["seed"]
    check_data_config(data)
    if data["name"] == "synthetic":
        kwargs = dict(num_frames=num_frames, img_size=img_size, context=needs_context,
                      context_frames=data["synthetic_context_frames"])
        return (SyntheticTalkFaceDataset(length=data["synthetic_length"], seed=seed, **kwargs),
                SyntheticTalkFaceDataset(length=data["synthetic_val_length"], seed=seed + 1, **kwargs))
    common = dict(num_frames=num_frames, img_size=img_size, context=needs_context,
                  context_frames=data["context_frames"], val_fraction=data["val_fraction"])
    train = TalkFaceDataset(data["root"], split="train", ids=_read_ids(data["train_list"]), seed=seed,
                            samples_per_video=data["samples_per_video"], **common)
    val = TalkFaceDataset(data["root"], split="val", ids=_read_ids(data["val_list"]), seed=seed + 1, allow_empty=True,
                          **common)
    return train, val


def video_dataset(dataset) -> TalkFaceDataset | None:
    """The `TalkFaceDataset` of real videos under `dataset` (which may wrap it, e.g. `TalkLipDataset`), or None."""
    seen = 0
    while dataset is not None and not isinstance(dataset, TalkFaceDataset) and seen < 8:
        dataset = getattr(dataset, "dataset", None)
        seen += 1
    return dataset if isinstance(dataset, TalkFaceDataset) else None


__all__ = ["build_datasets", "check_data_config", "video_dataset"]
