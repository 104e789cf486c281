"""Throughput and memory of `LipSyncPipeline` with the full-size Wav2Lip architecture (random weights).

    python benchmarks/bench_generate.py               # 10 s clip: end-to-end vs generator-only fps; RSS 10 s vs 60 s
    python benchmarks/bench_generate.py --quick       # smoke check: 1 s and 3 s inputs
    python benchmarks/bench_generate.py --skip-rss    # throughput only
    python benchmarks/bench_generate.py --clip ../shared/data/clip09_styletalk_feifeili_clip1_muxed.mkv

Figures printed:
  * generator-only fps: `Wav2LipGenerator.generate` on batches of 96x96 faces (the network + its BGR/stacking
    glue), as many frames as the clip has, same batch size;
  * end-to-end fps: the whole pipeline call on the clip and its own audio (decode, face detection + tracking,
    crops, generation, paste-back, H.264/AAC encoding), model loading excluded; target >= 0.7 x generator-only;
  * peak RSS of a 10 s and a 60 s run, each in a fresh subprocess (resource.getrusage of the child); the 60 s input
    is the clip looped six times (video and audio). Target: 60 s within 15% of 10 s.
Random weights cost exactly what the real ones do (same shapes, same operations).
Targets are about CPU runs (--device cpu, the default).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkface import media  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_CLIP = DATA_DIR / "clip07_edtalk_mouth_source_muxed.mkv"


def save_random_wav2lip(folder: Path) -> Path:
    from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor
    from talkface.models.wav2lip import Wav2LipConfig, Wav2LipModel

    torch.manual_seed(0)
    Wav2LipModel(Wav2LipConfig()).save_pretrained(folder)  # the default config is the released architecture
    TalkingFaceAudioFeatureExtractor().save_pretrained(folder)
    return folder


def make_input(clip: Path, seconds: float, out: Path, fps: float = 25.0) -> Path:
    """The clip's first `seconds` (looped when longer than the clip), video + its audio, as an mp4."""
    audio = media.read_audio(clip)
    num_samples = int(round(seconds * 16000))
    audio = np.tile(audio, int(np.ceil(num_samples / len(audio))))[:num_samples]
    num_frames = int(round(seconds * fps))
    info = media.probe(clip)
    with media.VideoWriter(out, fps=fps, width=info.width, height=info.height, audio=audio) as writer:
        written = 0
        while written < num_frames:
            for frame in media.iter_frames(clip, fps=fps):
                if written == num_frames:
                    break
                writer.write(frame)
                written += 1
    return out


def generator_only_fps(model_dir: Path, num_frames: int, batch_size: int, device: str) -> float:
    from talkface.pipelines.lipsync.generator import load_generator

    generator = load_generator(model_dir).to(device=torch.device(device))
    size = generator.img_size
    waveform = np.random.default_rng(0).uniform(-0.3, 0.3, int(num_frames / 25 * 16000)).astype(np.float32)
    prepared = generator.prepare_audio(waveform, 16000, 25.0)
    faces = torch.rand(batch_size, 3, size, size)
    masked = faces.clone()
    masked[:, :, size // 2:] = 0
    with torch.no_grad():
        generator.generate(masked[:2], faces[:2], prepared, torch.arange(2))  # warm-up
        start = time.perf_counter()
        done = 0
        while done < num_frames:
            count = min(batch_size, num_frames - done)
            indices = torch.arange(done, done + count).clamp(max=prepared.num_frames - 1)
            generator.generate(masked[:count], faces[:count], prepared, indices)
            done += count
        if device == "cuda":
            torch.cuda.synchronize()
    return num_frames / (time.perf_counter() - start)


def run_pipeline(model_dir: Path, face: Path, out: Path, batch_size: int, device: str) -> dict:
    from talkface.pipelines.lipsync.pipeline import LipSyncPipeline

    pipeline = LipSyncPipeline.from_pretrained(model_dir, device=device)
    generate = pipeline.generator.generate
    generator_seconds = 0.0

    def timed_generate(*args, **kwargs):
        nonlocal generator_seconds
        start = time.perf_counter()
        result = generate(*args, **kwargs)
        generator_seconds += time.perf_counter() - start
        return result

    pipeline.generator.generate = timed_generate
    start = time.perf_counter()
    result = pipeline(face=face, audio=face, out=out, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - start
    return {"frames": result.num_frames, "seconds": seconds, "fps": result.num_frames / seconds,
            "generator_seconds": generator_seconds, "frames_without_face": result.frames_without_face}


def child_main(args) -> None:
    """Run one pipeline call and print its figures and this process's peak RSS as JSON (for the parent)."""
    figures = run_pipeline(Path(args.model_dir), Path(args.face), Path(args.out), args.batch_size, args.device)
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print("RESULT " + json.dumps(figures))


def measure_in_subprocess(model_dir, face, out, batch_size, device) -> dict:
    command = [sys.executable, __file__, "--child", "--model-dir", str(model_dir), "--face", str(face), "--out",
               str(out), "--batch-size", str(batch_size), "--device", device]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a 25 fps talking-face clip with audio")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the throughput / short RSS input")
    parser.add_argument("--long-seconds", type=float, default=60.0, help="length of the long RSS input")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 s and 3 s inputs")
    parser.add_argument("--skip-rss", action="store_true", help="skip the two peak-RSS subprocess runs")
    parser.add_argument("--skip-throughput", action="store_true",
                        help="only the peak-RSS runs (memory does not depend on CPU load; timings do)")
    # internal: one measured run in a child process
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--face", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child_main(args)
        return
    if not args.clip.is_file():
        sys.exit(f"clip not found: {args.clip} (pass --clip)")
    if args.quick:
        args.seconds, args.long_seconds = 1.0, 3.0

    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        tmp = Path(tmp)
        model_dir = save_random_wav2lip(tmp / "wav2lip")
        short_input = make_input(args.clip, args.seconds, tmp / "short.mp4")
        print(f"clip {args.clip.name}: {args.seconds:g} s at 25 fps, batch {args.batch_size}, device {args.device}, "
              f"{torch.get_num_threads()} torch threads")

        if not args.skip_throughput:
            num_frames = int(round(args.seconds * 25))
            generator_fps = generator_only_fps(model_dir, num_frames, args.batch_size, args.device)
            end_to_end = run_pipeline(model_dir, short_input, tmp / "out.mp4", args.batch_size, args.device)
            ratio = end_to_end["fps"] / generator_fps
            overhead = end_to_end["seconds"] - end_to_end["generator_seconds"]
            print(f"generator-only        {generator_fps:8.2f} frames/s")
            print(f"end-to-end            {end_to_end['fps']:8.2f} frames/s  ({end_to_end['frames']} frames in "
                  f"{end_to_end['seconds']:.1f} s; generator calls {end_to_end['generator_seconds']:.1f} s, everything "
                  f"else {overhead:.1f} s = {1000 * overhead / end_to_end['frames']:.1f} ms/frame)")
            print(f"end-to-end / generator-only = {ratio:.2f}  (target >= 0.70: {'PASS' if ratio >= 0.7 else 'FAIL'})")

        if args.skip_rss:
            return
        long_input = make_input(args.clip, args.long_seconds, tmp / "long.mp4")
        short_run = measure_in_subprocess(model_dir, short_input, tmp / "rss_short.mp4", args.batch_size,
                                          args.device)
        long_run = measure_in_subprocess(model_dir, long_input, tmp / "rss_long.mp4", args.batch_size, args.device)
        growth = long_run["peak_rss_mib"] / short_run["peak_rss_mib"] - 1
        for seconds, run in ((args.seconds, short_run), (args.long_seconds, long_run)):
            print(f"peak RSS {seconds:g} s input   {run['peak_rss_mib']:8.1f} MiB ({run['frames']} frames)")
        print(f"growth {100 * growth:+.1f}%  (target <= +15%: {'PASS' if growth <= 0.15 else 'FAIL'})")


if __name__ == "__main__":
    main()
