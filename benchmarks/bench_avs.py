"""Seconds to AVS-score a 10 s clip on CPU with a Base-size AV-HuBERT (random weights), split by stage.

    python benchmarks/bench_avs.py                 # clip07 (10.0 s), 2 threads, all configurations
    python benchmarks/bench_avs.py --quick         # smoke check: tiny model, 2 s of the clip, one configuration

Configurations:
  * avs_u, landmark stride 1: landmarks on every frame (one video, audio from its track);
  * avs_u, landmark stride 2: landmarks on every other frame, interpolated: the default `talkface score VIDEO`;
  * all three metrics with a reference video (stride 1): two videos go through landmarks, ROI and the video
    front end; the transformer sees five views in one batch.

Start-up (building the model, the face backend's graphs, a warm-up pass on a few frames) is excluded. The
real-time factor (RTF) is the scoring time over the clip duration; the target is RTF <= 0.5 on 2 cores.
"""

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_CLIP = REPO_ROOT.parent / "shared" / "data" / "clip07_edtalk_mouth_source_muxed.mkv"
STAGES = ("decode", "landmarks", "roi", "audio", "video_frontend", "transformer")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="talking-face clip with sound (clip07)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per configuration; the best is kept")
    parser.add_argument("--quick", action="store_true", help="tiny model on 2 s of the clip, one configuration")
    return parser.parse_args(argv)


def build_scorer(quick: bool, threads: int):
    import torch

    from talkface.faces.backends import get_face_backend
    from talkface.models.avhubert import AVHubertConfig, AVHubertModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if quick:
        config = AVHubertConfig(encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                                encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4)
    else:
        config = AVHubertConfig()  # Base: 12 layers, 768 wide, ResNet-18 video front end
    model = AVHubertModel(config).eval()
    num_parameters = sum(p.numel() for p in model.parameters())
    return model, num_parameters, get_face_backend("mediapipe")


def run_configuration(scorer, clip, metrics, stride, reference, repeats):
    scorer.landmark_stride = stride
    best = None
    for _ in range(repeats):
        started = time.perf_counter()
        # decode is timed inside (frames are read from the file like the CLI does)
        result = scorer.score(clip, reference=reference, metrics=metrics)
        total = time.perf_counter() - started
        if best is None or total < best[0]:
            best = (total, result)
    total, result = best
    stages = dict(result.timings)
    stages["transformer"] = stages.get("encoder", 0.0) - stages.get("video_frontend", 0.0)
    return total, stages, result


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's native log lines
    if not args.clip.is_file():
        sys.exit(f"clip not found: {args.clip}; pass --clip")

    from talkface.media import read_audio, read_frames

    started = time.perf_counter()
    model, num_parameters, backend = build_scorer(args.quick, args.threads)
    clip = args.clip
    if args.quick:
        # 2 s of the clip, written once to a temporary file so the timed path still decodes a file
        import tempfile

        from talkface.media import VideoWriter

        frames = read_frames(args.clip, fps=25, max_frames=50)
        audio = read_audio(args.clip, 16000)[: 50 * 640]
        clip = Path(tempfile.mkdtemp()) / "quick.mp4"
        with VideoWriter(clip, fps=25, width=frames.shape[2], height=frames.shape[1], audio=audio) as writer:
            for frame in frames:
                writer.write(frame)
    frames = read_frames(clip, fps=25)
    duration = len(frames) / 25.0
    # warm-up on a few frames: graph initialisation and first-call allocations are start-up, not scoring
    from talkface.metrics.avs import AVSScorer

    scorer = AVSScorer(model, face_backend=backend)  # folds the video front end's BatchNorms (start-up)
    scorer.score(frames[:16], audio=read_audio(clip, 16000)[: 16 * 640], reference=frames[:16])
    startup = time.perf_counter() - started

    configurations = [("avs_u, stride 1", "avs_u", 1, None)]
    if not args.quick:
        configurations += [("avs_u, stride 2", "avs_u", 2, None), ("all 3 + reference", "avs_u,avs_m,avs_v", 1, clip)]
    print(f"clip: {args.clip.name}{' (first 2 s)' if args.quick else ''}, {len(frames)} frames = {duration:.2f} s; "
          f"model: {'tiny' if args.quick else 'AV-HuBERT Base'} ({num_parameters / 1e6:.1f} M parameters, random "
          f"weights); torch threads: {args.threads}; start-up (excluded): {startup:.1f} s")
    header = f"{'configuration':<20}" + "".join(f"{s:>15}" for s in STAGES) + f"{'total':>9}{'RTF':>7}"
    print(header)
    print("-" * len(header))
    for name, metrics, stride, reference in configurations:
        repeats = 1 if args.quick else args.repeats
        total, stages, _ = run_configuration(scorer, clip, metrics, stride, reference, repeats)
        cells = "".join(f"{stages.get(s, 0.0):>14.2f}s" for s in STAGES)
        print(f"{name:<20}{cells}{total:>8.2f}s{total / duration:>7.2f}")
    print("stages: decode = reading frames; landmarks = face backend; roi = mouth crops (all videos); audio = "
          "filterbanks; video_frontend = ResNet-18; transformer = fusion + 12 layers, all views in one batch")


if __name__ == "__main__":
    main()
