"""CPU decoder: PyAV (FFmpeg) demux + decode, converted to RGB in batches."""
from __future__ import annotations

from fractions import Fraction
from typing import Iterator

import av
import numpy as np

from ..media.container import video_stream
from .batch import Batch


def bit_depth(pix_fmt: str | None) -> int:
    """Bits per component of a pixel format (8 when unknown)."""
    try:
        return max(c.bits for c in av.video.format.VideoFormat(pix_fmt).components)
    except (TypeError, ValueError):
        return 8


def alpha_plane(frame: av.VideoFrame) -> np.ndarray | None:
    """The frame's alpha (H, W) uint8 if its format has one (RGBA, YA, YUVA, a palette with
    transparency), else None. Only the colour is mosaicked; the alpha is written back as it was."""
    fmt = frame.format
    if len(fmt.components) not in (2, 4) and not fmt.has_palette:
        return None
    alpha = frame.to_ndarray(format="rgba")[..., 3]
    return None if fmt.has_palette and alpha.min() == 255 else alpha


class PyAVDecoder:
    """Streams batches from an open container; memory is one batch, whatever the length.

    A packet the decoder rejects is counted in ``errors`` and skipped: frames that do not
    decode are never written, and every frame that is written has been through detection.
    Video deeper than 8 bits (10-bit HEVC from phones) is kept deep: frames are uint16 RGB
    (``rgb48le``), so the encoder can write 10 bits again.
    """

    name = "pyav"

    def __init__(self, container: av.container.InputContainer, batch_size: int) -> None:
        self.container = container
        self.stream = video_stream(container)
        self.stream.thread_type = "AUTO"
        self.batch_size = batch_size
        self.errors = 0
        self.deep = bit_depth(self.stream.codec_context.pix_fmt) > 8 and container.format.name != "image2"
        self.rgb_format = "rgb48le" if self.deep else "rgb24"
        self.rotation = 0          # display rotation of the first frame, degrees counter-clockwise
        self.colorspace = None     # (colorspace, color_range) of the first frame, for the encoder
        self.alpha = None          # a still image's alpha plane (H, W) uint8, for the encoder to put back
        fmt = container.format.name
        self.is_image = fmt == "image2" or fmt.endswith("_pipe")
        tb = self.stream.time_base or Fraction(1, 90000)
        self.time_base = tb
        rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(25)
        self._step = max(1, round(1 / (rate * tb))) if tb else 1

    def frames(self) -> Iterator[av.VideoFrame]:
        for packet in self.container.demux(self.stream):
            try:
                yield from packet.decode()
            except av.error.InvalidDataError:
                self.errors += 1
            except av.error.FFmpegError:
                self.errors += 1

    def __iter__(self) -> Iterator[Batch]:
        frames: list[np.ndarray] = []
        pts: list[int] = []
        start = 0
        last = None
        for frame in self.frames():
            if self.colorspace is None:
                self.colorspace = (frame.colorspace, frame.color_range)
                self.rotation = int(frame.rotation or 0)
                if self.is_image:
                    self.alpha = alpha_plane(frame)
            frames.append(frame.to_ndarray(format=self.rgb_format, src_colorspace=self.colorspace[0],
                                           src_color_range=self.colorspace[1]))
            t = frame.pts if frame.pts is not None else (0 if last is None else last + self._step)
            pts.append(t)
            last = t
            if len(frames) == self.batch_size:
                yield Batch(np.stack(frames), pts, self.time_base, start)
                start += len(frames)
                frames, pts = [], []
        if frames:
            yield Batch(np.stack(frames), pts, self.time_base, start)
