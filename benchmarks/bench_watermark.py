"""Watermark robustness and cost on the real clips of ../shared/data.

    python benchmarks/bench_watermark.py              # 2-second windows (up to 4 per clip), crf 23 and 28
    python benchmarks/bench_watermark.py --quick      # smoke check: 2 clips, one 1-second window, crf 28
    python benchmarks/bench_watermark.py --crfs 23,28,35 --window 1.0 --max-windows 8

For every window: the frames are marked, re-encoded with libx264 (PyAV, preset medium, yuv420p) at each crf and
detected from the decoded file; the unmarked frames go through the same encoder to measure false positives.
The unmarked windows are also scored under many other keys (the band coefficients do not depend on the key),
an empirical check of the null distribution behind the threshold. Reports the detection rate, the false-positive
rate, the scores, the PSNR cost of the mark and the per-frame time of embedding and detection.
"""

import argparse
import glob
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkface.pipelines.lipsync.watermark import Watermarker  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_clip(path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return frames, rate


def encode_h264(frames, path, crf, fps):
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for frame in frames:
            image = np.ascontiguousarray(frame[: stream.height, : stream.width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / mse)


def per_frame_ms(function, repeats=20):
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 clips, one 1-second window, crf 28 (smoke check)")
    parser.add_argument("--window", type=float, default=2.0, help="window length in seconds")
    parser.add_argument("--max-windows", type=int, default=4, help="non-overlapping windows per clip (at most)")
    parser.add_argument("--crfs", default="23,28", help="comma-separated libx264 crf values")
    parser.add_argument("--null-keys", type=int, default=100, help="other keys scored on each unmarked window")
    parser.add_argument("--psnr-db", type=float, default=None, help="embedding strength (default: the library's)")
    args = parser.parse_args(argv)
    clips = sorted(glob.glob(str(DATA / "clip*")))
    if not clips:
        sys.exit(f"no clips found in {DATA}")
    if args.quick:
        clips, args.window, args.max_windows, args.crfs, args.null_keys = clips[-2:], 1.0, 1, "28", 20
    crfs = [int(c) for c in args.crfs.split(",")]
    marker = Watermarker() if args.psnr_db is None else Watermarker(psnr_db=args.psnr_db)

    rows, psnrs, null_scores = [], [], []
    null_markers = [Watermarker(key=f"null-key-{i}") for i in range(args.null_keys)]
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            frames, fps = read_clip(clip)
            length = max(1, round(args.window * fps))
            starts = list(range(0, len(frames) - length + 1, length))[: args.max_windows]
            for w, start in enumerate(starts):
                window = frames[start : start + length]
                marked = [marker.embed(frame, i) for i, frame in enumerate(window)]
                psnrs += [psnr(a, b) for a, b in zip(window, marked)]
                name = Path(clip).name.split("_")[0]
                for crf in crfs:
                    hit = marker.detect_video(encode_h264(marked, Path(tmp) / "m.mp4", crf, fps), max_frames=None)
                    plain_path = encode_h264(window, Path(tmp) / "u.mp4", crf, fps)
                    miss = marker.detect_video(plain_path, max_frames=None)
                    rows.append(dict(clip=name, size=f"{window[0].shape[1]}x{window[0].shape[0]}", window=w, crf=crf,
                                     marked=hit, unmarked=miss))
                    if null_markers:
                        from talkface.pipelines.lipsync.watermark import iter_luma_frames

                        total = sum(marker.band_coefficients(y) for y in iter_luma_frames(plain_path))
                        null_scores += [m.result_from_coefficients(total, length).score for m in null_markers]
                print(f"  {name} window {w}: " + ", ".join(
                    f"crf{r['crf']} marked {r['marked'].score:.1f} unmarked {r['unmarked'].score:+.2f}"
                    for r in rows if r["clip"] == name and r["window"] == w), flush=True)

    frame512 = cv2.resize(read_clip(clips[0])[0][0], (512, 512))
    embed_ms = per_frame_ms(lambda: marker.embed(frame512, 0))
    luma512 = cv2.cvtColor(frame512, cv2.COLOR_RGB2GRAY)
    detect_ms = per_frame_ms(lambda: marker.band_coefficients(luma512))

    print()
    print(f"Watermark: psnr target {marker.psnr_db:g} dB (strength {marker.strength:.2f} grey levels RMS), threshold "
          f"{marker.threshold:g}; {args.window:g}-second windows, libx264 preset medium via PyAV")
    print()
    print("| crf | windows | detected (marked) | false positives (unmarked) | marked score min / median | "
          "unmarked score max |")
    print("|---:|---:|---:|---:|---:|---:|")
    for crf in crfs:
        sel = [r for r in rows if r["crf"] == crf]
        hits = sum(r["marked"].found for r in sel)
        fps_ = sum(r["unmarked"].found for r in sel)
        scores = [r["marked"].score for r in sel]
        print(f"| {crf} | {len(sel)} | {hits}/{len(sel)} ({100 * hits / len(sel):.0f}%) | {fps_}/{len(sel)} | "
              f"{min(scores):.1f} / {np.median(scores):.1f} | {max(r['unmarked'].score for r in sel):+.2f} |")
    print()
    print("| clip | size | crf | windows | marked score min | payload decoded |")
    print("|---|---|---:|---:|---:|---:|")
    for name in dict.fromkeys(r["clip"] for r in rows):
        for crf in crfs:
            sel = [r for r in rows if r["clip"] == name and r["crf"] == crf]
            print(f"| {name} | {sel[0]['size']} | {crf} | {len(sel)} | {min(r['marked'].score for r in sel):.1f} | "
                  f"{sum(r['marked'].payload_valid for r in sel)}/{len(sel)} |")
    print()
    psnrs = np.array(psnrs)
    print(f"PSNR cost of the mark (RGB, {len(psnrs)} frames): mean {psnrs.mean():.2f} dB, min {psnrs.min():.2f} dB")
    if null_scores:
        null_scores = np.array(null_scores)
        print(f"null check: {len(null_scores)} (unmarked window, other key) scores: mean {null_scores.mean():+.2f}, "
              f"std {null_scores.std():.2f}, max {null_scores.max():+.2f}, "
              f">= threshold: {int((null_scores >= marker.threshold).sum())}")
    print(f"time per 512x512 frame: embed {embed_ms:.2f} ms, detect (fold + band DCT) {detect_ms:.2f} ms "
          "(plus decoding)")


if __name__ == "__main__":
    main()
