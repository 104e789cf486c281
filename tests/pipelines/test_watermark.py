"""Invisible watermark and generation metadata: H.264 robustness on real clips, false positives, `talkface detect`."""

import json
from fractions import Fraction

import cv2
import numpy as np
import pytest

from talkface.cli import main
from talkface.errors import MediaError
from talkface.pipelines.lipsync.watermark import (
    Watermarker,
    _payload_bits,
    generation_metadata,
    parse_payload,
    read_metadata,
    talkface_metadata,
)
from tests.utils import data_file

SECONDS = 2.0


def clip_frames(name, seconds=SECONDS, start_frame=0):
    """Decoded RGB frames of a real clip, as they are coded (no resampling)."""
    import av

    frames = []
    with av.open(str(data_file(name))) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        for index, frame in enumerate(container.decode(stream)):
            if index >= start_frame:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= round(seconds * rate):
                break
    return frames


def encode_h264(frames, path, crf, metadata=None, fps=25):
    """Re-encode frames with libx264 (preset medium, yuv420p) through PyAV, as a user's re-encode would."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as container:
        for key, value in (metadata or {}).items():
            container.metadata[key] = value
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[: stream.height, : stream.width]),
                                                     format="rgb24")
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return path


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def marker():
    return Watermarker()


def test_payload_format():
    bits = _payload_bits(1)
    assert bits.shape == (64,)
    payload, valid, version = parse_payload(bits)
    assert payload.startswith(b"TKFC".hex()) and valid and version == 1
    damaged = bits.copy()
    damaged[50] ^= 1
    assert parse_payload(damaged)[1] is False


def test_embed_changes_luma_only_at_low_cost(marker):
    frames = clip_frames("clip05_retalking_face5_woman_glasses.mp4", seconds=0.4)
    marked = [marker.embed(frame, i) for i, frame in enumerate(frames)]
    assert all(m.shape == f.shape and m.dtype == np.uint8 for m, f in zip(marked, frames))
    assert min(psnr(f, m) for f, m in zip(frames, marked)) > 40.5
    change = marked[0].astype(int) - frames[0]
    unsaturated = ((frames[0] > 10) & (frames[0] < 245)).all(axis=2)
    # the same change on R, G and B: luma changes, colour-difference channels do not
    assert np.array_equal(change[unsaturated, 0], change[unsaturated, 1])
    assert np.array_equal(change[unsaturated, 0], change[unsaturated, 2])
    assert np.abs(change).max() <= 12 and change.std() > 1.5
    # the same mark on every frame, whatever the index
    assert np.array_equal(marker.embed(frames[0], 0), marker.embed(frames[0], 99))


def test_embed_is_the_rounded_mark_added_with_saturation(marker):
    """The uint8 fast path (rise and fall images) gives clip(frame + round(mark)), dark and bright pixels included,
    for a frame that is not a whole number of tiles, and leaves its input untouched."""
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (300, 270, 3), dtype=np.uint8)
    frame[:40] = 0
    frame[40:80] = 255
    before = frame.copy()
    tile = np.tile(marker.tile, (2, 2))[:300, :270]
    expected = np.clip(frame.astype(np.float64) + np.rint(tile * marker.strength)[:, :, None], 0, 255)
    marked = marker.embed(frame)
    assert np.array_equal(marked, expected.astype(np.uint8))
    assert np.array_equal(frame, before)
    assert (marked[:40] > 0).any() and (marked[40:80] < 255).any()  # the mark does move saturated pixels inwards


def test_detect_in_memory_any_size(marker):
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (257, 301, 3), dtype=np.uint8), (9, 9), 3)
    result = marker.detect_frames([marker.embed(frame)] * 3)
    assert result.found and result.payload_valid and result.version == 1 and result.frames_checked == 3
    assert not marker.detect_frames([frame] * 3).found
    empty = marker.detect_frames([])
    assert not empty.found and empty.frames_checked == 0


@pytest.mark.parametrize("clip", ["clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
                                  "clip09_styletalk_feifeili_clip1_muxed.mkv"])
@pytest.mark.parametrize("crf", [23, 28])
def test_mark_survives_h264_reencode(tmp_path, marker, clip, crf):
    frames = clip_frames(clip)
    marked = [marker.embed(frame, i) for i, frame in enumerate(frames)]
    result = marker.detect_video(encode_h264(marked, tmp_path / "marked.mp4", crf))
    assert result.found, result
    assert result.score > 2 * marker.threshold
    assert result.frames_checked == len(frames)
    if crf == 23:
        assert result.payload_valid and result.version == 1
    # an unmarked original through the same encoder is not flagged
    unmarked = marker.detect_video(encode_h264(frames, tmp_path / "plain.mp4", crf))
    assert not unmarked.found and abs(unmarked.score) < marker.threshold


def test_other_key_does_not_detect(tmp_path, marker):
    frames = clip_frames("clip07_edtalk_mouth_source_muxed.mkv", seconds=1.0)
    video = encode_h264([marker.embed(f) for f in frames], tmp_path / "marked.mp4", 23)
    assert marker.detect_video(video).found
    assert not Watermarker(key="someone-else").detect_video(video).found


def test_unmarked_scores_follow_the_null_distribution():
    """Over many keys, an unmarked real clip scores like N(0, 1): the threshold's false-positive bound holds."""
    frames = clip_frames("clip04_retalking_face2_man_map.mp4", seconds=0.6)
    scores = []
    reference = Watermarker(key="key-0")
    luma = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    total = sum(reference.band_coefficients(y) for y in luma)  # the band does not depend on the key
    for i in range(150):
        scores.append(Watermarker(key=f"key-{i}").result_from_coefficients(total, len(luma)).score)
    scores = np.array(scores)
    assert abs(scores.mean()) < 0.35 and 0.75 < scores.std() < 1.3
    assert np.abs(scores).max() < 5


def test_strength_option():
    with pytest.raises(ValueError, match="psnr_db"):
        Watermarker(psnr_db=5)
    assert Watermarker(psnr_db=36).strength == pytest.approx(2 * Watermarker(psnr_db=42).strength, rel=0.01)


# --------------------------------------------------------------------------------------------------------------
# metadata and `talkface detect`
# --------------------------------------------------------------------------------------------------------------
def test_generation_metadata_round_trip(tmp_path):
    tags = generation_metadata("wav2lip")
    assert set(tags) == {"comment", "description"}
    assert all("talkface" in v and "wav2lip" in v for v in tags.values())
    frames = clip_frames("clip07_edtalk_mouth_source_muxed.mkv", seconds=0.2)
    video = encode_h264(frames, tmp_path / "tagged.mp4", 23, metadata=tags)
    read = read_metadata(video)
    assert read["comment"] == tags["comment"] and read["description"] == tags["description"]
    assert talkface_metadata(read) == tags
    assert talkface_metadata(read_metadata(data_file("clip07_edtalk_mouth_source_muxed.mkv"))) == {}
    with pytest.raises(MediaError, match="not found"):
        read_metadata(tmp_path / "missing.mp4")


def test_detect_command_exit_codes(tmp_path, marker, capsys):
    from talkface.media import VideoWriter

    frames = clip_frames("clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", seconds=1.0)
    generated = tmp_path / "generated.mp4"
    tags = generation_metadata("talkface-tiny")
    with VideoWriter(generated, fps=25, width=512, height=512, metadata=tags) as writer:
        for i, frame in enumerate(frames):
            writer.write(marker.embed(frame, i))
    # a user's re-encode at crf 28 that drops the metadata (-map_metadata -1 in ffmpeg terms)
    reencoded = encode_h264([marker.embed(f) for f in frames], tmp_path / "reencoded.mp4", 28)
    metadata_only = encode_h264(frames, tmp_path / "metadata_only.mp4", 23, metadata=generation_metadata("x"))

    assert main(["detect", str(generated), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["found"] and report["watermark"]["found"] and report["watermark"]["payload_valid"]
    assert report["metadata"]["talkface"]["comment"].startswith("AI-generated with talkface")

    assert main(["detect", str(reencoded)]) == 0
    out = capsys.readouterr().out
    assert "watermark: found" in out and "no talkface tags" in out

    assert main(["detect", str(data_file("clip05_retalking_face5_woman_glasses.mp4"))]) == 1
    assert "no talkface mark found" in capsys.readouterr().out

    assert main(["detect", str(metadata_only)]) == 0  # the tags alone count ...
    assert main(["detect", str(metadata_only), "--watermark-only"]) == 1  # ... unless the watermark is required
    capsys.readouterr()

    assert main(["detect", str(tmp_path / "missing.mp4")]) == 2
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    assert main(["detect", str(not_a_video)]) == 2
    assert main(["detect", str(generated), "--max-frames", "-1"]) == 2
    err = capsys.readouterr().err
    assert "file not found" in err and "--max-frames" in err
