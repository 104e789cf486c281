"""The writer's RGB -> yuv420p conversion (OpenCV) against ffmpeg's swscale, which the writer used before."""

import av
import numpy as np

from talkface import media
from talkface.utils.pixels import rgb_to_yuv420p
from tests.utils import data_file


def _swscale_planes(frame_rgb):
    return av.VideoFrame.from_ndarray(frame_rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()


def _psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_planes_match_swscale_on_real_frames():
    frames = media.read_frames(data_file("clip01_sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"), max_frames=40)
    for frame in frames[::13]:
        ours, theirs = rgb_to_yuv420p(frame).astype(int), _swscale_planes(frame).astype(int)
        assert ours.shape == theirs.shape == (frame.shape[0] * 3 // 2, frame.shape[1])
        height = frame.shape[0]
        luma, chroma = np.abs(ours[:height] - theirs[:height]), np.abs(ours[height:] - theirs[height:])
        assert luma.max() <= 1 and luma.mean() < 0.05  # the same BT.601 limited-range matrix
        assert chroma.max() <= 12 and chroma.mean() < 0.15  # chroma siting: top-left pixel vs a small filter
        # decoded back (as any player does) the picture is as close to the source as swscale's
        back = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p").to_ndarray(format="rgb24")
        before = av.VideoFrame.from_ndarray(_swscale_planes(frame), format="yuv420p").to_ndarray(format="rgb24")
        assert _psnr(back, frame) >= _psnr(before, frame) - 0.5


def test_flat_colours_and_the_range():
    # a flat colour has no siting question: every plane matches swscale's to one grey level
    for colour in ((0, 0, 0), (255, 255, 255), (200, 30, 90), (12, 240, 128)):
        frame = np.zeros((16, 24, 3), np.uint8)
        frame[:] = colour
        ours, theirs = rgb_to_yuv420p(frame).astype(int), _swscale_planes(frame).astype(int)
        assert np.abs(ours - theirs).max() <= 1, colour
    planes = rgb_to_yuv420p(np.zeros((4, 4, 3), np.uint8))
    assert planes[:4].max() == 16 and (planes[4:] == 128).all()  # limited range: black is Y 16, grey chroma 128
