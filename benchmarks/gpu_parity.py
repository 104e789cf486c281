"""Golden parity of the converted networks on an accelerator (CUDA) in fp32, plus the fp16/bf16 drift.

Runs the reference golden vectors of ../shared/reference/golden (weights rebuilt from the documented formula and
passed through our converters) on `--device` and prints the max abs difference per output. CI has no GPU, so this
is a script, not a test; the same comparisons run on CPU in the test suite.

    python benchmarks/gpu_parity.py --device cuda            # TALKFACE_SHARED points at the shared folder
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.utils import formula_state_dict, golden_file, load_golden  # noqa: E402


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def wav2lip(device, dtype):
    from talkface.models.wav2lip import Wav2LipConfig, Wav2LipModel
    from talkface.models.wav2lip.convert_wav2lip_original_checkpoint import convert_wav2lip_state_dict

    golden = load_golden("wav2lip.npz")
    model = Wav2LipModel(Wav2LipConfig()).eval()
    model.load_state_dict(convert_wav2lip_state_dict(formula_state_dict("wav2lip_generator_keys.json"), model.config))
    model.to(device=device, dtype=dtype)
    with torch.no_grad():
        out = model(masked_and_reference_faces=torch.from_numpy(golden["gen_face_in"]).to(device, dtype),
                    mel_chunks=torch.from_numpy(golden["gen_mel_in"]).to(device, dtype))
    out = out if torch.is_tensor(out) else out[0]
    return {"gen_out": max_diff(out.float().cpu(), golden["gen_out"])}


def avhubert(device, dtype):
    from talkface.models.avhubert.convert_avhubert_fairseq_checkpoint import convert_fairseq_checkpoint

    golden = load_golden("avhubert.npz")
    cfg = json.loads(golden_file("avhubert_cfg.json").read_text())
    checkpoint = {"cfg": {"model": cfg["model"], "task": cfg["task"]}, "model": formula_state_dict("avhubert_pretrain_keys.json")}
    model = convert_fairseq_checkpoint(checkpoint)[0].eval().to(device=device, dtype=dtype)
    audio = torch.from_numpy(golden["audio_in"])[None].to(device, dtype)
    video = torch.from_numpy(golden["video_in"])[None, None].to(device, dtype)
    result = {}
    with torch.no_grad():
        for name, inputs in {"a": dict(audio_features=audio), "v": dict(video=video),
                             "av": dict(audio_features=audio, video=video)}.items():
            out = model(**inputs).last_hidden_state[0].float().cpu()
            result[f"enc_{name}"] = max_diff(out, golden[f"enc_{name}"])
    return result


def syncnet_lse(device, dtype):
    from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEFeatureExtractor, SyncNetLSEModel
    from talkface.models.syncnet_lse.convert_syncnet_lse_original_checkpoint import convert_syncnet_lse_state_dict

    golden = load_golden("syncnet_lse.npz")
    config = SyncNetLSEConfig()
    model = SyncNetLSEModel(config).eval()
    model.load_state_dict(convert_syncnet_lse_state_dict(formula_state_dict("syncnet_S_keys.json"), config))
    model.to(device=device, dtype=dtype)
    extractor = SyncNetLSEFeatureExtractor()
    mfcc = extractor.mfcc(golden["audio_int16"], int(golden["sample_rate"]))
    with torch.no_grad():
        audio = model.get_audio_embeddings(extractor.audio_windows(mfcc, 45).to(device, dtype)).float().cpu()
        pixels = extractor.pixel_values(golden["frames_bgr"], channel_order="bgr").to(device, dtype)
        video = model.get_video_embeddings(pixels)[0][:45]
    return {"audio_feat": max_diff(audio, golden["audio_feat"]), "video_feat": max_diff(video.float().cpu(),
                                                                                           golden["video_feat"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}")
    # TF32 would change fp32 results on Ampere+; parity is checked in true fp32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dtypes = [torch.float32] + ([torch.float16, torch.bfloat16] if device.type == "cuda" else [])
    for name, fn in (("wav2lip", wav2lip), ("avhubert", avhubert), ("syncnet_lse", syncnet_lse)):
        for dtype in dtypes:
            try:
                diffs = fn(device, dtype)
            except Exception as err:  # report and go on: one network's failure should not hide the others
                print(f"{name:12s} {str(dtype):14s} FAILED: {type(err).__name__}: {err}")
                continue
            print(f"{name:12s} {str(dtype):14s} " + "  ".join(f"{k} {v:.2e}" for k, v in diffs.items()))


if __name__ == "__main__":
    main()
