"""`talkface convert <kind> --checkpoint X --out DIR [--push-to-hub REPO]`.

Each kind maps to a converter module beside its model. A converter module exposes

    convert_checkpoint(checkpoint_path, args) -> list    # objects with save_pretrained (model first)
    add_arguments(parser)                                # optional: extra flags for this kind

and this command does the rest: atomic save, model card, optional push.
"""

import importlib

from ..models.convert_utils import push_folder_to_hub, save_model_folder

CONVERTERS = {
    "wav2lip": "talkface.models.wav2lip.convert_wav2lip_original_checkpoint",
    "wav2lip-discriminator": "talkface.models.wav2lip.convert_wav2lip_discriminator_checkpoint",
    "syncnet": "talkface.models.syncnet.convert_syncnet_original_checkpoint",
    "syncnet-lse": "talkface.models.syncnet_lse.convert_syncnet_lse_original_checkpoint",
    "avhubert": "talkface.models.avhubert.convert_avhubert_fairseq_checkpoint",
    "talklip": "talkface.models.talklip.convert_talklip_original_checkpoint",
    "vgg19": "talkface.models.vgg19.convert_vgg19_torchvision_checkpoint",
    "fid-inception": "talkface.models.fid_inception.convert_fid_inception_checkpoint",
    "gfpgan": "talkface.models.gfpgan.convert_gfpgan_original_checkpoint",
    "s3fd": "talkface.models.s3fd.convert_s3fd_original_checkpoint",
}


def register(subparsers):
    parser = subparsers.add_parser("convert", help="convert an original checkpoint into a talkface model folder")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, module_name in CONVERTERS.items():
        sub = kinds.add_parser(kind, help=f"convert a {kind} checkpoint")
        sub.add_argument("--checkpoint", required=True, help="the original checkpoint file")
        sub.add_argument("--out", required=True, help="the model folder to write")
        sub.add_argument("--push-to-hub", metavar="REPO", help="also upload the folder to this Hub repository")
        sub.add_argument("--private", action="store_true", help="create the Hub repository as private")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
        sub.set_defaults(func=run, converter_module=module_name)
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, "add_arguments"):
            module.add_arguments(sub)
    return parser


def run(args):
    module = importlib.import_module(args.converter_module)
    objects = module.convert_checkpoint(args.checkpoint, args)
    out_dir = save_model_folder(objects, args.out, kind=args.kind, overwrite=args.overwrite,
                                card_info={"source_checkpoint": str(args.checkpoint),
                                           **({"repo_id": args.push_to_hub} if args.push_to_hub else {})})
    print(f"wrote {out_dir}")
    if args.push_to_hub:
        push_folder_to_hub(out_dir, args.push_to_hub, private=args.private)
        print(f"pushed {out_dir} to https://huggingface.co/{args.push_to_hub}")
    return 0
