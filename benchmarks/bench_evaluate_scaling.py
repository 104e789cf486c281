"""`talkface evaluate` throughput with 1 and 2 processes (or more) on the same input set.

    python benchmarks/bench_evaluate_scaling.py                      # 10 clips of 4 s, lse,ssim,psnr,lmd, 1 and 2
    python benchmarks/bench_evaluate_scaling.py --processes 1,2,4 --device cuda --clips 40
    python benchmarks/bench_evaluate_scaling.py --quick              # 4 clips of 2 s (smoke check)

Input set: excerpts of the real clips in ../shared/data (clip01, 04, 05, 07, 09, in turn), each cut to --seconds
from a different start; the "generated" video is the excerpt moved by a few pixels (so no value is trivially
ideal), the reference is the excerpt itself, both with the clip's own sound. Models: a full-size SyncNet LSE with
random weights (the real network's cost, meaningless values) for lse; ssim, psnr and lmd need none (lmd runs the
mediapipe landmarker on every frame of both videos).

Each run is the command a user types, `python -m talkface evaluate ... --no-cache --num-processes N`, timed from
start to exit (process start-up and model loading included, the cache off so every run computes everything).
The script also checks that every run wrote the same report (largest difference of any value). On CPU each of
N processes gets cpu_count / N torch threads, so the figures show what splitting the files buys over one process
using all cores.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from talkface import media  # noqa: E402
from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEFeatureExtractor, SyncNetLSEModel  # noqa: E402

DATA = REPO_ROOT.parent / "shared" / "data"
CLIPS = ["clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", "clip04_retalking_face2_man_map.mp4",
         "clip05_retalking_face5_woman_glasses.mp4", "clip07_edtalk_mouth_source_muxed.mkv",
         "clip09_styletalk_feifeili_clip1_muxed.mkv"]
FPS, SAMPLING_RATE = 25, 16000


def make_inputs(root: Path, count: int, seconds: float, side: int) -> tuple[Path, Path]:
    """`count` generated / reference pairs of `seconds` each, resized to side x side."""
    import cv2

    generated, reference = root / "generated", root / "reference"
    generated.mkdir(parents=True)
    reference.mkdir()
    length = int(round(seconds * FPS))
    sources = [DATA / name for name in CLIPS]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: this benchmark needs ../shared/data")
    decoded = {p: (media.read_frames(p, fps=FPS), media.read_audio(p, SAMPLING_RATE)) for p in sources}
    for index in range(count):
        source = sources[index % len(sources)]
        frames, audio = decoded[source]
        start = (index // len(sources)) * FPS % max(1, len(frames) - length)  # a different second each round
        clip = np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA)
                         for f in frames[start : start + length]])
        sound = audio[start * SAMPLING_RATE // FPS : (start + length) * SAMPLING_RATE // FPS]
        for folder, video in ((reference, clip), (generated, np.roll(clip, 3 + index % 4, axis=2))):
            with media.VideoWriter(folder / f"pair{index:03d}.mp4", fps=FPS, width=side, height=side,
                                   audio=sound) as writer:
                for frame in video:
                    writer.write(frame)
    return generated, reference


def random_syncnet(folder: Path) -> Path:
    """Full-size SyncNet LSE with random weights (seeded)."""
    torch.manual_seed(0)
    model = SyncNetLSEModel(SyncNetLSEConfig()).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
                module.weight.normal_(0, module.weight[0].numel() ** -0.5)
    model.save_pretrained(folder)
    SyncNetLSEFeatureExtractor().save_pretrained(folder)
    return folder


def run(processes: int, flags: list[str], output: Path) -> float:
    command = [sys.executable, "-m", "talkface", "evaluate", *flags, "--output", str(output), "--no-cache",
               "--no-plots", "--quiet", "--num-processes", str(processes)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def largest_difference(one, two) -> float:
    if isinstance(one, dict):
        return max([largest_difference(one[k], two[k]) for k in one] or [0.0])
    if isinstance(one, list):
        return max([largest_difference(a, b) for a, b in zip(one, two)] or [0.0])
    if isinstance(one, float) and isinstance(two, float) and math.isfinite(one) and math.isfinite(two):
        return abs(one - two)
    return 0.0 if one == two else math.inf


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10, help="number of pairs (default 10)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip (default 4)")
    parser.add_argument("--side", type=int, default=256, help="frame side in pixels (default 256)")
    parser.add_argument("--processes", default="1,2", help="process counts to compare (default 1,2)")
    parser.add_argument("--metrics", default="lse,ssim,psnr,lmd")
    parser.add_argument("--device", default="cpu", help="torch device (cuda: one GPU per process)")
    parser.add_argument("--quick", action="store_true", help="4 clips of 2 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.seconds = 4, 2.0
    counts = [int(n) for n in args.processes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as work:
        work = Path(work)
        generated, reference = make_inputs(work / "inputs", args.clips, args.seconds, args.side)
        flags = ["--generated", str(generated), "--reference", str(reference), "--metrics", args.metrics,
                 "--device", args.device]
        if "lse" in args.metrics.split(","):
            flags += ["--syncnet", str(random_syncnet(work / "syncnet"))]
        print(f"{args.clips} clips of {args.seconds:g} s ({args.side}x{args.side}, {args.clips * args.seconds:g} s of "
              f"video), metrics {args.metrics}, device {args.device}, {os.cpu_count()} CPU cores, torch "
              f"{torch.__version__}; SyncNet: full size, random weights")
        print(f"{'processes':>9}  {'wall s':>8}  {'clips/s':>8}  {'speed-up':>8}  largest difference to 1 process")
        reports, base = {}, None
        for count in counts:
            seconds = run(count, flags, work / f"report-{count}")
            reports[count] = json.loads((work / f"report-{count}" / "results.json").read_text())
            base = base or seconds
            first = reports[counts[0]]
            difference = largest_difference(first["summary"], reports[count]["summary"])
            difference = max(difference, largest_difference(first["files"], reports[count]["files"]))
            print(f"{count:>9}  {seconds:8.2f}  {args.clips / seconds:8.3f}  {base / seconds:7.2f}x  {difference:.2e}")
        summary = reports[counts[0]]["summary"]
        print("data-set values: " + ", ".join(f"{k} {v['value']:.4f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
