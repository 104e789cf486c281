"""Bad-input rows of the scoring commands: `talkface score`, `talkface evaluate` and `talkface lipread`."""

import numpy as np

from tests.bad_inputs.common import (
    LSE,
    SCORE,
    Case,
    copied,
    folders,
    read_only_folder,
    silent_clip,
    speech_like,
    video,
    wav,
    written,
)


def _json_has(name, **expected):
    def check(folder):
        import json

        data = json.loads((folder / name).read_text())
        for key, value in expected.items():
            found = data["videos"][0][key]
            assert found == value or (isinstance(value, float) and abs(found - value) < 0.01), (key, found)
    return check


def _names_model(path, folder):
    import json

    data = json.loads(path.read_text())
    assert data["syncnet"] == "syncnet" and data["settings"]["syncnet"] == "syncnet", data["settings"]
    assert str(folder / "syncnet") not in json.dumps({k: v for k, v in data.items() if k != "videos"})


CASES = [
    # --- evaluate --output ---------------------------------------------------------------------------------------
    Case("evaluate: --output is the --generated folder",
         ["evaluate", "--generated", "{generated}", "--reference", "{generated}", "--metrics", "psnr", "--output",
          "{generated}"], setup=copied("clip.mp4", "generated/clip.mp4"), message="is --generated"),
    Case("evaluate: --output is an existing file",
         ["evaluate", "--generated", "{generated}", "--reference", "{generated}", "--metrics", "psnr", "--output",
          "{notes.txt}"], setup=copied("clip.mp4", "generated/clip.mp4"), message="is a file"),
    Case("evaluate: --metrics ssim without --reference",
         ["evaluate", "--generated", "{generated}", "--metrics", "ssim", "--output", "{report}"],
         setup=copied("clip.mp4", "generated/clip.mp4"), message="ssim needs --reference"),
    Case("evaluate: --metrics lse with no SyncNet given or downloaded",
         ["evaluate", "--generated", "{generated}", "--metrics", "lse", "--output", "{report}"],
         setup=copied("clip.mp4", "generated/clip.mp4"), message="talkface download syncnet-lse"),
    Case("evaluate: --generated is a file", ["evaluate", "--generated", "{clip.mp4}", "--reference", "{clip.mp4}",
                                             "--metrics", "psnr", "--output", "{report}"],
         message="is a file, not a folder"),
    Case("evaluate: --generated does not exist", ["evaluate", "--generated", "{nowhere}", "--reference", "{tmp}",
                                                  "--metrics", "psnr", "--output", "{report}"],
         message="nowhere does not exist"),
    Case("evaluate: an unknown metric", ["evaluate", "--generated", "{tmp}", "--metrics", "sharpness", "--output",
                                         "{report}"], message="unknown metric 'sharpness'"),
    # --- score / lipread --output -------------------------------------------------------------------------------
    Case("score: --output is an existing folder", [*SCORE, "--output", "{results}"], setup=folders("results"),
         message="existing folder"),
    Case("score: --output is the scored video", [*SCORE, "--output", "{clip.mp4}"], message="same file"),
    Case("score: --output folder not writable", [*SCORE, "--output", "{locked/scores.json}"],
         setup=read_only_folder("locked"), message="not writable"),
    Case("lipread: --modality audio on a video without an audio stream", ["lipread", "{face.mp4}", "--modality",
                                                                         "audio"],
         message="face.mp4 has no audio stream, so --modality audio has nothing to hear; use --modality video"),
    Case("lipread: --modality audiovisual on a video whose sound is silence",
         ["lipread", "{hush.mp4}", "--modality", "audiovisual"], setup=lambda folder: silent_clip(folder / "hush.mp4"),
         message="the sound track of {hush.mp4} is silent"),
    Case("lipread: --output is an existing folder",
         ["lipread", "{clip.mp4}", "--avhubert", "{wav2lip}", "--output", "{results}"],
         setup=folders("results"), message="existing folder"),
    Case("score: --device auto (resolved, was a traceback)", ["score", "{clip.mp4}", *LSE[:-2], "--device", "auto"],
         code=0),
    Case("score: --device cuda:7 on a machine without it", ["score", "{clip.mp4}", *LSE[:-2], "--device", "cuda:7"],
         message="no CUDA GPU is available"),
    Case("score: --metrics lse with no SyncNet given or downloaded", ["score", "{clip.mp4}", "--metrics", "lse"],
         message="talkface download syncnet-lse"),
    Case("score: the video does not exist", ["score", "{missing.mp4}", *LSE], message="file not found"),
    Case("score: the video is a folder", ["score", "{tmp}", *LSE], message="is a folder, not a file"),
    Case("score: a text file renamed .mp4", ["score", "{notes.mp4}", *LSE], setup=copied("notes.txt", "notes.mp4"),
         message="(it looks like a text file)"),
    Case("score: a video without sound and no --audio", ["score", "{face.mp4}", *LSE],
         message="has no sound track; pass the driving speech with --audio"),
    Case("score: 0.1 s of speech for the clip", ["score", "{clip.mp4}", "--audio", "{short.wav}", *LSE],
         setup=wav("short.wav", speech_like(0.1)), message="too short"),
    Case("score: 10-minute audio on a 2 s clip (scored over the video, fully covered)",
         ["score", "{long_clip.mp4}", "--audio", "{long.wav}", *LSE, "--output", "{scores.json}"],
         setup=lambda folder: (video("long_clip.mp4", num_frames=50)(folder),
                               wav("long.wav", np.zeros(600 * 16000, np.float32) + 0.01)(folder)),
         code=0, creates=("scores.json",), check=_json_has("scores.json", audio_coverage=1.0)),
    Case("score: a 64x64 clip at an odd size (63x47)", ["score", "{odd.mp4}", "--audio", "{speech.wav}", *LSE],
         setup=video("odd.mp4", 63, 47, num_frames=10), code=0),
    Case("score: the JSON names the model by its folder's name, not its path",
         ["score", "{clip.mp4}", *LSE, "--output", "{scores.json}"], code=0, creates=("scores.json",),
         check=lambda folder: _names_model(folder / "scores.json", folder)),
    Case("score: non-ASCII paths", ["score", "{vidéo_面.mp4}", *LSE, "--output", "{résultat_口.json}"],
         setup=copied("clip.mp4", "vidéo_面.mp4"), code=0, creates=("résultat_口.json",)),
    Case("lipread: the video does not exist", ["lipread", "{missing.mp4}"], message="file not found"),
    Case("lipread: --beam 0", ["lipread", "{clip.mp4}", "--beam", "0"], message="--beam must be at least 1"),
]
