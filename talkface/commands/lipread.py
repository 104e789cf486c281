"""`talkface lipread VIDEO [VIDEO ...] --avhubert M [--reference-text TEXT|FILE ...] [--beam 5]`.

Prints a transcript per video. With reference transcripts it also prints each video's WER and the corpus-level
WER (total word errors / total reference words, as AV-HuBERT's `infer_s2s.py` reports it).
"""

import logging
from pathlib import Path

from ..errors import TalkFaceUserError
from ..hub.registry import DEFAULT_LIP_READER
from .download import add_download_flag
from ..utils.io import check_output, write_json
from ..utils.sources import model_display_name

logger = logging.getLogger(__name__)


def register(subparsers):
    parser = subparsers.add_parser(
        "lipread",
        help="transcribe a video with the AV-HuBERT lip reader",
        description="Transcribe talking-face videos from the lips with a fine-tuned AV-HuBERT (see docs/avs.md).",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="videos to transcribe")
    parser.add_argument("--avhubert", default=DEFAULT_LIP_READER, metavar="MODEL",
                        help="fine-tuned AV-HuBERT: a model name (default: %(default)s; talkface download --list), a "
                        "folder (from `talkface convert avhubert` on e.g. base_vox_433h.pt) or a Hub id")
    parser.add_argument("--reference-text", action="append", metavar="TEXT_OR_FILE",
                        help="what is said, as text or a .txt file (LRS2/LRS3 'Text:' files work); once per video")
    parser.add_argument("--beam", type=int, default=5, help="beam size (default 5; the AV-HuBERT paper used 50)")
    parser.add_argument("--modality", choices=("video", "audio", "audiovisual"), default="video",
                        help="what the model sees: the lips (default), the sound track, or both")
    parser.add_argument("--output", metavar="FILE.json", help="also write transcripts (and WER) as JSON")
    parser.add_argument("--face-backend", choices=("mediapipe", "dlib", "face_alignment"), default="mediapipe",
                        help="face landmarks for the mouth crops (default mediapipe)")
    parser.add_argument("--landmark-stride", type=int, default=1,
                        help="find landmarks every N frames and interpolate between (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device for AV-HuBERT: auto, cpu, cuda, cuda:N or mps "
                        "(default cpu)")
    add_download_flag(parser)
    parser.set_defaults(func=run)
    return parser


def run(args):
    from ..pipelines.lip_reading.pipeline import LipReader, modality_audio, read_reference_text

    from ..media import check_file

    for path in args.videos:
        check_file(path)  # missing, or a folder: one line saying which
    if args.beam < 1:
        raise TalkFaceUserError(f"--beam must be at least 1, got {args.beam}")
    references = None
    if args.reference_text:
        if len(args.reference_text) != len(args.videos):
            raise TalkFaceUserError(f"--reference-text was given {len(args.reference_text)} times for "
                                    f"{len(args.videos)} videos; give one per video, in the same order")
        references = [read_reference_text(value) for value in args.reference_text]
    inputs = {"VIDEO": args.videos, "--reference-text": [t for t in args.reference_text or [] if Path(t).is_file()]}
    if args.output:
        check_output(args.output, inputs, flag="--output", example="transcripts.json")
    for video in args.videos:  # --modality audio/audiovisual needs sound: said before the model is loaded
        modality_audio(video, args.modality)

    from ..utils.devices import resolve_device

    device = resolve_device(args.device)
    reader = LipReader.from_pretrained(args.avhubert, device=device, face_backend=args.face_backend,
                                       landmark_stride=args.landmark_stride)
    results = [reader.transcribe(video, modality=args.modality, num_beams=args.beam) for video in args.videos]

    data = {"avhubert": model_display_name(args.avhubert), "beam": args.beam, "modality": args.modality,
            "videos": [r.to_dict() for r in results]}
    if references is None:
        for result in results:
            print(f"{Path(result.video).name}\t{result.text}")
    else:
        from ..metrics.wer import word_errors

        normalized = [reader.normalize_reference(text) for text in references]
        total_errors = total_words = 0
        for result, reference, entry in zip(results, normalized, data["videos"]):
            errors, words = word_errors(result.text, reference)
            total_errors, total_words = total_errors + errors, total_words + words
            entry.update(reference=reference, word_errors=errors, reference_words=words,
                         wer=100.0 * errors / words if words else None)
            wer_text = f"{entry['wer']:.1f}%" if words else "-"
            print(f"{Path(result.video).name}\t{result.text}\t(reference: {reference}; WER {wer_text})")
        corpus_wer = 100.0 * total_errors / total_words if total_words else None
        data.update(corpus_wer=corpus_wer, word_errors=total_errors, reference_words=total_words)
        if corpus_wer is None:
            print("WER: no reference words")
        else:
            print(f"WER (corpus): {corpus_wer:.2f}% ({total_errors} errors / {total_words} reference words)")
    if args.output:
        write_json(args.output, data, inputs=inputs, flag="--output")
        print(f"wrote {args.output}")
    return 0
