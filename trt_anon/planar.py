"""Frames in the decoder's own pixels: planar YUV, one flat row of samples per frame.

A frame is its planes (Y at full size, then U and V, subsampled on 4:2:0 and 4:2:2) one after the other in one
row of a batch's (N, L) array, as FFmpeg lays out yuv420p without padding. Batches of rows stack, slice and wait
for back-fill like RGB ones at half the bytes (4:2:0: 1.5 bytes a pixel against RGB's 3), and the encoder gets
the decoder's samples back: every pixel outside a redacted cell is written as decoded, bit for bit, where an RGB
frame between decoder and encoder went through two colour conversions. RGB is made only for what is looked at:
the frames the detector looks at (straight to its input size) and a consenting person's face.
"""
from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

# The formats kept as decoded: (horizontal, vertical) chroma shift and bytes per sample. Others (NV12, packed
# RGB, JPEG's full-range yuvj*, odd-sized 4:2:0) are converted to RGB as before.
FORMATS = {
    "yuv420p": (1, 1, 1), "yuv422p": (1, 0, 1), "yuv444p": (0, 0, 1),
    "yuv420p10le": (1, 1, 2), "yuv422p10le": (1, 0, 2), "yuv444p10le": (0, 0, 2),
}


@dataclass(frozen=True)
class Planar:
    """How a stream's frames are laid out in their rows, and the colour matrix and range that make them RGB."""

    pix_fmt: str
    width: int
    height: int
    colorspace: int = 2    # FFmpeg's AVColorSpace of the frames (2: unspecified, read as BT.601)
    color_range: int = 0   # AVColorRange (0: unspecified, read as limited)

    @classmethod
    def of(cls, frame: av.VideoFrame, allowed=FORMATS) -> "Planar | None":
        """The layout for frames like ``frame``, or None where it is not kept planar (a format outside
        ``allowed``, or a subsampled one at an odd size, which the encoders cannot write)."""
        fmt = frame.format.name
        if fmt not in FORMATS or fmt not in allowed:
            return None
        sx, sy, _ = FORMATS[fmt]
        if frame.width % (1 << sx) or frame.height % (1 << sy):
            return None
        return cls(fmt, frame.width, frame.height, int(frame.colorspace), int(frame.color_range))

    @property
    def shift(self) -> tuple[int, int]:
        """(vertical, horizontal) chroma shift: U and V are (H >> sy, W >> sx)."""
        sx, sy, _ = FORMATS[self.pix_fmt]
        return sy, sx

    @property
    def shifts(self) -> list[tuple[int, int]]:
        """The (vertical, horizontal) shift of each of Y, U and V."""
        return [(0, 0), self.shift, self.shift]

    @property
    def dtype(self):
        return np.dtype("<u2") if FORMATS[self.pix_fmt][2] == 2 else np.dtype(np.uint8)

    @property
    def deep(self) -> bool:
        return self.dtype.itemsize == 2

    @property
    def rgb_format(self) -> str:
        """The RGB frames of this layout are: 16 bits a channel for deep video, as the RGB path decodes it."""
        return "rgb48le" if self.deep else "rgb24"

    @property
    def shapes(self) -> list[tuple[int, int]]:
        sy, sx = self.shift
        return [(self.height, self.width)] + [(self.height >> sy, self.width >> sx)] * 2

    @property
    def row(self) -> int:
        """Samples in a frame's row."""
        return sum(h * w for h, w in self.shapes)

    def empty(self, n: int) -> np.ndarray:
        return np.empty((n, self.row), self.dtype)

    def planes(self, frames: np.ndarray) -> list[np.ndarray]:
        """Views of a batch's (N, L) rows, or one frame's (L,) row: [Y, U, V], each (N, h, w) or (h, w)."""
        out, at = [], 0
        for h, w in self.shapes:
            out.append(frames[..., at:at + h * w].reshape(*frames.shape[:-1], h, w))
            at += h * w
        return out

    def read(self, frame: av.VideoFrame, out: np.ndarray) -> None:
        """Copy a decoded frame's planes into its row ``out`` (the decoder's line padding left out)."""
        for plane, dst in zip(frame.planes, self.planes(out)):
            h, w = dst.shape
            dst[...] = np.frombuffer(plane, self.dtype).reshape(h, plane.line_size // self.dtype.itemsize)[:, :w]

    def frame(self, row: np.ndarray) -> av.VideoFrame:
        """A row as a PyAV frame, its colour matrix and range tagged."""
        frame = av.VideoFrame(self.width, self.height, self.pix_fmt)
        for plane, src in zip(frame.planes, self.planes(row)):
            h, w = src.shape
            np.frombuffer(plane, self.dtype).reshape(h, plane.line_size // self.dtype.itemsize)[:, :w] = src
        frame.colorspace, frame.color_range = self.colorspace, self.color_range
        return frame

    def rgb(self, frames: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """(N, H, W, 3) RGB of a batch's rows, as the RGB path decodes it (uint16 for deep video); ``size``
        (height, width): scaled to it in the same step (area-averaged), for a detector's input."""
        h, w = size or (self.height, self.width)
        scale = {} if size is None else {"width": w, "height": h, "interpolation": "AREA"}
        out = np.empty((len(frames), h, w, 3), np.uint16 if self.deep else np.uint8)
        for i, row in enumerate(frames):
            out[i] = self.frame(row).to_ndarray(format=self.rgb_format, src_colorspace=self.colorspace,
                                                 src_color_range=self.color_range, **scale)
        return out

    def fill(self, color: tuple[int, int, int]) -> list[int]:
        """An 8-bit RGB colour as this layout's Y, U and V samples (the stream's matrix and range)."""
        frame = av.VideoFrame.from_ndarray(np.full((2, 2, 3), color, np.uint8), format="rgb24")
        frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self.colorspace, dst_color_range=self.color_range)
        return [int(np.frombuffer(p, self.dtype)[0]) for p in frame.planes]

    def view(self, row: np.ndarray) -> "RgbView":
        """One frame's row seen as an (H, W, 3) RGB array that converts only what is sliced from it."""
        return RgbView(self, row)


class RgbView:
    """A planar frame as RGB for code that crops it (a consenting person's face): ``shape`` and ``dtype`` of the
    RGB frame; ``view[y0:y1, x0:x1]`` converts that region alone (grown to whole chroma samples)."""

    def __init__(self, layout: Planar, row: np.ndarray) -> None:
        self.layout, self.row = layout, row
        self.shape = (layout.height, layout.width, 3)
        self.dtype = np.dtype(np.uint16 if layout.deep else np.uint8)

    def __getitem__(self, key) -> np.ndarray:
        rows, cols = key
        lay = self.layout
        (y0, y1, _), (x0, x1, _) = rows.indices(lay.height), cols.indices(lay.width)
        sy, sx = lay.shift
        ay0, ax0 = y0 >> sy << sy, x0 >> sx << sx
        ay1, ax1 = min(lay.height, -(-y1 >> sy) << sy), min(lay.width, -(-x1 >> sx) << sx)
        part = Planar(lay.pix_fmt, ax1 - ax0, ay1 - ay0, lay.colorspace, lay.color_range)
        out = part.empty(1)
        for dst, src, shift in zip(part.planes(out[0]), lay.planes(self.row), lay.shifts):
            dst[...] = src[ay0 >> shift[0]:ay1 >> shift[0], ax0 >> shift[1]:ax1 >> shift[1]]
        return part.rgb(out)[0, y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0]
