"""Bad-input rows of `talkface generate` (single runs and --jobs): outputs, options, media."""

import shutil

import numpy as np

from tests.bad_inputs.common import (
    BOX,
    copied,
    Case,
    disk_full_after,
    folders,
    gif,
    jobs_file,
    linked,
    mode_is,
    photo_with_face,
    read_only_folder,
    requires_module,
    results_row_says,
    run_python,
    speech_like,
    steps,
    truncated,
    video,
    wav,
    generate,
    written,
)

CASES = [
    # --- generate: the output is never an input, and nothing half-written stays ---------------------------------
    Case("generate: --out is the --face video", generate("{face.mp4}"), message="same file"),
    Case("generate: --out is a hard link to --face", generate("{linked.mp4}"),
         setup=linked("hard", "face.mp4", "linked.mp4"), message="same file"),
    Case("generate: --out is a symlink to --face", generate("{linked.mp4}"),
         setup=linked("sym", "face.mp4", "linked.mp4"), message="same file"),
    Case("generate: --out is the --audio file (a video with sound)", generate("{clip.mp4}", audio="{clip.mp4}"),
         message="same file"),
    Case("generate: --out is an existing folder", generate("{results}"), setup=folders("results"),
         message="existing folder"),
    Case("generate: output folder does not exist", generate("{nowhere/out.mp4}"), message="does not exist"),
    Case("generate: output folder not writable", generate("{locked/out.mp4}"), setup=read_only_folder("locked"),
         message="not writable"),
    Case("generate: disk full while encoding", generate("{out.mp4}"), patch=disk_full_after(2),
         message="no space left"),
    Case("generate: non-ASCII paths work", generate("{résultat_口.mp4}", face="{vidéo_面.mp4}"),
         setup=lambda folder: shutil.copy(folder / "face.mp4", folder / "vidéo_面.mp4"), code=0,
         creates=("résultat_口.mp4",)),
    Case("generate: the output's mode follows the umask", generate("{out.mp4}"), code=0,
         creates=("out.mp4",), check=mode_is("out.mp4", 0o666 & ~0o022)),
    Case("generate: works under umask 077 (a private output)", generate("{out.mp4}"), code=0, umask=0o077,
         creates=("out.mp4",), check=mode_is("out.mp4", 0o600)),
    Case("generate: the output's metadata names the model by its folder's name, not its path",
         generate("{out.mp4}"), code=0, creates=("out.mp4",), check=lambda folder: _metadata_names_model(folder)),
    # --- generate: options ------------------------------------------------------------------------------------
    Case("generate: --fps inf", generate("{out.mp4}", fps="inf"), message="fps must be a number > 0 and <= 240"),
    Case("generate: --fps nan", generate("{out.mp4}", fps="nan"), message="fps must be a number > 0"),
    Case("generate: --fps 0", generate("{out.mp4}", fps="0"), message="fps must be a number > 0"),
    Case("generate: --pads -500 0 0 0 (no face region left)", generate("{out.mp4}", box=None, pads=["-500", "0", "0", "0"]),
         message="--pads -500 0 0 0 (top bottom left right) leave no face region in a 64x64 frame"),
    Case("generate: --face-index 7 on a one-face photo", generate("{out.mp4}", face="{person.png}", box=None,
                                                                  face_index="7"),
         setup=steps(requires_module("mediapipe"), photo_with_face("person.png")),
         message="--face-index 7 but only 1 face was found"),
    Case("generate: --box outside the frame", generate("{out.mp4}", box=["0", "0", "500", "500"]),
         message="reaches outside the 64x64 frame"),
    # --- generate: the face input -------------------------------------------------------------------------------
    Case("generate: --face does not exist", generate("{out.mp4}", face="{missing.mp4}"), message="file not found"),
    Case("generate: --face is a folder", generate("{out.mp4}", face="{frames}"), setup=folders("frames"),
         message="is a folder, not a file"),
    Case("generate: --face is an audio-only file", generate("{out.mp4}", face="{speech.wav}"),
         message="has no video stream; pass a face video or a photo"),
    Case("generate: --face is a text file renamed .mp4", generate("{out.mp4}", face="{notes.mp4}"),
         setup=copied("notes.txt", "notes.mp4"), message="(it looks like a text file)"),
    Case("generate: --face is an empty .mp4", generate("{out.mp4}", face="{empty.mp4}"), setup=written("empty.mp4", ""),
         message="(it looks like an empty file (0 bytes))"),
    Case("generate: --face is a PDF renamed .png", generate("{out.mp4}", face="{scan.png}"),
         setup=written("scan.png", "%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n"),
         message="is not an image that can be decoded (it looks like a PDF document)"),
    Case("generate: --face is a truncated mp4", generate("{out.mp4}", face="{cut.mp4}"),
         setup=steps(copied("face.mp4", "cut.mp4"), truncated("cut.mp4", 0.6)), message="cannot decode the video of"),
    Case("generate: --face is a GIF (read as a video)", generate("{out.mp4}", face="{face.gif}"), setup=gif("face.gif"),
         code=0, creates=("out.mp4",)),
    Case("generate: a video with no face (detection)", generate("{out.mp4}", box=None),
         setup=requires_module("mediapipe"), message="no face found in"),
    Case("generate: odd dimensions (63x47)", generate("{out.mp4}", face="{odd.mp4}", box=["4", "4", "40", "40"]),
         setup=video("odd.mp4", 63, 47), code=0, creates=("out.mp4",), check=lambda folder: _size_is(folder, 63, 47)),
    Case("generate: a tiny 8x8 photo with a box", generate("{out.mp4}", face="{tiny.png}", box=["0", "0", "8", "8"]),
         setup=run_python("import cv2; cv2.imwrite('tiny.png', np.full((8, 8, 3), 120, np.uint8))"), code=0,
         creates=("out.mp4",)),
    Case("generate: a huge 4000x3000 photo without a face", generate("{out.mp4}", face="{huge.png}", box=None),
         setup=steps(requires_module("mediapipe"),
                     run_python("import cv2; cv2.imwrite('huge.png', np.full((3000, 4000, 3), 90, np.uint8))")),
         message="no face found in the photo"),
    # --- generate: the audio input ------------------------------------------------------------------------------
    Case("generate: --audio is a video without sound", generate("{out.mp4}", audio="{face.mp4}"),
         message="has no audio stream; pass a speech recording"),
    Case("generate: --audio is a text file renamed .wav", generate("{out.mp4}", audio="{talk.wav}"),
         setup=copied("notes.txt", "talk.wav"), message="(it looks like a text file)"),
    Case("generate: 0.1 s of audio", generate("{out.mp4}", audio="{short.wav}"), setup=wav("short.wav", speech_like(0.1)),
         message="the audio is too short"),
    Case("generate: silent audio (a closed mouth is the right result)", generate("{out.mp4}", audio="{silent.wav}"),
         setup=wav("silent.wav", np.zeros(6400, np.float32)), code=0, creates=("out.mp4",)),
    # --- generate --jobs ----------------------------------------------------------------------------------------
    Case("generate --jobs: the jobs file has no out column", ["generate", "--jobs", "{jobs.csv}", "--model", "{wav2lip}"],
         setup=jobs_file("face,audio\nface.mp4,speech.wav\n"), message="has no out column"),
    Case("generate --jobs: the jobs file does not exist", ["generate", "--jobs", "{missing.csv}", "--model", "{wav2lip}"],
         message="jobs file"),
    Case("generate --jobs: a row whose out is its own face (exit 1, recorded, input intact)",
         ["generate", "--jobs", "{jobs.csv}", "--model", "{wav2lip}", "--no-progress", "--device", "cpu"],
         setup=jobs_file("face,audio,out\nface.mp4,speech.wav,face.mp4\n"), code=1, lines=None,
         stdout="row 1 failed: --out {face.mp4} is the same file as --face", creates=("jobs.results.csv",),
         check=results_row_says("jobs.results.csv", "is the same file as --face")),
    Case("generate --jobs: a row with --fps inf next to a good row (exit 1, the good row is done)",
         ["generate", "--jobs", "{jobs.csv}", "--model", "{wav2lip}", "--no-progress", "--device", "cpu", "--precision",
          "fp32"],
         setup=jobs_file(f"face,audio,out,box,fps\nface.mp4,speech.wav,good.mp4,{' '.join(BOX)},\n"
                         f"face.mp4,speech.wav,bad.mp4,{' '.join(BOX)},inf\n"),
         code=1, lines=None, stdout="row 2 failed", creates=("jobs.results.csv", "good.mp4"),
         check=results_row_says("jobs.results.csv", "fps must be a number > 0")),
    Case("generate --jobs: --batch-files 0", ["generate", "--jobs", "{jobs.csv}", "--model", "{wav2lip}",
                                             "--batch-files", "0"],
         setup=jobs_file("face,audio,out\nface.mp4,speech.wav,out.mp4\n"),
         message="--batch-files takes a whole number >= 1 or auto"),
    Case("generate: --batch-files without --jobs", generate("{out.mp4}", batch_files="2"),
         message="only work with --jobs"),
    # argparse's own choice check: its usage lines, then the one error line (exit 2, nothing written)
    Case("generate: --overlap with an unknown mode", generate("{out.mp4}", overlap="maybe"),
         message="argument --overlap: invalid choice: 'maybe'", lines=None),
    Case("generate --jobs: a row with an unknown overlap",
         ["generate", "--jobs", "{jobs.csv}", "--model", "{wav2lip}", "--no-progress", "--device", "cpu"],
         setup=jobs_file(f"face,audio,out,box,overlap\nface.mp4,speech.wav,out.mp4,{' '.join(BOX)},maybe\n"),
         code=1, lines=None, stdout="row 1 failed", creates=("jobs.results.csv",),
         check=results_row_says("jobs.results.csv", "overlap")),
]


def _size_is(folder, width, height):
    from talkface import media

    info = media.probe(folder / "out.mp4")
    assert (info.width, info.height) in ((width, height), (width + width % 2, height + height % 2)), info


def _metadata_names_model(folder):
    from talkface.pipelines.lipsync.watermark import read_metadata

    tags = read_metadata(folder / "out.mp4")
    assert "model: wav2lip;" in tags["comment"], tags
    assert not any(str(folder) in value for value in tags.values()), tags  # no local path (user names, layout)
