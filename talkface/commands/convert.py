"""`talkface convert <kind> --checkpoint X --out DIR [--push-to-hub REPO]`.

Each kind maps to a converter module beside its model (`talkface.models.converters`). A converter module exposes

    convert_checkpoint(checkpoint_path, args) -> list    # objects with save_pretrained (model first)
    add_arguments(parser)                                # optional: extra flags for this kind

and this command does the rest: atomic save, model card, optional push.
"""

from ..models.convert_utils import check_model_folder_output, push_folder_to_hub, save_model_folder
from ..models.converters import CONVERTERS


def register(subparsers):
    parser = subparsers.add_parser("convert", help="convert an original checkpoint into a talkface model folder")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, module in CONVERTERS.items():
        sub = kinds.add_parser(kind, help=f"convert a {kind} checkpoint")
        sub.add_argument("--checkpoint", required=True, help="the original checkpoint file")
        sub.add_argument("--out", required=True, help="the model folder to write")
        sub.add_argument("--push-to-hub", metavar="REPO", help="also upload the folder to this Hub repository")
        sub.add_argument("--private", action="store_true", help="create the Hub repository as private")
        sub.add_argument("--overwrite", action="store_true",
                         help="replace an existing --out folder; only one that holds a talkface model (config.json "
                         "with a known model_type) and contains none of the inputs")
        sub.set_defaults(func=run, converter=module)
        if hasattr(module, "add_arguments"):
            module.add_arguments(sub)
    return parser


def input_files(args) -> dict:
    """The files this run reads (the checkpoint, a --config): the output may be none of them nor contain one."""
    files = {"--checkpoint": args.checkpoint, "--config": getattr(args, "config", None)}
    return {flag: value for flag, value in files.items() if value}


def run(args):
    inputs = input_files(args)
    check_model_folder_output(args.out, inputs, overwrite=args.overwrite)  # before a long conversion
    objects = args.converter.convert_checkpoint(args.checkpoint, args)
    out_dir = save_model_folder(objects, args.out, kind=args.kind, overwrite=args.overwrite, inputs=inputs,
                                card_info={"source_checkpoint": str(args.checkpoint),
                                           **({"repo_id": args.push_to_hub} if args.push_to_hub else {})})
    print(f"wrote {out_dir}")
    if args.push_to_hub:
        push_folder_to_hub(out_dir, args.push_to_hub, private=args.private)
        print(f"pushed {out_dir} to https://huggingface.co/{args.push_to_hub}")
    return 0
