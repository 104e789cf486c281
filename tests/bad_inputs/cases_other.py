"""Bad-input rows of `talkface detect` and `talkface download` (nothing is downloaded: the models dir is the
test's own, empty one, and the rows fail before any request)."""

from tests.bad_inputs.common import Case, copied, folders, written

CASES = [
    Case("detect: the video does not exist", ["detect", "{missing.mp4}"], message="file not found"),
    Case("detect: a folder", ["detect", "{tmp}"], message="is a folder, not a file"),
    Case("detect: a text file", ["detect", "{notes.txt}"], message="(it looks like a text file)"),
    Case("detect: an empty .mp4", ["detect", "{empty.mp4}"], setup=written("empty.mp4", ""),
         message="(it looks like an empty file (0 bytes))"),
    Case("detect: an audio-only file", ["detect", "{speech.wav}"], message="has no video stream"),
    Case("detect: a clip without the mark (exit 1, nothing written)", ["detect", "{face.mp4}"], code=1, lines=None,
         stdout="no talkface"),
    Case("detect: --max-frames -1", ["detect", "{face.mp4}", "--max-frames", "-1"],
         message="--max-frames must be >= 0"),
    Case("detect: --threshold 0", ["detect", "{face.mp4}", "--threshold", "0"], message="--threshold must be > 0"),
    Case("download: an unknown name", ["download", "no-such-model"], message="unknown model name 'no-such-model'"),
    Case("download: a non-commercial licence not accepted", ["download", "avhubert-base", "--models-dir", "{models}"],
         message="to accept it, run: talkface download avhubert-base --accept-license"),
    Case("download: --models-dir is a file", ["download", "s3fd", "--models-dir", "{notes.txt}"],
         message="is a file, not a folder"),
    Case("download: --list with --models-dir a file", ["download", "--list", "--models-dir", "{notes.txt}"],
         message="is a file, not a folder"),
    Case("download: no name and no --list", ["download"], message="name the models to download"),
]
