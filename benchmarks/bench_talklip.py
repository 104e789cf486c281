"""Cost of TalkLip generation with the released architecture (random weights): the utterance-level global audio
encoder (AV-HuBERT Base over the whole audio, once) against the per-frame face generation.

    python benchmarks/bench_talklip.py                 # 10 s and 60 s of audio, batch 16 faces (CPU)
    python benchmarks/bench_talklip.py --quick         # smoke check: tiny model, 2 s of audio
    python benchmarks/bench_talklip.py --device cuda --batch-size 128

Figures printed (median of --repeats runs):
  * prepare_audio seconds for each audio length (features + AV-HuBERT + audio_map), and its real-time factor;
  * generate: faces per second for batches of 96x96 faces (the network + BGR/stacking glue);
  * the share of the total time of a 25 fps video that goes to the audio encoder.
Random weights cost exactly what the real ones do (same shapes, same operations).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
SPEECH = DATA_DIR / "speech02_sadtalker_RD_Radio31_000.wav"


def build_generator(quick: bool, device: str):
    from talkface.models.talklip import TalkLipConfig, TalkLipModel
    from talkface.pipelines.lipsync.adapters.talklip import TalkLipGenerator

    torch.manual_seed(0)
    if quick:
        config = TalkLipConfig(
            image_size=24, hidden_size=16, face_encoder_channels=[4, 8, 8, 16], face_encoder_kernel_sizes=[7, 3, 3, 3],
            face_encoder_strides=[1, 2, 2, 2], face_encoder_residual_layers=[0, 1, 1, 0],
            decoder_channels=[16, 8, 8, 4], decoder_residual_layers=[1, 0, 1, 1], output_hidden_channels=4,
            avhubert_config=dict(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                                 encoder_attention_heads=4, conv_pos=8, conv_pos_groups=4, video_frontend_channels=4,
                                 resnet_channels=[4, 4, 8, 8], resnet_blocks=[1, 1, 1, 1]),
            trainable_audio_layers=1,
        )
    else:
        config = TalkLipConfig()  # the released TalkLip: Wav2Lip face path + AV-HuBERT Base
    return TalkLipGenerator(TalkLipModel(config).eval()).to(device=torch.device(device))


def speech(seconds: float) -> np.ndarray:
    if SPEECH.is_file():
        from talkface import media

        audio = media.read_audio(SPEECH, 16000)
    else:
        audio = (0.1 * np.random.default_rng(0).standard_normal(16000 * 8)).astype(np.float32)
    samples = int(seconds * 16000)
    return np.tile(audio, int(np.ceil(samples / len(audio))))[:samples]


def timed(function, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model and 2 s of audio (smoke check)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, nargs="+", default=None, help="audio lengths (default 10 60)")
    args = parser.parse_args(argv)
    seconds_list = args.seconds or ([2.0] if args.quick else [10.0, 60.0])
    generator = build_generator(args.quick, args.device)
    size = generator.img_size
    print(f"TalkLip ({'tiny' if args.quick else 'released architecture'}), device {args.device}, "
          f"{sum(p.numel() for p in generator.model.parameters()) / 1e6:.1f} M parameters")

    results = {}
    for seconds in seconds_list:
        waveform = speech(seconds)
        prepared = generator.prepare_audio(waveform, 16000, 25.0)  # warm-up
        elapsed = timed(lambda: generator.prepare_audio(waveform, 16000, 25.0), args.repeats, args.device)
        results[seconds] = elapsed
        print(f"prepare_audio {seconds:5.1f} s of audio: {elapsed:7.3f} s (real-time factor {elapsed / seconds:.4f}), "
              f"{prepared.num_frames} frames")

    waveform = speech(seconds_list[0])
    prepared = generator.prepare_audio(waveform, 16000, 25.0)
    generator_rng = torch.Generator().manual_seed(0)
    faces = torch.rand(args.batch_size, 3, size, size, generator=generator_rng)
    masked = faces.clone()
    masked[:, :, size // 2:] = 0
    indices = torch.arange(args.batch_size) % prepared.num_frames
    generator.generate(masked, faces, prepared, indices)  # warm-up
    elapsed = timed(lambda: generator.generate(masked, faces, prepared, indices), args.repeats, args.device)
    faces_per_second = args.batch_size / elapsed
    print(f"generate: {faces_per_second:8.1f} faces/s (batch {args.batch_size}, {size}x{size})")
    for seconds, audio_time in results.items():
        face_time = seconds * 25 / faces_per_second
        print(f"{seconds:5.1f} s video at 25 fps: audio encoder {audio_time:.2f} s + faces {face_time:.2f} s "
              f"-> {100 * audio_time / (audio_time + face_time):.1f}% in the audio encoder")


if __name__ == "__main__":
    main()
