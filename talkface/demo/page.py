"""The Gradio page over a `TalkFaceDemo`: Generate, Score and Models tabs (`build_demo`), and the actions behind
them (`PageActions`). The only module of talkface.demo that imports gradio; app.py launches it.

What a person sees when something goes wrong: every failure becomes one line in a status area beside the result
(no toast, no empty "Error" panel), the outputs of the earlier run are cleared, and the page stays usable. The
same actions are also API endpoints (`/generate`, `/score`) that raise the message as an error for scripts
(gradio_client's AppError).

Uploads are shown through previews (talkface.demo.preview): a face video a browser cannot play is shown as an
H.264 copy, and speech (an audio file or a video's sound track) as the WAV the generator hears; generation and
scoring read the original files.
"""

from __future__ import annotations

import logging

from ..errors import TalkFaceUserError
from ..faces.blending import BLEND_MODES
from ..utils.imports import require
from . import downloads as demo_downloads
from .config import TINY_RANDOM_LABEL, DemoConfig, check_ffmpeg
from .demo import TalkFaceDemo
from .examples import find_examples
from .generate import DEFAULTS, Eta, speed_note
from .preview import browser_can_play, describe_codecs, speech_preview, video_preview
from .score import SCORE_DEFAULTS
from .uploads import display_name

gr = require("gradio")
pd = require("pandas", "the web demo's tables")  # installed with gradio

logger = logging.getLogger(__name__)

INTRO = """# talkface: lip sync and lip-sync scores
**Generate** makes the face in a video (or photo) speak a recording. **Score** measures how well the lips of
videos match their speech (LSE with SyncNet, AVS with AV-HuBERT) and, given the real video, how close they are to it
(SSIM, PSNR, mouth landmark distance)."""
ETHICS = ("Use only faces and voices you have the right to use. Do not make anyone appear to say what they did "
          "not say in order to deceive. Generated videos carry an invisible watermark and metadata saying they "
          "are generated (check a file with `talkface detect`).")
BLEND_HELP = ("feather: the lower face inside the jaw line, with a soft edge inside it (default; the box mask where "
              "no face landmarks are found); box: a soft box-shaped mask; hard: the whole square, as the original "
              "Wav2Lip; "
              "poisson: gradient-domain cloning; none: nothing is pasted, the video keeps its own face and gets the "
              "new sound (to check the face tracking)")
SCORE_HEADERS = ["score", "value", "meaning"]
#: how a status line starts (words rather than emoji alone: a browser without an emoji font shows empty boxes)
PREFIXES = {"ok": "**Done**: ", "error": "⚠️ **Error**: ", "info": "ℹ️ "}
_MARKDOWN_SPECIAL = set("\\`*_{}[]<>#|~!")


# --------------------------------------------------------------------------------------------------------------
# Status lines
# --------------------------------------------------------------------------------------------------------------


def plain_markdown(text: str) -> str:
    """`text` as Markdown that shows exactly these characters, except that `code` spans stay code spans (the
    messages write commands that way). A file name such as *take_1*.mp4 is not turned into italics."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: no code spans at all
        parts = [str(text)]
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"`{part}`")
        else:
            out.append("".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in part))
    return "".join(out)


def status_line(kind: str, message) -> str:
    """One status line for the page: an icon and the first line of `message` (kind: ok, error or info)."""
    text = str(message).strip().splitlines()[0] if str(message).strip() else ""
    return PREFIXES[kind] + plain_markdown(text)


def unexpected_error_message(action: str, err: Exception) -> str:
    logger.error("unexpected error in %s", action, exc_info=err)
    return (f"unexpected error while {action} ({type(err).__name__}: {err}); this is a bug, please report it with "
            "the server log")


# --------------------------------------------------------------------------------------------------------------
# The actions
# --------------------------------------------------------------------------------------------------------------


def _no_progress(*args, **kwargs):
    pass


class PageActions:
    """What the page's events run. The page's own handlers never raise: they return the outputs with a status
    line; `*_api` raise a `gr.Error` instead (the `/generate` and `/score` endpoints)."""

    def __init__(self, demo: TalkFaceDemo):
        self.demo = demo

    # -- uploads ----------------------------------------------------------------------------------------------
    def face_changed(self, path):
        """A face upload (or example): (video preview, photo preview, note under the upload)."""
        hidden = gr.update(value=None, visible=False)
        if not path:
            return hidden, hidden, ""
        try:
            info = self.demo.check_face(path)
            if info.is_image:
                from .. import media

                return hidden, gr.update(value=media.read_frames(path, max_frames=1)[0], visible=True), ""
            if browser_can_play(path):
                return gr.update(value=str(path), visible=True), hidden, ""
            preview = video_preview(path, self.demo.new_output_dir())
            note = status_line("info", f"Browsers may not play {describe_codecs(path)}, so the preview is an H.264 "
                               "copy; generation uses your original file.")
            return gr.update(value=str(preview), visible=True), hidden, note
        except TalkFaceUserError as err:
            return hidden, hidden, status_line("error", err)
        except Exception as err:  # noqa: BLE001  (a bug: say so, keep the page usable)
            return hidden, hidden, status_line("error", unexpected_error_message("reading the face", err))

    def speech_changed(self, path):
        """A speech upload (or example): (what the speech player shows, note under the upload)."""
        if not path:  # cleared (or replaced by a recording): leave the player alone
            return gr.update(), ""
        try:
            info = self.demo.check_audio(path, role="speech")
            preview = speech_preview(path, self.demo.new_output_dir())
        except TalkFaceUserError as err:
            return gr.update(value=None), status_line("error", err)
        except Exception as err:  # noqa: BLE001  (a bug: said as such on the page)
            return gr.update(value=None), status_line("error", unexpected_error_message("reading the speech", err))
        note = ""
        if info.has_video:
            note = status_line("info", f"The sound track of the video {display_name(path)} "
                               f"({info.audio_duration:.1f} s) is the speech.")
        return gr.update(value=str(preview)), note

    # -- generate ---------------------------------------------------------------------------------------------
    def _generate(self, face, speech, recording, generator, face_index, pad_top, pad_bottom, pad_left, pad_right,
                  duration_policy, blend, feather, enhance, align_roll, progress):
        result = self.demo.generate(face=face, audio=speech or recording, generator=generator, face_index=face_index,
                                    pads=(pad_top, pad_bottom, pad_left, pad_right), duration_policy=duration_policy,
                                    blend=blend, feather=feather, enhance=enhance, align_roll=align_roll,
                                    progress=lambda fraction, text: progress(fraction, desc=text))
        scores = pd.DataFrame(result.score_rows, columns=SCORE_HEADERS)
        return str(result.video), status_line("ok", result.message), scores, result.score_note

    def generate(self, face, speech, recording, generator, face_index, pad_top, pad_bottom, pad_left, pad_right,
                 duration_policy, blend, feather, enhance, align_roll=DEFAULTS.align_roll,
                 progress=gr.Progress()):  # noqa: B008 (Gradio)
        """The Generate button: (result video, status line, scores, note); a failure is the status line."""
        try:
            return self._generate(face, speech, recording, generator, face_index, pad_top, pad_bottom, pad_left,
                                  pad_right, duration_policy, blend, feather, enhance, align_roll, progress)
        except TalkFaceUserError as err:
            message = err
        except Exception as err:  # noqa: BLE001  (a bug: said as such on the page)
            message = unexpected_error_message("generating", err)
        return None, status_line("error", message), pd.DataFrame(columns=SCORE_HEADERS), ""

    def generate_api(self, face, speech, recording, generator, face_index, pad_top, pad_bottom, pad_left, pad_right,
                     duration_policy, blend, feather, enhance, align_roll=DEFAULTS.align_roll,
                     progress=gr.Progress()):  # noqa: B008 (Gradio)
        """The `/generate` endpoint: the same outputs; a failure raises its message."""
        return _raising(self._generate, "generating")(face, speech, recording, generator, face_index, pad_top,
                                                      pad_bottom, pad_left, pad_right, duration_policy, blend,
                                                      feather, enhance, align_roll, progress)

    # -- download (the Models tab) -----------------------------------------------------------------------------
    def download(self, name, accept_license, progress=gr.Progress()):  # noqa: B008 (Gradio)
        """The Download button: (status line, model roles, registry table, banner, enhance checkbox); a failure
        (licence not ticked, offline, a bad file) is the status line and the page stays as it was."""
        try:
            message = status_line("ok", demo_downloads.download(
                name, accept_license=bool(accept_license),
                progress=lambda fraction, text: progress(fraction, desc=text)))
        except TalkFaceUserError as err:
            message = status_line("error", err)
        except Exception as err:  # noqa: BLE001  (a bug: said as such on the page)
            message = status_line("error", unexpected_error_message("downloading", err))
        banner = _banner(self.demo, check_ffmpeg())
        return (message, model_table(self.demo), demo_downloads.registry_table(),
                gr.update(value=banner, visible=bool(banner)), enhance_update(self.demo))

    # -- score ------------------------------------------------------------------------------------------------
    def _score(self, videos, audios, references, face_mode, lse_protocol, box, progress):
        eta = Eta()
        result = self.demo.score(videos, audios=audios, references=references, face_mode=face_mode,
                                 lse_protocol=lse_protocol, box=box,
                                 progress=lambda f, text: progress(f, desc=f"{text} ({eta.describe(f, 1.0)})"))
        table = pd.DataFrame(result.rows, columns=result.headers)
        count = len(result.rows) - (len(result.rows) > 1)  # without the mean row
        status = status_line("ok", f"{count} video{'s' * (count != 1)} scored in {eta.elapsed():.1f} s")
        return table, status, result.note, [str(p) for p in result.plots], [str(p) for p in result.downloads]

    def score(self, videos, audios, references, face_mode, lse_protocol=SCORE_DEFAULTS.lse_protocol, box=None,
              progress=gr.Progress()):  # noqa: B008 (Gradio)
        """The Score button: (table, status line, note, plots, downloads); a failure is the status line."""
        try:
            return self._score(videos, audios, references, face_mode, lse_protocol, box, progress)
        except TalkFaceUserError as err:
            message = err
        except Exception as err:  # noqa: BLE001  (a bug: said as such on the page)
            message = unexpected_error_message("scoring", err)
        return pd.DataFrame(), status_line("error", message), "", [], []

    def score_api(self, videos, audios, references, face_mode, lse_protocol=SCORE_DEFAULTS.lse_protocol, box=None,
                  progress=gr.Progress()):  # noqa: B008 (Gradio)
        """The `/score` endpoint: (table, note, plots, downloads); a failure raises its message."""
        table, _, note, plots, downloads = _raising(self._score, "scoring")(videos, audios, references, face_mode,
                                                                            lse_protocol, box, progress)
        return table, note, plots, downloads


def _raising(action, what):
    def run(*args):
        try:
            return action(*args)
        except TalkFaceUserError as err:
            raise gr.Error(str(err), print_exception=False) from err
        except Exception as err:
            raise gr.Error(unexpected_error_message(what, err)) from err

    return run


# --------------------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------------------


def _banner(demo: TalkFaceDemo, ffmpeg_message: str | None) -> str:
    notes = []
    if demo.config.tiny_random:
        notes.append(f"⚠️ **Tiny models with {TINY_RANDOM_LABEL}** (`--demo-tiny-models`): the generated mouths "
                     "are noise and the LSE/AVS numbers mean nothing. Convert real weights to get real results "
                     "(see the Models tab).")
    generators = [s for s in demo.model_status() if s.role == "generator"]
    missing_generators = [s for s in generators if s.missing]
    if missing_generators and len(missing_generators) == len(generators):  # none of them usable
        notes.append(f"⚠️ **No usable generator**: {missing_generators[0].missing}. Scoring still works.")
    if ffmpeg_message:
        notes.append(f"⚠️ {ffmpeg_message}")
    return "\n\n".join(notes)


def allowed_paths(config: DemoConfig) -> list[str]:
    """Folders outside the working directory and the temp folder that the page serves files from: the cache
    (results, previews) and the examples. Pass them to `blocks.launch(allowed_paths=...)`."""
    return [str(config.cache_dir)] + ([str(config.examples_dir)] if config.examples_dir else [])


def build_demo(config: DemoConfig | TalkFaceDemo | None = None) -> gr.Blocks:
    """The page: Generate, Score and Models tabs over a `TalkFaceDemo` (made from `config` unless given).

    Launch it with `blocks.queue(...).launch(allowed_paths=allowed_paths(config))`."""
    demo = config if isinstance(config, TalkFaceDemo) else TalkFaceDemo(config)
    actions = PageActions(demo)
    with gr.Blocks(title="talkface", delete_cache=(600, int(demo.config.cache_max_age)),
                   analytics_enabled=False) as blocks:
        gr.Markdown(INTRO)
        banner_text = _banner(demo, check_ffmpeg())
        banner = gr.Markdown(banner_text, visible=bool(banner_text), elem_id="banner")
        with gr.Tab("Generate", id="generate"):
            enhance = build_generate_tab(demo, actions)
        with gr.Tab("Score", id="score"):
            build_score_tab(demo, actions)
        with gr.Tab("Models", id="models"):
            build_models_tab(demo, actions, banner=banner, enhance=enhance)
    return blocks


def build_generate_tab(demo: TalkFaceDemo, actions: PageActions):
    generator_names = list(demo.config.generators)
    enhancer_missing = demo.enhancer_missing
    with gr.Row():
        with gr.Column():
            face = gr.File(label="Face: a video or a photo", type="filepath", elem_id="face-file")
            face_video = gr.Video(label="Face video", interactive=False, visible=False, height=320,
                                  elem_id="face-preview")
            face_photo = gr.Image(label="Face photo", interactive=False, visible=False, height=320,
                                  elem_id="face-photo")
            face_note = gr.Markdown(elem_id="face-note")
            speech = gr.File(label="Speech: an audio file, or a video (its sound track)", type="filepath",
                             elem_id="speech-file")
            recording = gr.Audio(label="Speech (the uploaded sound as the generator hears it), or record it here",
                                 sources=["microphone"], type="filepath", elem_id="speech")
            speech_note = gr.Markdown(elem_id="speech-note")
            generator = gr.Dropdown(generator_names, value=generator_names[0] if generator_names else None,
                                    label="Generator",
                                    info=None if generator_names else "no generator configured: see the Models tab")
            with gr.Accordion("Options", open=False):
                face_index = gr.Number(DEFAULTS.face_index, precision=0, minimum=0, label="Face index",
                                       info="which face to animate when several are visible: 0 = largest")
                gr.Markdown("Padding around the detected face, in pixels (more bottom padding includes the chin):")
                with gr.Row():
                    pads = [gr.Number(value, precision=0, label=side, min_width=60)
                            for side, value in zip(("top", "bottom", "left", "right"), DEFAULTS.pads)]
                duration_policy = gr.Radio(
                    ["pingpong", "loop", "cut"], value=DEFAULTS.duration_policy,
                    label="When the speech is longer than the video", info="pingpong: play the video forward then "
                    "backward; loop: start it again; cut: stop with the video")
                blend = gr.Radio(list(BLEND_MODES), value=DEFAULTS.blend,
                                 label="Blending of the generated mouth", info=BLEND_HELP, elem_id="blend")
                feather = gr.Slider(0.05, 0.5, value=DEFAULTS.feather, step=0.01, label="Feather width",
                                    info="soft edge width, as a fraction of the face box")
                align_roll = gr.Checkbox(DEFAULTS.align_roll, label="Turn tilted heads upright for the generator",
                                         info="crops follow the eye line and the mouth is turned back when pasted "
                                         "(for tilted or sideways heads)", elem_id="align-roll")
                enhance = gr.Checkbox(
                    False, label="Enhance the face with GFPGAN (slower)", interactive=not enhancer_missing,
                    info=_enhance_info(enhancer_missing), elem_id="enhance")
            generate_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
            gr.Markdown(speed_note(demo.device()), elem_id="speed-note")
        with gr.Column():
            status = gr.Markdown(elem_id="result-status")
            result_video = gr.Video(label="Result", interactive=False, buttons=["download"], elem_id="result-video")
            result_scores = gr.Dataframe(headers=SCORE_HEADERS, label="Lip sync of the result", interactive=False,
                                         elem_id="result-scores")
            result_note = gr.Markdown(elem_id="result-note")
    examples = find_examples(demo.config.examples_dir, demo) if demo.config.examples_dir else []
    if examples:
        gr.Examples([[str(e.face), str(e.speech)] for e in examples], inputs=[face, speech],
                    label="Examples: click one to load its face and speech, then Generate", examples_per_page=12,
                    elem_id="examples")
    gr.Markdown(ETHICS)

    private = {"api_visibility": "private"}
    face.change(actions.face_changed, inputs=face, outputs=[face_video, face_photo, face_note], **private)
    speech.change(actions.speech_changed, inputs=speech, outputs=[recording, speech_note], **private)
    # one speech at a time: clearing the upload clears its sound; a new recording replaces the upload
    speech.clear(lambda: (None, ""), outputs=[recording, speech_note], queue=False, **private)
    recording.stop_recording(lambda: (None, ""), outputs=[speech, speech_note], queue=False, **private)
    recording.clear(lambda: (None, ""), outputs=[speech, speech_note], queue=False, **private)
    inputs = [face, speech, recording, generator, face_index, *pads, duration_policy, blend, feather, enhance,
              align_roll]
    outputs = [result_video, status, result_scores, result_note]
    generate_button.click(actions.generate, inputs=inputs, outputs=outputs, concurrency_id="compute",
                          show_progress_on=result_video, api_name="page_generate", **private)
    # the API endpoint: same inputs, errors raised (a button no one sees carries it)
    gr.Button(visible=False).click(actions.generate_api, inputs=inputs, outputs=outputs, api_name="generate",
                                   concurrency_id="compute")
    return enhance


def _enhance_info(enhancer_missing) -> str:
    return ("sharper faces than the 96x96 generator gives" if not enhancer_missing
            else f"unavailable: GFPGAN is {enhancer_missing}")


def enhance_update(demo: TalkFaceDemo):
    """The GFPGAN check box as the models now stand (after a download, say)."""
    missing = demo.enhancer_missing
    return gr.update(interactive=not missing, info=_enhance_info(missing))


def build_score_tab(demo: TalkFaceDemo, actions: PageActions):
    config = demo.config
    with gr.Row():
        with gr.Column():
            # no file_types: a wrong file gets the demo's own one-line message rather than Gradio's type list
            videos = gr.File(label=f"Videos to score (up to {config.max_files})", file_count="multiple",
                             elem_id="score-videos")
            audios = gr.File(label="Speech (optional): one for all videos, or one per video with the same name; "
                             "default: each video's own sound", file_count="multiple", elem_id="score-audios")
            references = gr.File(label="Ground-truth video (optional): one for all, or one per video with the same "
                                 "name; enables AVS_m, AVS_v, SSIM, PSNR, LMD", file_count="multiple",
                                 elem_id="score-references")
            face_mode = gr.Radio(
                [("find and track the face (any video)", "track"),
                 ("the whole frame is the face (pre-cropped, LRS2 protocol)", "precropped")],
                value=SCORE_DEFAULTS.face_mode, label="Faces for LSE")  # the default of `talkface evaluate`
            lse_protocol = gr.Radio(
                [("talkface (fast, decodes the video directly)", "default"),
                 ("syncnet_python's procedure (the numbers papers print; slower)", "syncnet_python")],
                value=SCORE_DEFAULTS.lse_protocol, label="LSE protocol", elem_id="lse-protocol")
            box = gr.Textbox(label="Face box for syncnet_python's procedure (optional): x1 y1 x2 y2 in pixels; "
                             "empty: S3FD finds the faces", elem_id="lse-box")
            score_button = gr.Button("Score", variant="primary", elem_id="score-button")
        with gr.Column():
            status = gr.Markdown(elem_id="score-status")
            table = gr.Dataframe(label="Scores (one row per video)", interactive=False, elem_id="score-table")
            note = gr.Markdown(elem_id="score-note")
            plots = gr.Gallery(label="Per-frame sync curves (one plot per video)", columns=1, object_fit="contain",
                               height="auto", elem_id="score-plots")
            downloads = gr.File(label="Download the results", file_count="multiple", interactive=False,
                                elem_id="score-downloads")
    inputs = [videos, audios, references, face_mode, lse_protocol, box]
    score_button.click(actions.score, inputs=inputs, outputs=[table, status, note, plots, downloads],
                       concurrency_id="compute", show_progress_on=table, api_name="page_score",
                       api_visibility="private")
    gr.Button(visible=False).click(actions.score_api, inputs=inputs, outputs=[table, note, plots, downloads],
                                   api_name="score", concurrency_id="compute")


def model_table(demo: TalkFaceDemo) -> str:
    lines = ["| role | model | source | status |", "|---|---|---|---|"]
    for status in demo.model_status():
        state = "configured (loaded on first use)" if status.missing is None else f"**missing**: {status.missing}"
        lines.append(f"| {status.role} | {status.name} | {status.source or '-'} | {state} |")
    return "\n".join(lines)


def build_models_tab(demo: TalkFaceDemo, actions: PageActions | None = None, banner=None, enhance=None):
    """The Models tab: what each model role uses (or how to get a missing one), every downloadable model with its
    state, size and licence, and the Download button (a tick box for non-commercial licences) with progress.
    Returns the role table (a `gr.Markdown`)."""
    gr.Markdown("Models are registry names (downloaded below, or with `talkface download NAME`), folders made by "
                "`talkface convert` or Hugging Face Hub ids, given with flags or environment variables (see "
                "docs/demo.md). Each is loaded on first use and kept; a model downloaded here is used at once.")
    roles = gr.Markdown(model_table(demo), elem_id="model-table")
    gr.Markdown("### Download")
    registry_view = gr.Markdown(demo_downloads.registry_table(), elem_id="registry-table")
    names = demo_downloads.downloadable_names()
    with gr.Row():
        name = gr.Dropdown(names, value=names[0] if names else None, label="Model to download",
                           elem_id="download-name")
        accept = gr.Checkbox(False, label="I accept this model's licence", elem_id="download-accept")
    licence = gr.Markdown(demo_downloads.licence_text(names[0]) if names else "", elem_id="download-licence")
    button = gr.Button("Download", elem_id="download-button")
    status = gr.Markdown(elem_id="download-status")
    if actions is None:
        return roles
    private = {"api_visibility": "private"}
    name.change(demo_downloads.licence_text, inputs=name, outputs=licence, queue=False, **private)
    name.change(lambda _: False, inputs=name, outputs=accept, queue=False, **private)  # ticked per model
    outputs = [status, roles, registry_view, banner or gr.Markdown(visible=False),
               enhance or gr.Checkbox(visible=False)]
    button.click(actions.download, inputs=[name, accept], outputs=outputs, concurrency_id="download",
                 show_progress_on=status, api_name="download", **private)
    return roles


__all__ = ["PageActions", "allowed_paths", "build_demo", "plain_markdown", "status_line"]
