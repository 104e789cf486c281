"""talkface web demo: lip-sync a face video or photo to speech, and score lip sync.

    python app.py --generator wav2lip=models/wav2lip --syncnet models/syncnet-lse --avhubert models/avhubert
    python app.py --demo-tiny-models      # no weights needed: tiny random models, to try the page only
    python app.py --examples ../shared/data   # clickable examples from a folder

The entry point (also of a Hugging Face Space: spaces/README.md, spaces/requirements.txt, docs/demo.md).
The page is built in
talkface/demo/page.py; what it does (model loading, upload checks, previews, generation, scoring) lives in the
rest of the talkface.demo package. See docs/demo.md for every flag and environment variable.
"""

import argparse
import logging
import os
import sys

from talkface.demo import TalkFaceDemo, check_ffmpeg, config_from_args
from talkface.demo.config import (
    DEFAULT_CACHE_MAX_AGE,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_SECONDS,
    TINY_RANDOM_LABEL,
)
from talkface.demo.page import PageActions, allowed_paths, build_demo  # noqa: F401  (the page's public names)
from talkface.errors import TalkFaceUserError

logger = logging.getLogger("talkface.app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="talkface web demo (Gradio)")
    models = parser.add_argument_group("models (folders from `talkface convert` or Hub ids)")
    models.add_argument("--generator", action="append", metavar="NAME=MODEL",
                        help="a generator to offer; repeat for several (env TALKFACE_GENERATOR, comma-separated; "
                        "default: models/wav2lip-gan, models/wav2lip, models/talklip, models/talkface when they "
                        "exist)")
    models.add_argument("--syncnet", metavar="MODEL", help="SyncNet for LSE (env TALKFACE_SYNCNET_LSE; default "
                        "models/syncnet-lse when it exists)")
    models.add_argument("--avhubert", metavar="MODEL", help="AV-HuBERT for AVS (env TALKFACE_AVHUBERT; default "
                        "models/avhubert when it exists)")
    models.add_argument("--s3fd", metavar="MODEL", help="S3FD face detector for LSE with syncnet_python's procedure "
                        "(env TALKFACE_S3FD; default models/s3fd when it exists)")
    models.add_argument("--gfpgan", metavar="MODEL", help="GFPGAN for face enhancement (env TALKFACE_GFPGAN; "
                        "default models/gfpgan-v1.4 when it exists)")
    models.add_argument("--demo-tiny-models", action="store_true",
                        help=f"use tiny models with {TINY_RANDOM_LABEL} for every model not given (outputs are noise)")
    models.add_argument("--device", default="auto", help="torch device: auto (cuda, then mps, then cpu), cpu, cuda, "
                        "cuda:N or mps")
    models.add_argument("--face-backend", default="mediapipe", choices=("mediapipe", "dlib", "face_alignment"))
    page = parser.add_argument_group("page")
    page.add_argument("--examples", metavar="DIR", help="a folder of face videos/photos and speech files shown as "
                        "clickable examples (env TALKFACE_DEMO_EXAMPLES; pairing rule in docs/demo.md)")
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
                  max_file_size=args.max_file_size, allowed_paths=allowed_paths(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
