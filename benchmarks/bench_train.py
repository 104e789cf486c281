"""Training throughput of the full-size talkface recipe: optimizer steps per second and peak memory.

Runs the real training loop (train/train.py) on synthetic data with the full-size generator and discriminator and
the full loss set of train/configs/talkface_avhubert.yaml: GAN + L1 + VGG-19 perceptual + the AV-HuBERT lip-sync
loss, with randomly initialised VGG-19 and AV-HuBERT Base (the speed does not depend on the weights).

    python benchmarks/bench_train.py                      # CPU (or --device cuda), batch 8, 75-frame context
    python benchmarks/bench_train.py --device cuda --mixed-precision bf16
    python benchmarks/bench_train.py --quick              # smoke check: batch 2, 1 timed step, 10-frame context

Figures: mean seconds per step over the timed steps (the first `--warmup` steps are excluded), steps/s, frames
generated per second, and peak memory (GPU: torch.cuda.max_memory_allocated; CPU: the process's peak RSS).
"""

import argparse
import importlib.util
import json
import resource
import sys
import tempfile
from pathlib import Path

import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_train_module():
    spec = importlib.util.spec_from_file_location("talkface_train_script", REPO_ROOT / "train" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recipe(batch_size: int, context_frames: int, num_workers: int) -> dict:
    paper = yaml.safe_load((REPO_ROOT / "train" / "configs" / "talkface_avhubert.yaml").read_text())
    losses = paper["losses"]
    losses["perceptual"]["vgg19"] = {"config": {}}  # full-size VGG-19, random weights
    losses["sync"]["avhubert"] = {"config": {}}  # AV-HuBERT Base, random weights
    model = {k: v for k, v in paper["model"].items() if k != "syncnet"}  # random frozen audio encoder
    return {
        "seed": 0,
        "dataset": {"name": "synthetic", "synthetic_length": 100000, "synthetic_val_length": 1,
                    "synthetic_context_frames": context_frames, "num_workers": num_workers},
        "model": model,
        "discriminator": paper["discriminator"],
        "losses": losses,
        "optimizer": paper["optimizer"],
        "training": {"batch_size": batch_size, "checkpointing_steps": 0, "logging_steps": 1,
                     "image_logging_steps": 0, "report_to": "none", "save": False},
        "validation": {"steps": 0, "batches": 0},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    parser.add_argument("--context-frames", type=int, default=75, help="utterance frames fed to AV-HuBERT (3 s)")
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="batch 2, 1 timed step, 10-frame context")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.steps, args.context_frames = 2, 1, 10
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is visible", file=sys.stderr)
        return 2

    train = load_train_module()
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "bench.yaml"
        config_path.write_text(yaml.safe_dump(recipe(args.batch_size, args.context_frames, args.num_workers)))
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        train_args = ["--config", str(config_path), "--output-dir", str(Path(tmp) / "run"),
                      "--max-steps", str(args.warmup + args.steps), "--mixed-precision", args.mixed_precision]
        if args.device == "cpu":
            train_args.append("--cpu")
        summary = train.main(train_args)

    timed = summary["step_times"][args.warmup:]
    seconds_per_step = sum(timed) / max(len(timed), 1)
    frames_per_step = args.batch_size * 5
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated()
        peak_label = "peak GPU memory (max_memory_allocated)"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
        peak_label = "peak process RSS"
    result = {
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "batch_size": args.batch_size, "frames_per_step": frames_per_step, "context_frames": args.context_frames,
        "mixed_precision": args.mixed_precision, "timed_steps": len(timed), "torch_threads": torch.get_num_threads(),
        "seconds_per_step": round(seconds_per_step, 4), "steps_per_second": round(1 / seconds_per_step, 4),
        "generated_frames_per_second": round(frames_per_step / seconds_per_step, 2),
        "peak_memory_gib": round(peak / 2**30, 3), "peak_memory_kind": peak_label,
        "last_losses": {k: round(v, 4) for k, v in summary["last_losses"].items()},
    }
    print(f"\ntalkface training step, full-size recipe, {result['device']}, batch {args.batch_size} "
          f"(x5 frames), context {args.context_frames} frames, mixed precision {args.mixed_precision}")
    print(f"  {seconds_per_step:.3f} s/step  = {result['steps_per_second']:.3f} steps/s  = "
          f"{result['generated_frames_per_second']:.1f} generated frames/s  ({len(timed)} timed steps)")
    print(f"  {peak_label}: {result['peak_memory_gib']:.2f} GiB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
