"""CPU decoder: PyAV (FFmpeg) demux + decode, in batches: the decoder's own planes where the encoder writes its
format (``planar``), else RGB."""
from __future__ import annotations

import heapq
from collections import deque
from fractions import Fraction
from typing import Iterator

import av
import numpy as np

from ..media.container import video_stream
from ..planar import Planar
from .batch import Batch

# Containers that store no presentation times: FFmpeg gives each packet its decode slot (plus the
# codec's delay), so frames that B-frames reorder (DivX/Xvid packed B-frames above all) come out
# of the decoder in presentation order but with their slots' times permuted (1, 3, 2, 5, 4, ...).
SLOT_TIMED = {"avi"}
REORDER = 8  # frames held to sort those times back; MPEG-4 ASP reorders by at most a few


def bit_depth(pix_fmt: str | None) -> int:
    """Bits per component of a pixel format (8 when unknown)."""
    try:
        return max(c.bits for c in av.video.format.VideoFormat(pix_fmt).components)
    except (TypeError, ValueError):
        return 8


class PyAVDecoder:
    """Streams batches from an open container; memory is one batch, whatever the length.

    A packet the decoder rejects is counted in ``errors`` and skipped: frames that do not
    decode are never written, and every frame that is written has been through detection.
    Video deeper than 8 bits (10-bit HEVC from phones) is kept deep: frames are uint16 RGB
    (``rgb48le``), so the encoder can write 10 bits again. A frame whose size differs from the
    first frame's (a resolution switch, or a damaged header) is scaled to the first size, as
    ffmpeg does: the output has one size, and detection runs on the frame as it is written.

    ``planar``: the pixel formats that may be kept as decoded (``planar.FORMATS`` the encoder writes too): where
    the first frame's is one, frames come as planar rows (``layout``) instead of RGB.
    """

    name = "pyav"

    def __init__(self, container: av.container.InputContainer, batch_size: int, planar=()) -> None:
        self.container = container
        self.stream = video_stream(container)
        self.stream.thread_type = "AUTO"
        self.batch_size = batch_size
        self.errors = 0
        self.deep = bit_depth(self.stream.codec_context.pix_fmt) > 8 and container.format.name != "image2"
        self.rgb_format = "rgb48le" if self.deep else "rgb24"
        self.rotation = 0          # display rotation of the first frame, degrees counter-clockwise
        self.colorspace = None     # (colorspace, color_range) of the first frame, for the encoder
        self.planar = planar
        self.layout: Planar | None = None  # the frames' planar layout, set by the first frame (None: RGB)
        tb = self.stream.time_base or Fraction(1, 90000)
        self.time_base = tb
        rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(25)
        self._step = max(1, round(1 / (rate * tb))) if tb else 1
        self.reorder = container.format.name in SLOT_TIMED
        self.read_error: str | None = None          # why reading stopped early, if it did
        self.size: tuple[int, int] | None = None    # (width, height) of the first frame: the output's
        self.resized = 0                             # frames scaled to that size
        self.first_resize: tuple[int, tuple[int, int]] | None = None  # (frame index, its size)

    def frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames; a packet the decoder rejects is counted and skipped. A read error (a
        damaged chunk the demuxer cannot get past) ends the video there, as the end of a cut file
        does: the frames still in the decoder are flushed and ``read_error`` says what happened."""
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                self.read_error = exc.strerror or type(exc).__name__
                packet = None
            try:
                yield from self.stream.codec_context.decode(packet)
            except av.error.FFmpegError:
                self.errors += 1
            if packet is None:
                return

    def timed(self) -> Iterator[tuple[av.VideoFrame, int]]:
        """(frame, presentation time) in presentation order, which is the decoder's order.

        A frame without a time gets the previous one's plus a frame period. In SLOT_TIMED
        containers the times of a few consecutive frames are sorted: the decoder's order is right,
        the times attached are not. A frame that fails to decode takes its own time with it, so
        nothing drifts.
        """
        last = None
        held: deque[av.VideoFrame] = deque()
        times: list[int] = []
        for frame in self.frames():
            t = frame.pts if frame.pts is not None else (0 if last is None else last + self._step)
            last = t
            if not self.reorder:
                yield frame, t
                continue
            held.append(frame)
            heapq.heappush(times, t)
            if len(held) > REORDER:
                yield held.popleft(), heapq.heappop(times)
        while held:
            yield held.popleft(), heapq.heappop(times)

    def _scale(self, frame: av.VideoFrame, index: int) -> dict:
        """How to bring the frame to the first frame's size (nothing where it has it)."""
        size = (frame.width, frame.height)
        if self.size is None:
            self.size = size
        if size == self.size:
            return {}
        self.resized += 1
        if self.first_resize is None:
            self.first_resize = (index, size)
        return {"width": self.size[0], "height": self.size[1], "interpolation": "BILINEAR"}

    def _rgb(self, frame: av.VideoFrame, index: int) -> np.ndarray:
        """The frame as RGB, at the first frame's size."""
        return frame.to_ndarray(format=self.rgb_format, src_colorspace=self.colorspace[0],
                                src_color_range=self.colorspace[1], **self._scale(frame, index))

    def _read(self, frame: av.VideoFrame, index: int, out: np.ndarray) -> None:
        """The frame's planes into its row ``out``; one of another size or format is brought to the first's."""
        scale = self._scale(frame, index)
        if scale or frame.format.name != self.layout.pix_fmt:
            frame = frame.reformat(format=self.layout.pix_fmt, **scale)
        self.layout.read(frame, out)

    def __iter__(self) -> Iterator[Batch]:
        # Each frame is converted straight into the batch's own array: a list of frames stacked at the end
        # kept a second copy of every batch alive while the batch was worked on (the generator holds it).
        buf: np.ndarray | None = None
        n = 0
        pts: list[int] = []
        start = 0
        for frame, t in self.timed():
            if self.colorspace is None:
                self.colorspace = (frame.colorspace, frame.color_range)
                self.rotation = int(frame.rotation or 0)
                self.layout = Planar.of(frame, self.planar) if self.planar else None
            if self.layout is not None:
                if buf is None:
                    buf = self.layout.empty(self.batch_size)
                self._read(frame, start + n, buf[n])
            else:
                rgb = self._rgb(frame, start + n)
                if buf is None:
                    buf = np.empty((self.batch_size, *rgb.shape), rgb.dtype)
                buf[n] = rgb
            pts.append(t)
            n += 1
            if n == self.batch_size:
                batch, buf, pts, n = Batch(buf, pts, self.time_base, start), None, [], 0
                start += self.batch_size
                yield batch
        if n:
            yield Batch(buf[:n], pts, self.time_base, start)
