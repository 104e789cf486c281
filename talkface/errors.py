"""Errors that talkface reports to users.

`TalkFaceUserError` marks a problem with the user's input or environment (a missing file, a video without a
face, a model folder of the wrong kind, a missing optional dependency). Command-line entry points print its
message on one line and exit with code 2; the web demo shows it on the page. Anything else is a bug and keeps
its traceback.
"""


class TalkFaceUserError(Exception):
    """A problem the user can fix. The message names the problem and the fix, on one line."""


class MissingDependencyError(TalkFaceUserError, ImportError):
    """An optional dependency is not installed."""


class NoFaceError(TalkFaceUserError):
    """No face was found where one is required."""


class MediaError(TalkFaceUserError):
    """A media file cannot be read or written (missing, not a video, no audio stream, ...)."""


class ModelLoadError(TalkFaceUserError):
    """A model folder or Hub id is missing or holds the wrong kind of model."""


class ModelNotDownloadedError(ModelLoadError):
    """A registry model name (`talkface download --list`) whose folder is not in the models dir yet."""


class InvalidInputError(TalkFaceUserError, ValueError):
    """An option or argument is out of range for the input it is used on (a bad fps, pads that leave no face,
    a face index beyond the faces found)."""


class OutputError(MediaError):
    """An output cannot be written where it was asked for (writing it would harm an input, the folder is missing or
    read-only, the disk is full, ...)."""
