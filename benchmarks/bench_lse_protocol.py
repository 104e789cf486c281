"""`--lse-protocol syncnet_python`: seconds per frame against syncnet_python's own full run on the same clip.

    python benchmarks/bench_lse_protocol.py                                   # clip05 (4.9 s), talkface only
    python benchmarks/bench_lse_protocol.py --syncnet-python ~/syncnet_python # and the reference, side by side
    python benchmarks/bench_lse_protocol.py --clip clip07_edtalk_mouth_source_muxed.mkv --box 60 40 200 200

The reference is run from an unmodified syncnet_python checkout (github.com/joonson/syncnet_python; it needs
scenedetect==0.5.1, opencv, scipy, python_speech_features and torch in the Python given by --python): a small
driver executes its `run_pipeline.py` then `run_syncnet.py` in a temporary data dir, on CPU, and only patches the
process around them (`.cuda()` is a no-op, torchvision is not needed, `np.int` exists, OpenCV's `cv2.split`
returns a list as scenedetect 0.5.1 expects, the S3FD weight path points to the file given). Nothing is written
into the checkout.

Weights: by default both sides use random weights built from the golden formula (../shared/reference/golden:
`syncnet_S_keys.json`, `s3fd_keys.json`); with those, S3FD's scores stay between 0.28 and 0.61, so both sides
detect at --threshold 0.5 instead of run_pipeline's 0.9 (the reference's threshold is patched the same way). Pass
--syncnet-weights syncnet_v2.model --s3fd-weights sfd_face.pth for the released weights (threshold 0.9).
--box X1 Y1 X2 Y2 replaces S3FD by one fixed box on both sides (the golden runs' setting).

Printed: per side the wall time of the whole procedure, seconds per video frame, the stages (talkface), and each
face track's AV offset, LSE-D and LSE-C. Timings on a shared machine vary; compare the ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from talkface import media  # noqa: E402
from talkface.faces.backends import S3FDFaceBackend  # noqa: E402
from talkface.metrics.sync import LSEScorer  # noqa: E402
from talkface.metrics.syncnet_protocol import SyncNetPythonOptions, SyncNetPythonProtocol  # noqa: E402
from talkface.models.s3fd import S3FDDetector  # noqa: E402
from talkface.models.s3fd.convert_s3fd_original_checkpoint import convert_checkpoint as convert_s3fd  # noqa: E402
from talkface.models.syncnet_lse.convert_syncnet_lse_original_checkpoint import (  # noqa: E402
    convert_checkpoint as convert_syncnet,
)

SHARED = Path(os.environ.get("TALKFACE_SHARED", REPO_ROOT.parent / "shared"))
DEFAULT_CLIP = SHARED / "data" / "clip05_retalking_face5_woman_glasses.mp4"

# The reference's two scripts, run in one process with the patches described above (no file of the checkout changes).
DRIVER = r"""
import contextlib, glob, io, json, os, re, runpy, sys, time, types
import numpy as np, torch, cv2
checkout, data_dir, video, s3fd_weights, syncnet_weights, threshold, box = sys.argv[1:8]
threshold, box = float(threshold), json.loads(box)
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.Tensor.cuda = lambda self, *a, **k: self
sys.modules.setdefault("torchvision", types.ModuleType("torchvision")).transforms = None
np.int = int
_split = cv2.split
cv2.split = lambda *a, **k: list(_split(*a, **k))
sys.path.insert(0, checkout)
os.chdir(checkout)
import detectors.s3fd as s3fd
s3fd.PATH_WEIGHT = s3fd_weights
_init, _detect = s3fd.S3FD.__init__, s3fd.S3FD.detect_faces
s3fd.S3FD.__init__ = lambda self, device="cpu": _init(self, device="cpu")
s3fd.S3FD.detect_faces = lambda self, image, conf_th=0.8, scales=[1]: _detect(self, image, conf_th=threshold,
                                                                             scales=scales)
timings = {}
start = time.perf_counter()
sys.argv = ["run_pipeline.py", "--videofile", video, "--reference", "bench", "--data_dir", data_dir]
source = open("run_pipeline.py").read()
if box is not None:  # the golden runs' one change: a fixed box on every JPEG instead of S3FD
    source = source.replace("faces = inference_video(opt)", "faces = [[{'frame': i, 'bbox': BOX, 'conf': 1.0}] "
                            "for i in range(len(glob.glob(os.path.join(opt.frames_dir, opt.reference, '*.jpg'))))]")
with contextlib.redirect_stdout(io.StringIO()):
    exec(compile(source, "run_pipeline.py", "exec"), {"__name__": "__main__", "BOX": box, "glob": glob})
timings["run_pipeline"] = time.perf_counter() - start
start = time.perf_counter()
sys.argv = ["run_syncnet.py", "--initial_model", syncnet_weights, "--reference", "bench", "--data_dir", data_dir]
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    runpy.run_path("run_syncnet.py", run_name="__main__")
timings["run_syncnet"] = time.perf_counter() - start
tracks = [dict(offset=int(o), lse_d=float(d), lse_c=float(c)) for o, d, c in
          re.findall(r"AV offset:\s+(-?\d+)\s+Min dist:\s+([\d.]+)\s+Confidence:\s+([-\d.]+)", printed.getvalue())]
print(json.dumps({"timings": timings, "tracks": tracks}))
"""


def formula_state_dict(keys_file: str) -> dict:
    sys.path.insert(0, str(REPO_ROOT))
    from tests.utils import formula_state_dict as build

    return build(keys_file)


def prepare_weights(args, folder: Path) -> tuple[Path, Path]:
    """Original-format weight files for the reference (formula ones unless given)."""
    syncnet, s3fd = args.syncnet_weights, args.s3fd_weights
    if syncnet is None:
        syncnet = folder / "syncnet_formula.model"
        torch.save(formula_state_dict("syncnet_S_keys.json"), syncnet)
    if s3fd is None:
        s3fd = folder / "sfd_face_formula.pth"
        torch.save(formula_state_dict("s3fd_keys.json"), s3fd)
    return Path(syncnet), Path(s3fd)


def run_reference(args, syncnet_weights: Path, s3fd_weights: Path, threshold: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="syncnet-python-bench-") as data_dir:
        command = [args.python, "-c", DRIVER, str(Path(args.syncnet_python).resolve()), data_dir,
                   str(Path(args.clip).resolve()), str(s3fd_weights), str(syncnet_weights), str(threshold),
                   json.dumps(args.box)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **args.reference_env})
        wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"syncnet_python failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["wall"] = wall
    return report


def run_talkface(args, syncnet_weights: Path, s3fd_weights: Path, threshold: float) -> dict:
    syncnet_model = convert_syncnet(syncnet_weights)[0]
    scorer = LSEScorer(syncnet_model, batch_size=args.batch_size)
    backend = None
    if args.box is None:
        backend = S3FDFaceBackend(detector=S3FDDetector(convert_s3fd(s3fd_weights)[0]))
    protocol = SyncNetPythonProtocol(scorer, face_backend=backend,
                                     options=SyncNetPythonOptions(detection_threshold=threshold))
    started = time.perf_counter()
    result = protocol.score_video(args.clip, box=args.box)
    wall = time.perf_counter() - started
    return {"wall": wall, "timings": result.timings,
            "tracks": [dict(offset=t.offset, lse_d=t.lse_d, lse_c=t.lse_c) for t in result.tracks]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=str(DEFAULT_CLIP), help="video with its audio (default: shared clip05)")
    parser.add_argument("--box", type=float, nargs=4, default=None, metavar=("X1", "Y1", "X2", "Y2"),
                        help="one fixed face box instead of S3FD, on both sides")
    parser.add_argument("--syncnet-python", metavar="DIR", help="a syncnet_python checkout: also time the reference")
    parser.add_argument("--python", default=sys.executable, help="Python that runs the reference (default: this one)")
    parser.add_argument("--reference-pythonpath", default="",
                        help="prepended to PYTHONPATH for the reference (e.g. a folder with scenedetect==0.5.1)")
    parser.add_argument("--syncnet-weights", help="syncnet_v2.model (default: formula weights)")
    parser.add_argument("--s3fd-weights", help="sfd_face.pth (default: formula weights)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="S3FD face threshold for both sides (default 0.9 with real weights, 0.5 with formula)")
    parser.add_argument("--batch-size", type=int, default=20, help="talkface's SyncNet windows per forward pass")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side; the best is reported")
    args = parser.parse_args(argv)
    args.reference_env = {}
    if args.reference_pythonpath:
        args.reference_env["PYTHONPATH"] = args.reference_pythonpath + os.pathsep + os.environ.get("PYTHONPATH", "")
    threshold = args.threshold if args.threshold is not None else (0.9 if args.s3fd_weights else 0.5)
    frames = media.probe(args.clip).num_frames
    print(f"clip: {Path(args.clip).name}, {frames} frames; torch threads {torch.get_num_threads()}; "
          f"{'fixed box ' + str(args.box) if args.box else f'S3FD at threshold {threshold}'}; "
          f"{'released' if args.syncnet_weights else 'formula'} weights")
    with tempfile.TemporaryDirectory() as folder:
        syncnet_weights, s3fd_weights = prepare_weights(args, Path(folder))
        sides = {"talkface": lambda: run_talkface(args, syncnet_weights, s3fd_weights, threshold)}
        if args.syncnet_python:
            sides["syncnet_python"] = lambda: run_reference(args, syncnet_weights, s3fd_weights, threshold)
        reports = {}
        for name, run in sides.items():
            runs = [run() for _ in range(args.repeat)]
            reports[name] = min(runs, key=lambda r: r["wall"])
    for name, report in reports.items():
        stages = ", ".join(f"{k} {v:.2f}" for k, v in report["timings"].items())
        if name == "syncnet_python":  # the rest of its wall time: the interpreter, its imports, the S3FD load
            stages += f"; start-up {report['wall'] - sum(report['timings'].values()):.2f}"
        print(f"{name:15s} {report['wall']:7.2f} s  {report['wall'] / frames * 1000:6.1f} ms/frame  ({stages})")
        for index, track in enumerate(report["tracks"]):
            print(f"{'':15s} track {index}: offset {track['offset']:3d}  LSE-D {track['lse_d']:.4f}  "
                  f"LSE-C {track['lse_c']:.4f}")
    if "syncnet_python" in reports:
        reference = reports["syncnet_python"]
        ratio = reference["wall"] / reports["talkface"]["wall"]
        scripts = sum(reference["timings"].values()) / reports["talkface"]["wall"]
        print(f"talkface is {ratio:.1f}x faster than syncnet_python's full run on this clip ({scripts:.1f}x against "
              "its two scripts alone, without its start-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
