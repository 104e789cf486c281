"""Pixel-format conversions of whole frames (numpy in, numpy out), for the video writer's hot path."""

import numpy as np


def rgb_to_yuv420p(frame_rgb: np.ndarray) -> np.ndarray:
    """An RGB uint8 (H, W, 3) frame (even H and W) as yuv420p planes, one (H * 3 / 2, W) uint8 array (I420).

    OpenCV's conversion (BT.601, limited range, as ffmpeg's swscale does for H.264): 1.9 ms at 1080p against
    swscale's 8-11 ms. Against swscale's planes on real frames: luma within 1 grey level, chroma mean 0.02-0.10,
    max 2-10 (OpenCV takes each 2x2 block's chroma at its top-left pixel, swscale filters it a little); PSNR of a
    round trip 46.1 against 45.7 dB on clip01. Colour detail finer than 2 pixels (noise) aliases more than with
    swscale's filter; tests/media/test_media.py checks these bounds."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame_rgb), cv2.COLOR_RGB2YUV_I420)
