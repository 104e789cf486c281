"""Bad-input rows of the web demo's handlers (talkface.demo.page.PageActions: the face upload, the /generate and
/score endpoints), run in-process on the corpus files; the demo's own outputs go to a cache folder beside the
case's folder, so the harness's "nothing new, nothing changed" covers the user's files."""

import numpy as np

from tests.bad_inputs.common import (
    Case,
    copied,
    demo_call,
    demo_generate,
    demo_score,
    demo_upload,
    gif,
    speech_like,
    wav,
    written,
)

PDF = "%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _note_says(text):
    def check(note):
        assert text in note, note
    return check


CASES = [
    Case("demo upload: a PDF renamed .png as the face photo", call=demo_call(demo_upload("scan.png")),
         setup=written("scan.png", PDF),
         message="the face file 'scan.png' is not an image (it looks like a PDF document); upload a PNG/JPEG photo"),
    Case("demo generate: a PDF renamed .png as the face photo", call=demo_call(demo_generate("scan.png", "speech.wav")),
         setup=written("scan.png", PDF), message="is not an image (it looks like a PDF document)"),
    Case("demo generate: a text file renamed .mp4 as the face", call=demo_call(demo_generate("notes.mp4", "speech.wav")),
         setup=copied("notes.txt", "notes.mp4"), message="(it looks like a text file)"),
    Case("demo generate: an audio-only file as the face", call=demo_call(demo_generate("speech.wav", "speech.wav")),
         message="has no picture (is it an audio file?)"),
    Case("demo generate: a silent video as the speech", call=demo_call(demo_generate("face.mp4", "face.mp4")),
         message="has no sound"),
    Case("demo generate: no speech", call=demo_call(demo_generate("face.mp4", None)), message="no audio given"),
    Case("demo generate: no face", call=demo_call(demo_generate(None, "speech.wav")), message="no face given"),
    Case("demo generate: a GIF face without a detectable face", call=demo_call(demo_generate("face.gif", "speech.wav")),
         setup=gif("face.gif"), message="no face"),
    Case("demo score: a photo given as a video", call=demo_call(demo_score(["photo.png"])), message="is not a video"),
    Case("demo score: nothing uploaded", call=demo_call(demo_score([])), message="no video given"),
    Case("demo score: a text file renamed .wav as the speech",
         call=demo_call(demo_score(["clip.mp4"], audios=["talk.wav"])), setup=copied("notes.txt", "talk.wav"),
         message="cannot be read as audio"),
    Case("demo score: speech much shorter than the video is noted",
         call=demo_call(demo_score(["long_clip.mp4"], audios=["short.wav"],
                                   check=_note_says("**Short audio**: long_clip.mp4"))),
         setup=lambda folder: (wav("short.wav", speech_like(1.2))(folder), _long_clip(folder)), code=0),
]


def _long_clip(folder):
    from tests.bad_inputs.common import video

    video("long_clip.mp4", num_frames=75, audio=np.zeros(3 * 16000, np.float32))(folder)
