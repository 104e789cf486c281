"""Clickable examples for the Generate tab, found in a folder (`app.py --examples DIR`).

The rule that pairs the files of the folder (not its sub-folders; hidden files are skipped):

1. faces are videos (.mp4, .mkv, .mov, .webm, .avi, ...) and photos (.png, .jpg, ...); speech files are audio
   files (.wav, .flac, .mp3, .m4a, .ogg, .opus, .aac);
2. a face and a speech file with the same name go together (``talk.mp4`` with ``talk.wav``);
3. the other faces, in name order, take the other speech files in name order, one each, starting again from the
   first when there are more faces than speech files;
4. when the folder has no speech file at all, each face video is its own speech (its sound track) and photos are
   left out.

Files that the demo would refuse (unreadable, no picture or no sound, longer than its limits) are left out with a
log line, and at most `limit` examples are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import MediaError, TalkFaceUserError
from ..evaluation.pairing import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from ..media import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

#: most examples shown on the page
DEFAULT_EXAMPLE_LIMIT = 12


@dataclass(frozen=True)
class Example:
    """One example: a face (video or photo) and the speech to drive it."""

    face: Path
    speech: Path


def pair_example_files(folder) -> list[Example]:
    """The examples of `folder` by the module's rule (by file names only; nothing is opened)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise TalkFaceUserError(f"examples folder {folder} not found; pass --examples a folder of face videos or "
                                "photos and speech files")
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: p.name)
    faces = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS]
    speech = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
    if not speech:
        return [Example(face, face) for face in faces if face.suffix.lower() in VIDEO_EXTENSIONS]
    by_stem = {p.stem: p for p in speech}
    named = {face: by_stem[face.stem] for face in faces if face.stem in by_stem}
    others = [p for p in speech if p not in named.values()] or speech
    examples, turn = [], 0
    for face in faces:
        if face in named:
            examples.append(Example(face, named[face]))
        else:
            examples.append(Example(face, others[turn % len(others)]))
            turn += 1
    return examples


def find_examples(folder, demo, limit: int = DEFAULT_EXAMPLE_LIMIT) -> list[Example]:
    """The examples of `folder` that `demo` (a `TalkFaceDemo`) accepts, at most `limit` of them."""
    kept = []
    for example in pair_example_files(folder):
        if len(kept) >= limit:
            break
        try:
            demo.check_face(example.face)
            demo.check_audio(example.speech)
        except (MediaError, TalkFaceUserError) as err:
            logger.warning("example %s + %s left out: %s", example.face.name, example.speech.name, err)
            continue
        kept.append(example)
    if not kept:
        logger.warning("no usable example in %s (see docs/demo.md for the pairing rule)", folder)
    return kept
