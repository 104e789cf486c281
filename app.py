"""talkface web demo: lip-sync a face video or photo to speech, and score lip sync.

    python app.py --generator wav2lip=models/wav2lip --syncnet models/syncnet-lse --avhubert models/avhubert
    python app.py --demo-tiny-models      # no weights needed: tiny random models, to try the page only

The page is built here; what it does (model loading, upload checks, generation, scoring) lives in the talkface.demo
package.
See docs/demo.md for every flag and environment variable.
"""

import argparse
import functools
import logging
import os
import sys

import gradio as gr
import pandas as pd

from talkface.demo import DemoConfig, TalkFaceDemo, check_ffmpeg, config_from_args
from talkface.demo.config import (
    DEFAULT_CACHE_MAX_AGE,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_SECONDS,
    TINY_RANDOM_LABEL,
)
from talkface.errors import TalkFaceUserError

logger = logging.getLogger("talkface.app")

INTRO = """# talkface: lip sync and lip-sync scores
**Generate** makes the face in a video (or photo) speak a recording. **Score** measures how well the lips of
videos match their speech (LSE with SyncNet, AVS with AV-HuBERT) and, given the real video, how close they are to it
(SSIM, PSNR, mouth landmark distance)."""
ETHICS = ("Use only faces and voices you have the right to use. Do not make anyone appear to say what they did "
          "not say in order to deceive. Generated videos carry an invisible watermark and metadata saying they "
          "are generated (check a file with `talkface detect`).")


def _show_errors(action):
    """Run a page action; a `TalkFaceUserError` becomes a message on the page, anything else is logged in full."""

    @functools.wraps(action)
    def wrapper(*args, **kwargs):
        try:
            return action(*args, **kwargs)
        except TalkFaceUserError as err:
            raise gr.Error(str(err), duration=None, print_exception=False) from err
        except gr.Error:
            raise
        except Exception as err:
            logger.exception("unexpected error in %s", action.__name__)
            raise gr.Error(f"unexpected error ({type(err).__name__}: {err}); this is a bug, please report it with "
                           "the server log", duration=None) from err

    return wrapper


def _model_table(demo: TalkFaceDemo) -> str:
    lines = ["| role | model | source | status |", "|---|---|---|---|"]
    for status in demo.model_status():
        state = "configured (loaded on first use)" if status.missing is None else f"**missing**: {status.missing}"
        lines.append(f"| {status.role} | {status.name} | {status.source or '-'} | {state} |")
    return "\n".join(lines)


def _banner(demo: TalkFaceDemo, ffmpeg_message: str | None) -> str:
    notes = []
    if demo.config.tiny_random:
        notes.append(f"⚠️ **Tiny models with {TINY_RANDOM_LABEL}** (`--demo-tiny-models`): the generated mouths "
                     "are noise and the LSE/AVS numbers mean nothing. Convert real weights to get real results "
                     "(see the Models tab).")
    missing_generators = [s for s in demo.model_status() if s.role == "generator" and s.missing]
    if missing_generators:
        notes.append(f"⚠️ **No usable generator**: {missing_generators[0].missing}. Scoring still works.")
    if ffmpeg_message:
        notes.append(f"⚠️ {ffmpeg_message}")
    return "\n\n".join(notes)


def build_demo(config: DemoConfig | TalkFaceDemo | None = None) -> gr.Blocks:
    """The page: Generate, Score and Models tabs over a `TalkFaceDemo` (made from `config` unless given)."""
    demo = config if isinstance(config, TalkFaceDemo) else TalkFaceDemo(config)
    config = demo.config
    generator_names = list(config.generators)
    enhancer_missing = demo.enhancer_missing

    @_show_errors
    def generate(face_video, face_photo, audio, generator, face_index, pad_top, pad_bottom, pad_left, pad_right,
                 duration_policy, blend, feather, enhance, progress=gr.Progress()):
        result = demo.generate(face_video=face_video, face_photo=face_photo, audio=audio, generator=generator,
                               face_index=face_index, pads=(pad_top, pad_bottom, pad_left, pad_right),
                               duration_policy=duration_policy, blend=blend, feather=feather, enhance=enhance,
                               progress=lambda fraction, text: progress(fraction, desc=text))
        scores = pd.DataFrame(result.score_rows, columns=["score", "value", "meaning"])
        return str(result.video), result.message, scores, result.score_note

    @_show_errors
    def score(videos, audios, references, face_mode, progress=gr.Progress()):
        result = demo.score(videos, audios=audios, references=references, face_mode=face_mode,
                            progress=lambda fraction, text: progress(fraction, desc=text))
        table = pd.DataFrame(result.rows, columns=result.headers)
        return table, result.note, [str(p) for p in result.plots], [str(p) for p in result.downloads]

    with gr.Blocks(title="talkface", delete_cache=(600, int(config.cache_max_age)), analytics_enabled=False) as blocks:
        gr.Markdown(INTRO)
        banner = _banner(demo, check_ffmpeg())
        gr.Markdown(banner, visible=bool(banner), elem_id="banner")

        with gr.Tab("Generate", id="generate"):
            with gr.Row():
                with gr.Column():
                    with gr.Tabs():
                        with gr.Tab("Face video"):
                            face_video = gr.Video(label="Face video", sources=["upload"], include_audio=True,
                                                  elem_id="face-video")
                        with gr.Tab("Face photo"):
                            face_photo = gr.Image(label="Face photo", type="filepath", sources=["upload"],
                                                  elem_id="face-photo")
                    audio = gr.Audio(label="Speech (upload or record)", sources=["upload", "microphone"],
                                     type="filepath", elem_id="speech")
                    generator = gr.Dropdown(generator_names, value=generator_names[0] if generator_names else None,
                                            label="Generator",
                                            info=None if generator_names else "no generator configured: see the "
                                            "Models tab")
                    with gr.Accordion("Options", open=False):
                        face_index = gr.Number(0, precision=0, minimum=0, label="Face index",
                                               info="which face to animate when several are visible: 0 = largest")
                        gr.Markdown("Padding around the detected face, in pixels (more bottom padding includes the "
                                    "chin):")
                        with gr.Row():
                            pad_top = gr.Number(0, precision=0, label="top", min_width=60)
                            pad_bottom = gr.Number(10, precision=0, label="bottom", min_width=60)
                            pad_left = gr.Number(0, precision=0, label="left", min_width=60)
                            pad_right = gr.Number(0, precision=0, label="right", min_width=60)
                        duration_policy = gr.Radio(
                            ["pingpong", "loop", "cut"], value="pingpong", label="When the speech is longer than "
                            "the video", info="pingpong: play the video forward then backward; loop: start it "
                            "again; cut: stop with the video")
                        blend = gr.Radio(["feather", "hard", "poisson", "none"], value="feather",
                                         label="Blending of the generated mouth",
                                         info="feather: soft edge (default); hard: square paste as Wav2Lip; "
                                         "poisson: gradient-domain cloning; none: paste the raw crop")
                        feather = gr.Slider(0.05, 0.5, value=0.15, step=0.01, label="Feather width",
                                            info="soft edge width, as a fraction of the face box")
                        enhance = gr.Checkbox(
                            False, label="Enhance the face with GFPGAN (slower)", interactive=not enhancer_missing,
                            info="sharper faces than the 96x96 generator gives" if not enhancer_missing
                            else f"unavailable: GFPGAN is {enhancer_missing}", elem_id="enhance")
                    generate_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
                with gr.Column():
                    result_video = gr.Video(label="Result", interactive=False, buttons=["download"],
                                            elem_id="result-video")
                    result_message = gr.Markdown(elem_id="result-message")
                    result_scores = gr.Dataframe(headers=["score", "value", "meaning"], label="Lip sync of the result",
                                                 interactive=False, elem_id="result-scores")
                    result_note = gr.Markdown(elem_id="result-note")
            gr.Markdown(ETHICS)
            # a face is a video or a photo: giving one clears the other
            face_video.upload(lambda: None, outputs=face_photo, api_visibility="private", queue=False)
            face_photo.upload(lambda: None, outputs=face_video, api_visibility="private", queue=False)
            generate_button.click(
                generate,
                inputs=[face_video, face_photo, audio, generator, face_index, pad_top, pad_bottom, pad_left,
                        pad_right, duration_policy, blend, feather, enhance],
                outputs=[result_video, result_message, result_scores, result_note],
                api_name="generate", concurrency_id="compute")

        with gr.Tab("Score", id="score"):
            with gr.Row():
                with gr.Column():
                    score_videos = gr.File(label=f"Videos to score (up to {config.max_files})", file_count="multiple",
                                           file_types=["video"], elem_id="score-videos")
                    score_audios = gr.File(label="Speech (optional): one for all videos, or one per video with the "
                                           "same name; default: each video's own sound", file_count="multiple",
                                           file_types=["audio", "video"], elem_id="score-audios")
                    score_references = gr.File(label="Ground-truth video (optional): one for all, or one per video "
                                               "with the same name; enables AVS_m, AVS_v, SSIM, PSNR, LMD",
                                               file_count="multiple", file_types=["video"],
                                               elem_id="score-references")
                    face_mode = gr.Radio(
                        [("find and track the face (any video)", "track"),
                         ("the whole frame is the face (pre-cropped, LRS2 protocol)", "precropped")],
                        value="track", label="Faces for LSE")
                    score_button = gr.Button("Score", variant="primary", elem_id="score-button")
                with gr.Column():
                    score_table = gr.Dataframe(label="Scores (one row per video)", interactive=False,
                                               elem_id="score-table")
                    score_note = gr.Markdown(elem_id="score-note")
                    score_plots = gr.Gallery(label="Per-frame sync curves (one plot per video)", columns=1,
                                             object_fit="contain", height="auto", elem_id="score-plots")
                    score_files = gr.File(label="Download the results", file_count="multiple", interactive=False,
                                          elem_id="score-downloads")
            score_button.click(score, inputs=[score_videos, score_audios, score_references, face_mode],
                               outputs=[score_table, score_note, score_plots, score_files], api_name="score",
                               concurrency_id="compute")

        with gr.Tab("Models", id="models"):
            gr.Markdown("Models are folders made by `talkface convert` or Hugging Face Hub ids, given with flags or "
                        "environment variables (see docs/demo.md). Each is loaded on first use and kept.\n\n"
                        + _model_table(demo), elem_id="model-table")
    return blocks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="talkface web demo (Gradio)")
    models = parser.add_argument_group("models (folders from `talkface convert` or Hub ids)")
    models.add_argument("--generator", action="append", metavar="NAME=MODEL",
                        help="a generator to offer; repeat for several (env TALKFACE_GENERATOR, comma-separated; "
                        "default: models/wav2lip, models/talklip, models/talkface when they exist)")
    models.add_argument("--syncnet", metavar="MODEL", help="SyncNet for LSE (env TALKFACE_SYNCNET_LSE; default "
                        "models/syncnet-lse when it exists)")
    models.add_argument("--avhubert", metavar="MODEL", help="AV-HuBERT for AVS (env TALKFACE_AVHUBERT; default "
                        "models/avhubert when it exists)")
    models.add_argument("--gfpgan", metavar="MODEL", help="GFPGAN for face enhancement (env TALKFACE_GFPGAN; "
                        "default models/gfpgan-v1.4 when it exists)")
    models.add_argument("--demo-tiny-models", action="store_true",
                        help=f"use tiny models with {TINY_RANDOM_LABEL} for every model not given (outputs are noise)")
    models.add_argument("--device", default="auto", help="torch device: auto (cuda, then mps, then cpu), cpu, cuda")
    models.add_argument("--face-backend", default="mediapipe", choices=("mediapipe", "dlib", "face_alignment"))
    server = parser.add_argument_group("server")
    server.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; 0.0.0.0 on "
                        "Hugging Face Spaces)")
    server.add_argument("--port", type=int, default=None, help="port (default 7860 or $GRADIO_SERVER_PORT; the next "
                        "free one if taken)")
    server.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    server.add_argument("--concurrency", type=int, default=1, help="jobs (generate or score) run at once (default 1)")
    server.add_argument("--queue-size", type=int, default=16, help="jobs that may wait; more are refused (default 16)")
    limits = parser.add_argument_group("limits and files")
    limits.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE, help="largest upload, e.g. 200mb")
    limits.add_argument("--max-video-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                        help=f"longest face or scored video (default {DEFAULT_MAX_SECONDS:g})")
    limits.add_argument("--max-audio-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                        help=f"longest speech recording (default {DEFAULT_MAX_SECONDS:g})")
    limits.add_argument("--max-files", type=int, default=DEFAULT_MAX_FILES,
                        help=f"most videos scored at once (default {DEFAULT_MAX_FILES})")
    limits.add_argument("--cache-dir", default=os.environ.get("TALKFACE_DEMO_CACHE"),
                        help="where results shown on the page are kept (env TALKFACE_DEMO_CACHE; default: "
                        "<system temp>/talkface-demo)")
    limits.add_argument("--cache-max-age", type=float, default=DEFAULT_CACHE_MAX_AGE,
                        help=f"seconds a result is kept (default {DEFAULT_CACHE_MAX_AGE})")
    return parser


def server_name(host: str | None, environ=os.environ) -> str:
    """--host, else all interfaces on Hugging Face Spaces (SPACE_ID is set there), else this machine only."""
    return host or ("0.0.0.0" if environ.get("SPACE_ID") else "127.0.0.1")


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    ffmpeg_message = check_ffmpeg()
    if ffmpeg_message:
        print(f"warning: {ffmpeg_message}", file=sys.stderr)
    try:
        if args.concurrency < 1 or args.queue_size < 1:
            raise TalkFaceUserError("--concurrency and --queue-size must be at least 1")
        config = config_from_args(args)
        demo = TalkFaceDemo(config)
    except TalkFaceUserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for status in demo.model_status():
        if status.missing:
            logger.warning("%s %s: %s", status.role, status.name, status.missing)
        else:
            logger.info("%s %s: %s", status.role, status.name, status.source)
    blocks = build_demo(demo)
    blocks.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    blocks.launch(server_name=server_name(args.host), server_port=args.port, share=args.share,
                  max_file_size=args.max_file_size, allowed_paths=[str(config.cache_dir)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
