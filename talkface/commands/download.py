"""`talkface download NAME... [--models-dir DIR] [--accept-license] [--force] [--push-to-hub REPO]`, `--list`.

Fetches a public release by its registry name (`talkface.hub.registry`), checks it, converts it with its
`talkface convert` kind and keeps the model folder in the models dir (`~/.cache/talkface/models`, or
`TALKFACE_MODELS_DIR`), where `--model NAME` and the other model flags find it. `TALKFACE_DOWNLOAD_MIRROR=URL`
makes every download try `URL/<name>/<file name>` first.
"""

import sys

from ..errors import TalkFaceUserError
from ..hub import download as downloads


def register(subparsers):
    parser = subparsers.add_parser(
        "download", help="download a public release by name, convert it and keep the model folder",
        description="Download public releases by name (see --list), convert them and keep the model folders.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="registry names (talkface download --list)")
    parser.add_argument("--list", action="store_true", help="list every name: size, licence, downloaded or not")
    parser.add_argument("--models-dir", help=f"where model folders live (default: ${downloads.MODELS_DIR_ENV} or "
                                             f"{downloads.DEFAULT_MODELS_DIR})")
    parser.add_argument("--accept-license", action="store_true",
                        help="accept the non-commercial licence of the named models (else asked on a terminal)")
    parser.add_argument("--force", action="store_true", help="download and convert again over an existing folder")
    parser.add_argument("--push-to-hub", metavar="REPO", help="also upload the converted folder (one NAME) with its "
                                                              "model card to this Hub repository")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def add_download_flag(parser):
    """--download: registry names that are not downloaded yet are downloaded on first use (`talkface.cli` turns it
    on for the whole run, as TALKFACE_AUTO_DOWNLOAD=1 does)."""
    parser.add_argument("--download", action="store_true",
                        help="download model names (talkface download --list) on first use instead of stopping with "
                             "the `talkface download NAME` line (also TALKFACE_AUTO_DOWNLOAD=1)")


def print_table(models_dir=None, out=None):
    out = out or sys.stdout
    rows = downloads.list_models(models_dir)
    header = ("NAME", "SIZE", "LICENCE", "STATE")
    lines = [(r["name"], r["size"], r["license"] + (" *" if r["must_accept"] else ""),
              r["path"] if r["downloaded"] else ("manual download" if r["manual"] else "not downloaded"))
             for r in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(3)]
    for line in [header, *lines]:
        print("  ".join(value.ljust(width) for value, width in zip(line, widths)) + "  " + line[3], file=out)
    print(f"models dir: {downloads.models_dir(models_dir)}; * = non-commercial licence, "
          "accepted with --accept-license", file=out)


class _ProgressBar:
    """A tqdm bar per file, created on the first call (plain-URL downloads report bytes)."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def __call__(self, done: int, total: int):
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024, initial=0,
                            file=sys.stderr, leave=False)
        self.bar.total = total or self.bar.total
        self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args):
    folder = downloads.models_dir(args.models_dir)
    if folder.exists() and not folder.is_dir():
        flag = "--models-dir" if args.models_dir else f"${downloads.MODELS_DIR_ENV}"
        raise TalkFaceUserError(f"{flag} {folder} is a file, not a folder; pass the folder that holds (or will hold) "
                                "the model folders")
    if args.list:
        if args.names:
            raise TalkFaceUserError("pass either --list or model names, not both")
        print_table(args.models_dir)
        return 0
    if not args.names:
        raise TalkFaceUserError("name the models to download (talkface download --list shows them)")
    if args.push_to_hub and len(args.names) != 1:
        raise TalkFaceUserError("--push-to-hub uploads one model: pass one NAME (loop over names for several)")
    for name in args.names:  # every name is checked before the first download starts
        downloads.entry_for(name)
    for name in args.names:
        bar = _ProgressBar(enabled=not args.no_progress and sys.stderr.isatty())
        try:
            folder = downloads.download(
                name, args.models_dir, accept_license=args.accept_license, force=args.force,
                confirm=downloads.terminal_confirm, progress=bar, status=lambda text: print(text, file=sys.stderr),
                push_to_hub=args.push_to_hub, private=args.private)
        finally:
            bar.close()
        print(f"{name}: {folder}")
    return 0
