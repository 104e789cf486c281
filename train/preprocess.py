"""Preprocess talking-face videos for train/train.py.

    python train/preprocess.py --input-dir LRS2/main --output-dir data/lrs2 --workers 8
    python train/preprocess.py --input-dir LRS2/main --file-list LRS2/train.txt --output-dir data/lrs2

Works on LRS2 / LRS3 / LRW / HDTF-style trees or any folder of talking-face videos (searched recursively). Per video
it stores face crops, per-frame mouth transforms (for the AV-HuBERT lip-sync loss), landmarks, boxes and 16 kHz
audio (layout: talkface/data/layout.py), then writes manifest.jsonl (every video, ok or failed with its reason)
and failures.jsonl. Runs in parallel (--workers) and resumes: videos already done are skipped, so an interrupted
run is simply started again (failed ones are retried only with --retry-failed).

Exit code: 0 when every video is usable, 1 when some failed (listed in failures.jsonl), 2 on a usage error.
"""

import argparse
import logging
import multiprocessing
import sys
import time
from pathlib import Path

from talkface.training.data.layout import FAILURES_NAME, MANIFEST_NAME, write_manifest
from talkface.training.data.preprocessing import (
    PreprocessOptions,
    existing_record,
    find_videos,
    preprocess_task,
    save_options,
)
from talkface.errors import TalkFaceUserError

logger = logging.getLogger("preprocess")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-dir", required=True, help="root of the video tree")
    parser.add_argument("--output-dir", required=True, help="where the preprocessed set is written")
    parser.add_argument("--file-list", default=None, help="only these ids/relative paths (e.g. LRS2 train.txt)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (each runs its own detector)")
    parser.add_argument("--retry-failed", action="store_true", help="reprocess videos that failed in earlier runs")
    defaults = PreprocessOptions()
    parser.add_argument("--face-size", type=int, default=defaults.face_size, help="side of the stored face crops")
    parser.add_argument("--fps", type=float, default=defaults.fps, help="frame rate frames are resampled to")
    parser.add_argument("--face-backend", default=defaults.face_backend, help="mediapipe | dlib | face_alignment")
    parser.add_argument("--detect-every", type=int, default=defaults.detect_every,
                        help="detect faces on every n-th frame, interpolate between")
    parser.add_argument("--detection-max-side", type=int, default=defaults.detection_max_side)
    parser.add_argument("--pads", type=int, nargs=4, default=list(defaults.pads),
                        metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"), help="pixels added around detected face boxes")
    parser.add_argument("--smooth-window", type=int, default=defaults.smooth_window)
    parser.add_argument("--max-missing-fraction", type=float, default=defaults.max_missing_fraction)
    parser.add_argument("--min-frames", type=int, default=defaults.min_frames)
    parser.add_argument("--max-frames", type=int, default=None, help="use only the first N frames of each video")
    parser.add_argument("--storage", default=defaults.storage, choices=["npy", "jpg"])
    parser.add_argument("--quiet", action="store_true", help="no per-video progress lines")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    options = PreprocessOptions(
        face_size=args.face_size, fps=args.fps, face_backend=args.face_backend, detect_every=args.detect_every,
        detection_max_side=args.detection_max_side, pads=tuple(args.pads), smooth_window=args.smooth_window,
        max_missing_fraction=args.max_missing_fraction, min_frames=args.min_frames, max_frames=args.max_frames,
        storage=args.storage,
    )
    try:
        options.validate()
        if args.workers < 1:
            raise TalkFaceUserError(f"--workers {args.workers} must be >= 1")
        videos = find_videos(args.input_dir, args.file_list)
    except TalkFaceUserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_options(output_dir, options)

    records, tasks = [], []
    for video_id, path in videos:
        done = existing_record(output_dir, video_id, args.retry_failed)
        if done is not None:
            records.append(done)
        else:
            tasks.append((video_id, str(path), str(output_dir), options))
    skipped = len(records)
    logger.info("%d videos: %d done in earlier runs, %d to process with %d worker(s)", len(videos), skipped,
                len(tasks), args.workers)

    started = time.perf_counter()
    if args.workers == 1 or len(tasks) <= 1:
        results = map(preprocess_task, tasks)
        pool = None
    else:
        # spawn, not fork: face backends hold native threads that do not survive a fork
        pool = multiprocessing.get_context("spawn").Pool(args.workers)
        results = pool.imap_unordered(preprocess_task, tasks)
    try:
        for count, record in enumerate(results, 1):
            records.append(record)
            status = "ok" if record.status == "ok" else f"FAILED ({record.error})"
            logger.info("[%d/%d] %s: %s", count, len(tasks), record.id, status)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        # the manifest is rewritten even after an interruption, so it always lists what is on disk
        write_manifest(output_dir, records)

    failed = [r for r in records if r.status != "ok"]
    elapsed = time.perf_counter() - started
    print(f"preprocessed {len(videos)} videos in {elapsed:.1f} s: {len(videos) - len(failed)} ok "
          f"({skipped} from earlier runs), {len(failed)} failed; manifest: {output_dir / MANIFEST_NAME}"
          + (f"; failures: {output_dir / FAILURES_NAME}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
