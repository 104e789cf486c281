"""Training data: the preprocessed layout, datasets of k-frame windows, and the batch collation."""

from .collate import TalkFaceBatch, collate_talkface
from .dataset import SyntheticTalkFaceDataset, TalkFaceDataset, split_of
from .layout import VideoRecord, read_manifest, write_manifest

__all__ = [
    "SyntheticTalkFaceDataset",
    "TalkFaceBatch",
    "TalkFaceDataset",
    "VideoRecord",
    "collate_talkface",
    "read_manifest",
    "split_of",
    "write_manifest",
]
