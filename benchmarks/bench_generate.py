"""Speed of `talkface generate` on a real clip: generator floor, end to end per precision, start-up, stages, RSS.

    python benchmarks/bench_generate.py                       # clip01 (512x512), 8 s, every figure
    python benchmarks/bench_generate.py --seconds 3 --quick   # fewer repeats (smoke check)
    python benchmarks/bench_generate.py --precisions fp32 bf16 --skip-stages
    python benchmarks/bench_generate.py --precisions bf16 fp32 --skip-stages --overlap off on on off   # A/B

Figures printed (CPU unless --device cuda; full-size Wav2Lip with the golden formula weights when ../shared has
them, random weights otherwise: both cost exactly what the released weights do):
  * generator-only fps, fp32 eager: the unoptimised network on real 96x96 crops of the clip, batch 16 (the floor
    issue 14 measures against);
  * end-to-end fps for each precision: the whole pipeline call (decode, detection every --detect-every frames +
    tracking, crops, generation, paste-back, watermark, H.264/AAC encode), model loading and the face backend's
    set-up (import, graphs; printed beside it and part of the start-up figure) excluded, with the share spent
    outside the generator in ms/frame; targets: bf16 >= 1.7x and fp32 >= 1.0x the fp32 eager floor;
  * drift of each reduced precision against fp32 on the generated faces (max / mean abs diff, values in [0, 1]);
  * the pipeline's other stages without the generator, in ms/frame, at the clip's size and at 1080p (the clip scaled
    and padded): decode, detection with landmarks (stride --detect-every) + tracking, roll-aligned crops,
    face-shaped paste-back, watermark, encode, as the pipeline runs them by default, the frames streamed in batches
    (only one batch alive at once, as in a generate run); target: < 15 ms in all;
  * start-up: `talkface --help`, and process start -> first generated frame written (model already converted),
    with the milestones on the way (imports, model loaded, first detection, first batch in / out): the median of
    --startup-runs fresh processes (the import of torch alone varies by ~0.8 s between runs on a 2-core VM);
  * peak RSS of one end-to-end run in a fresh process.
Timings depend on the machine's load: run on an idle machine for figures to quote.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from talkface import media  # noqa: E402
from talkface.pipelines.lipsync.precision import native_bf16_flags  # noqa: E402

DATA_DIR = ROOT.parent / "shared" / "data"
DEFAULT_CLIP = DATA_DIR / "clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"


def save_wav2lip(folder: Path) -> Path:
    from talkface.models.wav2lip import Wav2LipConfig, Wav2LipModel
    from talkface.models.wav2lip.convert_wav2lip_original_checkpoint import convert_wav2lip_state_dict
    from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor

    torch.manual_seed(0)
    model = Wav2LipModel(Wav2LipConfig()).eval()  # the default config is the released architecture
    try:
        from tests.utils import formula_state_dict

        model.load_state_dict(convert_wav2lip_state_dict(formula_state_dict("wav2lip_generator_keys.json")))
        print("weights: golden formula (../shared/reference/golden)")
    except BaseException:  # ../shared absent (pytest.skip raises a BaseException): random weights cost the same
        print("weights: random")
    model.save_pretrained(folder)
    TalkingFaceAudioFeatureExtractor().save_pretrained(folder)
    return folder


def make_input(clip: Path, seconds: float, out: Path, size=None, fps: float = 25.0) -> Path:
    """The clip's first `seconds` (looped if needed) with its audio; `size` (w, h): scaled to fit and padded."""
    import cv2

    audio = media.read_audio(clip)
    num_samples = int(round(seconds * 16000))
    audio = np.tile(audio, int(np.ceil(num_samples / len(audio))))[:num_samples]
    info = media.probe(clip)
    width, height = size or (info.width, info.height)
    num_frames = int(round(seconds * fps))
    with media.VideoWriter(out, fps=fps, width=width, height=height, audio=audio) as writer:
        written = 0
        while written < num_frames:
            for frame in media.iter_frames(clip, fps=fps):
                if written == num_frames:
                    break
                if size:
                    scale = min(width / frame.shape[1], height / frame.shape[0])
                    small = cv2.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)))
                    canvas = np.zeros((height, width, 3), np.uint8)
                    y, x = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
                    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
                    frame = canvas
                writer.write(frame)
                written += 1
    return out


def real_crops(video: Path, count: int, size: int = 96):
    """(masked, reference) float crops of the tracked face in the first `count` frames, and the tracked faces."""
    from talkface.faces import FaceTracker, crop_face, get_face_backend

    backend = get_face_backend("mediapipe")
    frames = media.read_frames(video, max_frames=count)
    faces = [face for _, face in FaceTracker(backend).track(iter(frames))]
    backend.close()
    crops = np.stack([crop_face(f, face.box, size) for f, face in zip(frames, faces) if face is not None])
    reference = torch.from_numpy(crops.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    masked = reference.clone()
    masked[:, :, size // 2:] = 0
    return masked, reference, frames, faces


def generator_only_fps(model_dir: Path, video: Path, batch_size: int, repeats: int) -> float:
    """fp32 eager: the network as loaded (no folding), on real crops."""
    from talkface.pipelines.lipsync.generator import load_generator

    generator = load_generator(model_dir)
    masked, reference, _, _ = real_crops(video, batch_size)
    prepared = generator.prepare_audio(media.read_audio(video), 16000, 25.0)
    indices = torch.arange(len(masked))
    with torch.no_grad():
        generator.generate(masked[:2], reference[:2], prepared, indices[:2])  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            generator.generate(masked, reference, prepared, indices)
    return repeats * len(masked) / (time.perf_counter() - start)


def end_to_end(model_dir: Path, video: Path, out: Path, precision: str, batch_size: int, detect_every: int,
               device: str, overlap: str = "auto") -> dict:
    from talkface.pipelines.lipsync.pipeline import LipSyncPipeline

    pipeline = LipSyncPipeline.from_pretrained(model_dir, device=device, precision=precision)
    generate = pipeline.generator.generate
    spent = {"generator": 0.0}

    def timed(*args, **kwargs):
        start = time.perf_counter()
        result = generate(*args, **kwargs)
        spent["generator"] += time.perf_counter() - start
        return result

    pipeline.generator.generate = timed
    # the face backend's import and graphs (mediapipe: ~1-2 s) are start-up, reported by `startup`; built here first
    # so that the frames/s below is the per-frame cost
    setup_start = time.perf_counter()
    pipeline._backend(pipeline.options).detect(media.read_frames(video, max_frames=1)[0])
    setup_seconds = time.perf_counter() - setup_start
    start = time.perf_counter()
    result = pipeline(face=video, audio=video, out=out, batch_size=batch_size, detect_every=detect_every,
                      overlap=overlap, progress=False)
    seconds = time.perf_counter() - start
    pipeline.close()
    return {"precision": pipeline.precision, "frames": result.num_frames, "seconds": seconds,
            "fps": result.num_frames / seconds, "generator_seconds": spent["generator"],
            "other_ms": 1000 * (seconds - spent["generator"]) / result.num_frames, "setup_seconds": setup_seconds}


def drift(model_dir: Path, video: Path, precisions, count: int = 32) -> dict:
    """max / mean abs diff of the generated faces of each precision against fp32, on real crops."""
    from talkface.pipelines.lipsync.pipeline import LipSyncPipeline

    masked, reference, _, _ = real_crops(video, count)
    waveform = media.read_audio(video)
    faces = {}
    for precision in ("fp32", *[p for p in precisions if p != "fp32"]):
        pipeline = LipSyncPipeline.from_pretrained(model_dir, device="cpu", precision=precision, watermark=False)
        prepared = pipeline.generator.prepare_audio(waveform, 16000, 25.0)
        indices = torch.arange(len(masked))
        with torch.no_grad(), pipeline._autocast():
            if precision == "int8":
                pipeline.generator.generate(masked[:8], reference[:8], prepared, indices[:8])  # calibration
            faces[precision] = pipeline.generator.generate(masked, reference, prepared, indices).float()
    return {p: ((f - faces["fp32"]).abs().max().item(), (f - faces["fp32"]).abs().mean().item())
            for p, f in faces.items() if p != "fp32"}


def stages(video: Path, detect_every: int, size: int = 96, batch_size: int = 16) -> dict:
    """ms/frame of each stage other than the generator, as the pipeline runs them with its default options: the
    tracker fits landmarks on its key frames (the feather mask and roll alignment use them), crops are turned upright
    by the roll, paste-back uses the face-shaped feather mask. The frames stream through in batches of `batch_size`
    (decoded, tracked, cropped, pasted, watermarked and encoded, then dropped), so that, as in a generate run, only a
    batch of frames is alive at once and their memory is reused; each stage's time is summed over the batches."""
    from talkface.faces import FaceTracker, get_face_backend
    from talkface.faces.blending import paste_face
    from talkface.faces.roll import crop_face_aligned, roll_angle
    from talkface.pipelines.lipsync.watermark import Watermarker

    info = media.probe(video)
    track_key = f"detect+landmarks+track (every {detect_every})"
    keys = ("decode", track_key, "crops", "paste-back (feather, landmarks)", "watermark", "encode (x264, 1 thread)")
    seconds = dict.fromkeys(keys, 0.0)

    def decoded():
        frames = media.iter_frames(video, fps=25.0)
        while True:
            start = time.perf_counter()
            frame = next(frames, None)
            seconds["decode"] += time.perf_counter() - start
            if frame is None:
                return
            yield frame

    backend = get_face_backend("mediapipe")
    backend.detect(next(media.iter_frames(video, fps=25.0)))  # the graphs' creation is start-up, not per-frame cost
    tracker = FaceTracker(backend, detect_every=detect_every, landmarks=True)
    generated = np.random.default_rng(0).random((size, size, 3)).astype(np.float32)
    marker = Watermarker()
    count = 0
    tracked = tracker.track(decoded())
    with tempfile.TemporaryDirectory() as tmp:
        with media.VideoWriter(Path(tmp) / "e.mp4", fps=25, width=info.width, height=info.height, threads=1) as w:
            while True:
                decode_before, start = seconds["decode"], time.perf_counter()
                batch = [item for _, item in zip(range(batch_size), tracked)]
                seconds[track_key] += time.perf_counter() - start - (seconds["decode"] - decode_before)
                if not batch:
                    break
                count += len(batch)
                rolls = [0.0 if face is None or face.landmarks is None else roll_angle(face.landmarks)
                         for _, face in batch]
                start = time.perf_counter()
                for (frame, face), roll in zip(batch, rolls):
                    if face is not None:
                        crop = crop_face_aligned(frame, face.box, roll, size)
                        reference = np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32)
                        reference *= np.float32(1 / 255)
                        reference.copy()[:, size // 2:] = 0.0
                seconds["crops"] += time.perf_counter() - start
                start = time.perf_counter()
                pasted = [paste_face(frame, generated, face.box, landmarks=face.landmarks, roll_degrees=roll)
                          if face is not None else frame for (frame, face), roll in zip(batch, rolls)]
                seconds["paste-back (feather, landmarks)"] += time.perf_counter() - start
                start = time.perf_counter()
                marked = [marker.embed(frame, count - len(batch) + i) for i, frame in enumerate(pasted)]
                seconds["watermark"] += time.perf_counter() - start
                start = time.perf_counter()
                for frame in marked:
                    w.write(frame)
                seconds["encode (x264, 1 thread)"] += time.perf_counter() - start
                del batch, pasted, marked
            start = time.perf_counter()
        seconds["encode (x264, 1 thread)"] += time.perf_counter() - start  # the encoder's flush and the mux
    backend.close()
    figures = {key: 1000 * value / count for key, value in seconds.items()}
    figures["total"] = sum(figures.values())
    return figures


# Run in a fresh process: the seconds from process start (argv[1], the parent's clock just before it starts the
# child) to each milestone of a generate run, up to the first generated frame handed to the encoder. The batches
# are the CLI's default (16, the first one FIRST_BATCH_SIZE); runs before issue 14's start-up work used batch 1.
FIRST_FRAME_CODE = """
import json, sys, time
t0 = float(sys.argv[1]); marks = {"interpreter": time.time() - t0}
from talkface.pipelines.lipsync.pipeline import LipSyncPipeline
from talkface.faces.backends import FaceBackend
marks["imports"] = time.time() - t0
pipeline = LipSyncPipeline.from_pretrained(sys.argv[2], device="cpu", precision=sys.argv[5])
marks["model loaded"] = time.time() - t0
detect, generate = FaceBackend.detect, pipeline.generator.generate
def first_detect(self, *args, **kwargs):
    result = detect(self, *args, **kwargs)
    marks.setdefault("first detection", time.time() - t0)
    return result
def first_generate(*args, **kwargs):
    marks.setdefault("first batch in", time.time() - t0)
    result = generate(*args, **kwargs)
    marks.setdefault("first batch out", time.time() - t0)
    return result
FaceBackend.detect, pipeline.generator.generate = first_detect, first_generate
def report(done, total):
    marks.setdefault("first frame written", time.time() - t0)
pipeline(face=sys.argv[3], audio=sys.argv[3], out=sys.argv[4], progress=report)  # default batches, as generate
print("RESULT", json.dumps(marks))
"""


def startup(model_dir: Path, video: Path, precision: str = "auto") -> dict:
    """`talkface --help` seconds, and the milestones of a fresh generate process up to its first frame."""
    command = [sys.executable, "-m", "talkface", "--help"]
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True, cwd=ROOT)
    help_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        completed = subprocess.run([sys.executable, "-c", FIRST_FRAME_CODE, repr(time.time()), str(model_dir),
                                    str(video), str(Path(tmp) / "s.mp4"), precision], capture_output=True, text=True,
                                   check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    marks = json.loads(line[len("RESULT "):])
    return {"help": help_seconds, "first_frame": marks["first frame written"], "marks": marks}


def peak_rss(model_dir: Path, video: Path, precision: str, batch_size: int) -> float:
    code = ("import sys, resource; from talkface.pipelines.lipsync.pipeline import LipSyncPipeline;"
            "p = LipSyncPipeline.from_pretrained(sys.argv[1], device='cpu', precision=sys.argv[4]);"
            "p(face=sys.argv[2], audio=sys.argv[2], out=sys.argv[3], batch_size=int(sys.argv[5]), progress=False);"
            "print('RESULT', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    with tempfile.TemporaryDirectory() as tmp:
        completed = subprocess.run([sys.executable, "-c", code, str(model_dir), str(video), str(Path(tmp) / "r.mp4"),
                                    precision, str(batch_size)], capture_output=True, text=True, check=True,
                                   cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return float(next(line for line in completed.stdout.splitlines() if line.startswith("RESULT ")).split()[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a talking-face clip with its audio")
    parser.add_argument("--seconds", type=float, default=8.0, help="input length for the end-to-end runs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--detect-every", type=int, default=5, help="face detection stride of the runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--precisions", nargs="+", default=None,
                        help="end-to-end precisions (default fp32 bf16 int8 on CPU, fp32 fp16 bf16 on CUDA)")
    parser.add_argument("--overlap", nargs="+", default=["auto"], choices=("auto", "on", "off"),
                        help="end-to-end runs for each precision with these --overlap modes, in this order (repeat "
                        "them for an interleaved A/B, e.g. off on on off; default auto)")
    parser.add_argument("--quick", action="store_true", help="fewer generator repeats")
    parser.add_argument("--skip-stages", action="store_true")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--startup-runs", type=int, default=5,
                        help="fresh processes timed to their first frame; the median is reported (default 5)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.clip.is_file():
        sys.exit(f"clip not found: {args.clip} (pass --clip)")
    precisions = args.precisions or (["fp32", "fp16", "bf16"] if args.device == "cuda" else ["fp32", "bf16", "int8"])

    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        tmp = Path(tmp)
        model_dir = save_wav2lip(tmp / "wav2lip")
        video = make_input(args.clip, args.seconds, tmp / "input.mp4")
        info = media.probe(video)
        print(f"clip {args.clip.name}: {args.seconds:g} s, {info.width}x{info.height}, batch {args.batch_size}, "
              f"detect every {args.detect_every}, device {args.device}, {torch.get_num_threads()} torch threads")

        native = native_bf16_flags() if args.device == "cpu" else []
        emulated_bf16 = args.device == "cpu" and not native
        if args.device == "cpu":
            print("native bf16 on this CPU: " + (", ".join(native) + " (--precision auto = bf16)" if native else
                  "none (no avx512_bf16 / amx_bf16: bf16 is emulated, --precision auto = fp32; the bf16 target "
                  "applies to CPUs that have it)"))
        floor = generator_only_fps(model_dir, video, args.batch_size, 2 if args.quick else 6)
        print(f"generator-only, fp32 eager   {floor:7.2f} frames/s  (the floor)")
        for precision, overlap in ((p, o) for p in precisions for o in args.overlap):
            run = end_to_end(model_dir, video, tmp / f"out_{precision}.mp4", precision, args.batch_size,
                             args.detect_every, args.device, overlap)
            target = {"bf16": 1.7, "fp32": 1.0}.get(run["precision"])
            verdict = f"; target >= {target:.1f}x: {'PASS' if run['fps'] >= target * floor else 'FAIL'}" if target \
                else ""
            if run["precision"] == "bf16" and emulated_bf16:
                verdict = "; target not applicable: bf16 emulated on this CPU"
            label = run["precision"] if args.overlap == ["auto"] else f"{run['precision']} overlap {overlap}"
            print(f"end-to-end {label:16s}  {run['fps']:7.2f} frames/s  = "
                  f"{run['fps'] / floor:.2f}x the floor{verdict} ({run['frames']} frames in {run['seconds']:.1f} s; "
                  f"outside the generator {run['other_ms']:.1f} ms/frame; face backend set-up before it "
                  f"{run['setup_seconds']:.2f} s)")
        reduced = [p for p in precisions if p in ("bf16", "int8")]
        if reduced and args.device == "cpu":
            for precision, (largest, mean) in drift(model_dir, video, reduced).items():
                print(f"drift {precision} vs fp32 on the generated faces: max {largest:.4f}, mean {mean:.5f}")

        if not args.skip_stages:
            for label, size in ((f"{info.width}x{info.height}", None), ("1920x1080", (1920, 1080))):
                clip = video if size is None else make_input(args.clip, min(args.seconds, 4.0), tmp / "hd.mp4", size)
                figures = stages(clip, args.detect_every, batch_size=args.batch_size)
                print(f"stages at {label} (ms/frame): " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
                      + f"  (target < 15: {'PASS' if figures['total'] < 15 else 'FAIL'})")
        if not args.skip_startup:
            short = make_input(args.clip, 1.0, tmp / "one_second.mp4")
            runs = sorted((startup(model_dir, short) for _ in range(max(1, args.startup_runs))),
                          key=lambda figures: figures["first_frame"])
            figures = runs[len(runs) // 2]  # the median run (the upper middle one of an even count)
            every = " / ".join(f"{run['first_frame']:.2f}" for run in runs)
            print(f"start-up: talkface --help {figures['help']:.2f} s; process start -> first frame "
                  f"{figures['first_frame']:.2f} s, median of {len(runs)} fresh processes ({every}) "
                  f"(target <= 3 s: {'PASS' if figures['first_frame'] <= 3 else 'FAIL'}"
                  "); milestones of the median run (s from process start): "
                  + ", ".join(f"{name} {seconds:.2f}" for name, seconds in figures["marks"].items()))
            rss = peak_rss(model_dir, video, precisions[-1], args.batch_size)
            print(f"peak RSS, {precisions[-1]} end-to-end run: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
