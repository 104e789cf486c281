"""How far talkface's default LSE mode is from `--lse-protocol syncnet_python`, and what each lossy step of
syncnet_python's procedure does to the numbers, on the shared clips (the figures of docs/evaluation.md).

    python benchmarks/lse_protocol_gap.py                       # clip05 and clip07 with the golden boxes
    python benchmarks/lse_protocol_gap.py --syncnet models/syncnet-lse   # released SyncNet weights

Per clip (one fixed face box, the golden runs' setting) it prints AV offset, LSE-D and LSE-C, and the change of
LSE-D / LSE-C against the protocol, for:
- syncnet_python itself (the golden numbers, formula weights only);
- the protocol (`SyncNetPythonProtocol`);
- the protocol with one lossy effect removed at a time (the module functions patched in this process only):
  the MP3 audio of step 1 (PCM instead: no MP3 content change and no timestamp gap, so no duplicated frame),
  the default-quality JPEG round trip of step 10 (the XVID frames losslessly), and the XVID encode of step 7
  together with step 10 (the crops themselves);
- talkface's default mode, `--face-mode track`, with a backend that returns the same fixed box (talkface's own
  decode, tracking and crop: no re-encodes at all) and with mediapipe (what a user of the default mode gets);
- the default mode, `--face-mode precropped`, on the protocol's own crop video (its XVID frames decoded by talkface,
  the track's audio): "evaluate the crops syncnet_python would make".

Weights: formula weights (../shared/reference/golden) unless --syncnet is given. With those LSE-D is ~300 instead
of ~7, so read the relative changes.
"""

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from talkface import media
from talkface.faces.backends import FaceBackend, FaceDetection
from talkface.metrics import syncnet_protocol_media as steps
from talkface.metrics.sync import LSEScorer, TrackingOptions
from talkface.metrics.syncnet_protocol import SyncNetPythonOptions, SyncNetPythonProtocol

SHARED = Path(os.environ.get("TALKFACE_SHARED", REPO_ROOT.parent / "shared"))
CLIPS = {"c05": ("clip05_retalking_face5_woman_glasses.mp4", (140, 160, 400, 450)),
         "c07": ("clip07_edtalk_mouth_source_muxed.mkv", (60, 40, 200, 200))}


class FixedBoxBackend(FaceBackend):
    """One face, the same box (source pixels) in every frame (scaled to the frame the tracker gives)."""

    name = "fixed-box"
    provides_landmarks = False

    def __init__(self, box, source_width: int):
        self.box, self.source_width = np.asarray(box, dtype=np.float32), source_width

    def _detect(self, frame_rgb, landmarks):
        return [FaceDetection(box=self.box * (frame_rgb.shape[1] / self.source_width), landmarks=None, score=1.0)]


@contextlib.contextmanager
def patched(module, **replacements):
    saved = {name: getattr(module, name) for name in replacements}
    for name, value in replacements.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def pcm_convert(source, avi_path, threads=steps.DEFAULT_CONVERT_THREADS):
    """Step 1 with PCM audio instead of LAME's MP3."""
    args = ["-y", "-i", str(source), "-qscale:v", "2", "-async", "1", "-r", str(steps.FRAME_RATE),
            "-acodec", "pcm_s16le"]
    if str(threads) != "auto":
        args += ["-threads", str(int(threads))]
    steps.run_ffmpeg(args + [str(avi_path)], "re-encode with PCM audio", capture=False)


def png_frames(video_path):
    import cv2

    return [cv2.imencode(".png", frame)[1].tobytes() for frame in steps.iter_opencv_frames(video_path)]


original_extract = steps.extract_jpegs


def lossless_step10(video_path, qscale, what):
    """Step 10 without its JPEG: the crop video's frames as OpenCV decodes them, in PNG."""
    return original_extract(video_path, qscale, what) if qscale is not None else png_frames(video_path)


class LosslessWriter:
    """Step 7 without the XVID encode: the crops kept as they are (read back losslessly by step 10)."""

    frames = {}

    def __init__(self, path, *args, **kwargs):
        self.path = str(path)
        LosslessWriter.frames[self.path] = []

    def write(self, frame):
        LosslessWriter.frames[self.path].append(frame.copy())

    def close(self):
        Path(self.path).touch()


def lossless_crops(video_path, qscale, what):
    import cv2

    if qscale is not None:
        return original_extract(video_path, qscale, what)
    return [cv2.imencode(".png", frame)[1].tobytes() for frame in LosslessWriter.frames[str(video_path)]]


def row(name, result, base):
    track = result.tracks[0] if hasattr(result, "tracks") else result
    d, c, offset = track.lse_d, track.lse_c, track.offset
    change = "" if base is None else (f"{100 * (d - base[0]) / base[0]:+7.2f} % {100 * (c - base[1]) / base[1]:+7.2f} %")
    print(f"  {name:58s} {offset:4d} {d:10.4f} {c:8.4f}  {change}")
    return d, c


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncnet", help="converted SyncNet folder (default: formula weights)")
    parser.add_argument("--clips", default="c05,c07", help="comma-separated: c05, c07")
    parser.add_argument("--no-mediapipe", action="store_true", help="skip the mediapipe track-mode row")
    args = parser.parse_args(argv)

    if args.syncnet:
        scorer = LSEScorer.from_pretrained(args.syncnet, batch_size=20)
        golden = None
    else:
        from talkface.models.syncnet_lse import SyncNetLSEConfig, SyncNetLSEModel
        from tests.utils import formula_state_dict

        model = SyncNetLSEModel(SyncNetLSEConfig()).eval()
        model.load_state_dict(formula_state_dict("syncnet_S_keys.json"))
        scorer = LSEScorer(model, batch_size=20)
        path = SHARED / "reference" / "golden" / "syncnet_protocol.npz"
        golden = np.load(path) if path.is_file() else None
    versions = steps.check_encoders()
    print(f"ffmpeg {versions['ffmpeg']} (libavcodec {versions['libavcodec']}); "
          f"{'SyncNet ' + args.syncnet if args.syncnet else 'formula weights'}")
    print(f"  {'':58s} {'off':>4s} {'LSE-D':>10s} {'LSE-C':>8s}  change of LSE-D, LSE-C")
    for tag in args.clips.split(","):
        name, box = CLIPS[tag]
        clip = SHARED / "data" / name
        print(f"{name} (box {list(box)})")
        if golden is not None:
            print(f"  {'syncnet_python (golden run)':58s} {int(golden[tag + '_offset']):4d} "
                  f"{float(golden[tag + '_min_dist']):10.4f} {float(golden[tag + '_conf']):8.4f}")
        protocol = SyncNetPythonProtocol(scorer)
        base = row("--lse-protocol syncnet_python", protocol.score_video(clip, box=box), None)
        with patched(steps, convert_to_avi=pcm_convert):
            row("  without the MP3 audio of step 1 (PCM; no frame shift)", protocol.score_video(clip, box=box), base)
        with patched(steps, extract_jpegs=lossless_step10):
            row("  without step 10's default-quality JPEG", protocol.score_video(clip, box=box), base)
        with patched(steps, extract_jpegs=lossless_crops, OpenCVStyleXvidWriter=LosslessWriter):
            row("  without step 7's XVID encode and step 10's JPEG", protocol.score_video(clip, box=box), base)
        # the protocol's own crop video (copied when step 10 reads it), scored by the default mode as a
        # pre-cropped face video with the track's audio
        with tempfile.TemporaryDirectory() as tmp:
            crop = Path(tmp) / "crop.avi"

            def extract(video_path, qscale, what, crop=crop):
                if qscale is None:
                    crop.write_bytes(Path(video_path).read_bytes())
                return original_extract(video_path, qscale, what)

            with patched(steps, extract_jpegs=extract):
                result = SyncNetPythonProtocol(scorer, options=SyncNetPythonOptions(keep_stages=True)).score_video(
                    clip, box=box)
            samples = result.stages["tracks"][0]["audio_int16"]
            row("default mode, precropped, on the protocol's crop video",
                scorer.score_clip(media.read_frames(crop, fps=25), samples), base)
        width = media.probe(clip).width
        tracking = TrackingOptions(face_backend="mediapipe")
        row("default mode, track, the same fixed box",
            scorer.score_video(clip, face_mode="track", tracking=tracking,
                               face_backend=FixedBoxBackend(box, width)), base)
        if not args.no_mediapipe:
            row("default mode, track, mediapipe (talkface's default backend)",
                scorer.score_video(clip, face_mode="track", tracking=tracking), base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
