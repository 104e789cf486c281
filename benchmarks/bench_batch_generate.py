"""`talkface generate --jobs` throughput with 1 and 2 processes (or more) and the GPU-path modes (--overlap on/off,
--batch-files 1/K) on the same input set: clips/s.

    python benchmarks/bench_batch_generate.py                          # 8 clips of 4 s, 1 and 2 processes, CPU
    python benchmarks/bench_batch_generate.py --processes 1,2,4,8 --device cuda --clips 64
    python benchmarks/bench_batch_generate.py --quick                  # 4 clips of 1 s, tiny generator (smoke check)
    python benchmarks/bench_batch_generate.py --processes 1 --modes off/1,on/1,off/4,on/4 --rounds 3

Modes (`--modes`, OVERLAP/BATCH_FILES, comma-separated; default off/1,on/1,off/4,on/4): every process count runs
every mode. `--rounds N` runs the whole set N times, one configuration after the other (interleaved, so a change
in the machine's load hits all of them alike), and prints the median wall time of each.

Input set: excerpts of the real clips in ../shared/data (clip01, 04, 05, 07, 09, in turn), each cut to --seconds
from a different start and resized to --side x --side, with the clip's own sound as the speech (a video works as
the audio input). Model: the full-size Wav2Lip with random weights (seeded; it costs what the released weights
cost), or with --quick a tiny Wav2Lip. One jobs.csv lists every clip.

Each run is the command a user types, `python -m talkface generate --jobs jobs.csv --model M --overwrite
--num-processes N`, timed from start to exit (process start-up, model loading and face detection included). The
script checks that every row is done in every run and prints the largest difference, in grey levels, between the
frames of each run and those of the first (the overlap and batch-files modes write the same frames; several
processes give each cpu_count / N torch threads, which may change float rounding, not the result). Timings depend on the machine's load: run it on an idle machine.
"""

import argparse
import csv
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

DATA = REPO_ROOT.parent / "shared" / "data"
CLIPS = ["clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", "clip04_retalking_face2_man_map.mp4",
         "clip05_retalking_face5_woman_glasses.mp4", "clip07_edtalk_mouth_source_muxed.mkv",
         "clip09_styletalk_feifeili_clip1_muxed.mkv"]
FPS, SAMPLING_RATE = 25, 16000


def make_inputs(root: Path, count: int, seconds: float, side: int) -> Path:
    """`count` face clips of `seconds` each (side x side, with their sound) and the jobs.csv that lists them."""
    import cv2

    sources = [DATA / name for name in CLIPS]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: this benchmark needs ../shared/data")
    (root / "clips").mkdir(parents=True)
    (root / "out").mkdir()
    length = int(round(seconds * FPS))
    decoded = {p: (media.read_frames(p, fps=FPS), media.read_audio(p, SAMPLING_RATE)) for p in sources}
    rows = [["face", "audio", "out"]]
    for index in range(count):
        source = sources[index % len(sources)]
        frames, audio = decoded[source]
        start = (index // len(sources)) * FPS % max(1, len(frames) - length)  # a different second each round
        clip = [cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in frames[start : start + length]]
        sound = audio[start * SAMPLING_RATE // FPS : (start + length) * SAMPLING_RATE // FPS]
        name = f"clips/clip{index:03d}.mp4"
        with media.VideoWriter(root / name, fps=FPS, width=side, height=side, audio=sound) as writer:
            for frame in clip:
                writer.write(frame)
        rows.append([name, name, f"out/clip{index:03d}.mp4"])
    with open(root / "jobs.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return root / "jobs.csv"


def save_wav2lip(folder: Path, tiny: bool) -> Path:
    from talkface.models.wav2lip import Wav2LipConfig, Wav2LipModel
    from talkface.models.wav2lip.feature_extraction_wav2lip import TalkingFaceAudioFeatureExtractor

    torch.manual_seed(0)
    if tiny:
        config = Wav2LipConfig(
            image_size=24, hidden_size=16,
            face_encoder_channels=[4, 8, 8, 16], face_encoder_kernel_sizes=[7, 3, 3, 3],
            face_encoder_strides=[1, 2, 2, 2], face_encoder_residual_layers=[0, 1, 1, 0],
            audio_encoder_channels=[4, 8, 8, 16], audio_encoder_residual_layers=[1, 0, 1, 0],
            decoder_channels=[16, 8, 8, 4], decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4)
    else:
        config = Wav2LipConfig()  # the released architecture
    Wav2LipModel(config).save_pretrained(folder)
    TalkingFaceAudioFeatureExtractor().save_pretrained(folder)
    return folder


def run(processes: int, jobs: Path, flags: list[str], results: Path) -> float:
    command = [sys.executable, "-m", "talkface", "generate", "--jobs", str(jobs), *flags, "--no-progress",
               "--overwrite", "--results", str(results), "--num-processes", str(processes)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    with open(results, newline="") as f:
        rows = list(csv.DictReader(f))
    not_done = [r["row"] for r in rows if r["status"] != "done"]
    if not_done:
        sys.exit(f"rows {', '.join(not_done)} not done in the {processes}-process run (see {results})")
    return seconds


def decoded_outputs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: media.read_frames(p).astype(np.int16) for p in sorted(folder.glob("*.mp4"))}


def parse_modes(text: str) -> list[tuple[str, str]]:
    modes = []
    for item in text.split(","):
        overlap, _, files = item.strip().partition("/")
        if overlap not in ("auto", "on", "off") or not (files == "auto" or files.isdigit() and int(files) >= 1):
            sys.exit(f"--modes: {item!r} is not OVERLAP/BATCH_FILES (e.g. on/4)")
        modes.append((overlap, files))
    return modes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="number of face clips (jobs rows; default 8)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip (default 4)")
    parser.add_argument("--side", type=int, default=256, help="frame side in pixels (default 256)")
    parser.add_argument("--processes", default="1,2", help="process counts to compare (default 1,2)")
    parser.add_argument("--modes", default="off/1,on/1,off/4,on/4",
                        help="OVERLAP/BATCH_FILES pairs to compare (default off/1,on/1,off/4,on/4)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the median is printed (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")
    parser.add_argument("--precision", default="auto", help="generate's --precision (default auto)")
    parser.add_argument("--detect-every", type=int, default=5, help="generate's --detect-every (default 5)")
    parser.add_argument("--quick", action="store_true", help="4 clips of 1 s and a tiny generator (smoke check)")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.seconds = 4, 1.0
    counts = [int(n) for n in args.processes.split(",")]
    configs = [(count, overlap, files) for count in counts for overlap, files in parse_modes(args.modes)]
    with tempfile.TemporaryDirectory(prefix="bench-batch-generate-") as work:
        work = Path(work)
        jobs = make_inputs(work / "batch", args.clips, args.seconds, args.side)
        model = save_wav2lip(work / "wav2lip", tiny=args.quick)
        flags = ["--model", str(model), "--device", args.device, "--precision", args.precision,
                 "--detect-every", str(args.detect_every)]
        print(f"{args.clips} clips of {args.seconds:g} s ({args.side}x{args.side}, {args.clips * args.seconds:g} s of "
              f"video), device {args.device}, precision {args.precision}, {os.cpu_count()} CPU cores, torch "
              f"{torch.__version__}; Wav2Lip: {'tiny' if args.quick else 'full size'}, random weights; "
              f"{args.rounds} round(s), median")
        times = {config: [] for config in configs}
        differences = dict.fromkeys(configs, 0)
        first = None
        for _ in range(max(1, args.rounds)):
            for config in configs:
                count, overlap, files = config
                times[config].append(run(count, jobs, flags + ["--overlap", overlap, "--batch-files", files],
                                         work / "results.csv"))
                outputs = decoded_outputs(work / "batch" / "out")
                first = first or outputs
                difference = max(int(np.abs(first[name] - frames).max()) if first[name].shape == frames.shape
                                 else 255 for name, frames in outputs.items())
                differences[config] = max(differences[config], difference)
        print(f"{'processes':>9}  {'overlap':>7}  {'batch-files':>11}  {'wall s':>8}  {'clips/s':>8}  {'speed-up':>8}  "
              f"largest frame difference to the first row")
        base = None
        for config in configs:
            count, overlap, files = config
            seconds = float(np.median(times[config]))
            base = base or seconds
            print(f"{count:>9}  {overlap:>7}  {files:>11}  {seconds:8.2f}  {args.clips / seconds:8.3f}  "
                  f"{base / seconds:7.2f}x  {differences[config]}")


if __name__ == "__main__":
    main()
