"""Render the before/after frames of docs/generation.md ("Paste-back") from a real clip.

    python tools/render_paste_back_figures.py                       # ../shared/data/clip05..., docs/images/
    python tools/render_paste_back_figures.py --clip FACE.mp4 --out docs/images --frame 0

No generator weights are needed (none are released here): the "generated" face is the crop itself with its lower
half painted a flat colour, which shows exactly which pixels each paste-back replaces. Two figures:

* paste_back_masks.png: the source frame, the box-shaped mask (`--blend box`, the former default) and the
  face-shaped mask (`--blend feather` with landmarks, the default), each with the painted crop pasted;
* paste_back_roll.png: the same frame turned a quarter turn (a head lying sideways), pasted without roll
  alignment (`--no-align-roll`: the painted half lands beside the mouth) and with it (the default).

Each panel is shrunk to --panel-height pixels so the PNGs stay small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from talkface import media  # noqa: E402
from talkface.faces import get_face_backend  # noqa: E402
from talkface.faces.blending import paste_face  # noqa: E402
from talkface.faces.roll import crop_face_aligned, roll_angle  # noqa: E402

DEFAULT_CLIP = REPO.parent / "shared" / "data" / "clip05_retalking_face5_woman_glasses.mp4"
PAINT = (40, 200, 90)  # green: the clip's jacket and lips are red


def painted_face(frame, box, roll, size=96):
    face = crop_face_aligned(frame, box, roll, size).copy()
    face[size // 2:] = PAINT
    return face


def panel(frame, label, height):
    import cv2

    scale = height / frame.shape[0]
    small = cv2.resize(frame, (round(frame.shape[1] * scale), height), interpolation=cv2.INTER_AREA)
    out = np.ascontiguousarray(small)
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.48, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def detect(backend, frame):
    faces = backend.detect(frame, landmarks=True)
    if not faces or faces[0].landmarks is None:
        raise SystemExit("no face with landmarks found in the frame; pick another --frame or --clip")
    box = faces[0].box.copy()
    box[3] = min(frame.shape[0], box[3] + 10)  # the pipeline's default pads: 10 px below the chin
    return box, faces[0].landmarks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--frame", type=int, default=0, help="frame index in the clip")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--panel-height", type=int, default=256)
    args = parser.parse_args(argv)
    import cv2

    frames = media.read_frames(args.clip, max_frames=args.frame + 1)
    frame = frames[args.frame]
    backend = get_face_backend("mediapipe")
    try:
        box, landmarks = detect(backend, frame)
        roll = roll_angle(landmarks)
        face = painted_face(frame, box, roll)
        box_paste = paste_face(frame, painted_face(frame, box, 0.0), box, blend="box")
        face_paste = paste_face(frame, face, box, blend="feather", landmarks=landmarks, roll_degrees=roll)
        masks = [panel(frame, "source frame", args.panel_height),
                 panel(box_paste, "box mask (--blend box)", args.panel_height),
                 panel(face_paste, "face mask (default feather)", args.panel_height)]

        turned = np.ascontiguousarray(np.rot90(frame, 1))
        turned_box, turned_landmarks = detect(backend, turned)
        turned_roll = roll_angle(turned_landmarks)
        plain = paste_face(turned, painted_face(turned, turned_box, 0.0), turned_box, blend="feather",
                           landmarks=turned_landmarks)
        aligned = paste_face(turned, painted_face(turned, turned_box, turned_roll), turned_box, blend="feather",
                             landmarks=turned_landmarks, roll_degrees=turned_roll)
        rolls = [panel(turned, "head lying sideways", args.panel_height),
                 panel(plain, "--no-align-roll", args.panel_height),
                 panel(aligned, f"roll-aligned ({turned_roll:.0f} deg)", args.panel_height)]
    finally:
        backend.close()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, panels in (("paste_back_masks.png", masks), ("paste_back_roll.png", rolls)):
        path = args.out / name
        cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(panels, axis=1), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
