"""Cost per frame of GFPGAN face enhancement on CPU: alignment, network, paste-back, total.

    python benchmarks/bench_gfpgan.py                # full-size GFPGANv1.4 (random weights), 512x512 frames
    python benchmarks/bench_gfpgan.py --quick        # smoke check: a tiny network, 2 frames
    python benchmarks/bench_gfpgan.py --frame-size 1280x720 --frames 10 --threads 4

Random weights cost exactly what the real ones do (same shapes, same operations). The face is placed with
landmarks of a typical frontal face scaled to the frame; the frame is a real photo from ../shared/data when
present, else noise.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkface.models.gfpgan import GFPGANConfig, GFPGANModel  # noqa: E402
from talkface.pipelines.lipsync.enhancer import GFPGANEnhancer  # noqa: E402

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "photo01_sadtalker_people_0.png"
# 5 alignment points of that 474x474 photo (eyes, nose tip, mouth corners), from mediapipe FaceMesh
PHOTO_FIVE_POINTS = np.array([[194.0, 144.8], [265.5, 141.6], [229.9, 187.1], [203.2, 220.5], [261.4, 217.5]])


def landmarks68(five):
    landmarks = np.tile(five.mean(axis=0), (68, 1))
    landmarks[36:42], landmarks[42:48] = five[0], five[1]
    landmarks[30], landmarks[48], landmarks[54] = five[2], five[3], five[4]
    return landmarks


def make_frame(width, height):
    if PHOTO.is_file():
        photo = cv2.imread(str(PHOTO))[:, :, ::-1]
        scale = min(width, height) / photo.shape[0]
        face = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)))
        frame = np.zeros((height, width, 3), np.uint8)
        x0, y0 = (width - face.shape[1]) // 2, (height - face.shape[0]) // 2
        frame[y0 : y0 + face.shape[0], x0 : x0 + face.shape[1]] = face
        return frame, landmarks68(PHOTO_FIVE_POINTS * scale + (x0, y0))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    five = PHOTO_FIVE_POINTS / 474 * min(width, height) + ((width - min(width, height)) / 2, 0)
    return frame, landmarks68(five)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny network and 2 frames (smoke check)")
    parser.add_argument("--frames", type=int, default=5, help="timed frames (after one warm-up frame)")
    parser.add_argument("--frame-size", default="512x512", help="WIDTHxHEIGHT of the video frames")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.frame_size.lower().split("x"))
    if args.quick:
        config = GFPGANConfig(image_size=64, narrow=0.125, num_style_feat=16, num_mlp=2, channel_multiplier=1)
        args.frames = 2
    else:
        config = GFPGANConfig()  # GFPGANv1.4
    torch.manual_seed(0)
    model = GFPGANModel(config).eval()
    enhancer = GFPGANEnhancer(model)
    frame, landmarks = make_frame(width, height)

    timings = {"alignment": [], "network": [], "paste-back": [], "total": []}
    for step in range(args.frames + 1):  # the first frame warms up (allocations, oneDNN kernels)
        t0 = time.perf_counter()
        face, matrix = enhancer.align(frame, landmarks)
        t1 = time.perf_counter()
        restored = enhancer.restore(face)
        t2 = time.perf_counter()
        enhancer.paste(frame, restored, matrix)
        t3 = time.perf_counter()
        if step:
            for name, seconds in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                timings[name].append(seconds * 1000)

    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"GFPGAN enhancement cost per frame on CPU ({'tiny network, --quick' if args.quick else 'GFPGANv1.4'}: "
          f"{config.image_size}x{config.image_size} face, {params:.1f}M parameters; frames {width}x{height}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.frames} frames)")
    print(f"| stage | median ms | min ms | max ms |")
    print(f"|---|---:|---:|---:|")
    for name, values in timings.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |")
    total = statistics.median(timings["total"]) / 1000
    print(f"throughput: {1 / total:.2f} frames/s")


if __name__ == "__main__":
    main()
