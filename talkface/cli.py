"""The `talkface` command: generate / score / lipread / evaluate / convert / detect / download.

Each sub-command lives in `talkface/commands/<name>.py` and exposes `register(subparsers)`, which adds its
parser and sets `func` (a callable taking the parsed args and returning an exit code or None). Modules are
imported only when their command runs, so `talkface --help` stays fast and optional dependencies stay optional.

User errors (`TalkFaceUserError`) are printed as one line on stderr with exit code 2 and no traceback.
"""

import argparse
import logging
import sys

from .errors import TalkFaceUserError
from .hub import registry
from .utils.imports import import_module

# command name -> (module, one-line help)
COMMANDS = {
    "generate": ("talkface.commands.generate", "lip-sync a face video or photo to a speech recording"),
    "score": ("talkface.commands.score", "lip-sync scores of videos (LSE with SyncNet, AVS with AV-HuBERT)"),
    "lipread": ("talkface.commands.lipread", "transcribe a video with the AV-HuBERT lip reader"),
    "evaluate": ("talkface.commands.evaluate", "evaluate a folder of generated videos against references"),
    "convert": ("talkface.commands.convert", "convert an original checkpoint into a talkface model folder"),
    "detect": ("talkface.commands.detect", "check a video for the talkface watermark (exit 0: found, 1: not)"),
    "download": ("talkface.commands.download", "download a public release by name, convert it and keep the folder"),
}

EXIT_USER_ERROR = 2


def build_parser(argv=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talkface", description="Audio-driven talking faces and lip-sync evaluation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the requested command's module is imported; the others get a placeholder parser for --help.
    requested = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        if name == requested:
            import_module(module_name).register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
        if args.command is None:
            parser.print_help()
            return EXIT_USER_ERROR
        args.argv = argv  # the command line, for commands that start copies of themselves (evaluate --num-processes)
        if getattr(args, "download", False):  # --download (commands/download.py: add_download_flag)
            registry.set_auto_download(True)
        code = args.func(args)
        return 0 if code is None else int(code)
    except TalkFaceUserError as err:
        print(f"talkface: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("talkface: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
