"""CPU encoder: any software encoder of the codec table (codecs.py: libx264, libx265, libvpx-vp9, SVT-AV1)
through PyAV."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from .codecs import add_params, by_encoder, codec_options, hdr_params, no_reorder, pixel_format

# Containers that store no presentation times play frames in the order they are stored: their encoder must
# not reorder frames (codecs.no_reorder). AVI also stores a frame rate, not times: one chunk per frame period,
# an empty chunk for a frame period without a frame.
STORED_ORDER = {"avi", "asf"}
FRAME_GRID = {"avi"}


class PyAVEncoder:
    """Encodes frames with the input's own timestamps, resolution and colour tags.

    Planar frames (``layout``, the decoder's own format) are written in that format as they are: no conversion
    at all. RGB frames: yuv420p where both sides are even (what every player expects), yuv444p otherwise, so the
    resolution never changes; 10-bit variants for input deeper than 8 bits; the RGB->YUV matrix and range are
    the decoder's, so the background round-trips to within codec rounding.
    """

    def __init__(self, output: av.container.OutputContainer, width: int, height: int, rate: Fraction,
                 time_base: Fraction, colorspace: tuple[int, int] | None, crf: int, preset: str,
                 codec: str = "libx264", deep: bool = False, layout=None) -> None:
        self.output = output
        self.layout = layout
        self.colorspace = colorspace or (2, 0)
        self.time_base = time_base
        self.pix_fmt = layout.pix_fmt if layout else pixel_format(codec, width, height, deep)  # 10-bit in, 10-bit out
        options = codec_options(codec, crf, preset)
        if output.format.name in STORED_ORDER and no_reorder(codec):
            options = add_params(options, *no_reorder(codec))
        self.name = codec
        self.stream = output.add_stream(codec, rate=rate, options=options)
        tag = getattr(by_encoder(codec), "apple_tag", None)
        if tag and output.format.name in ("mp4", "mov"):
            self.stream.codec_context.codec_tag = tag  # what Apple's players require of HEVC in MP4/MOV
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, self.pix_fmt
        self.stream.time_base = time_base
        self.stream.codec_context.time_base = time_base
        self.stream.thread_type = "AUTO"
        cc = self.stream.codec_context
        cc.colorspace, cc.color_range = self.colorspace
        self.last_pts: int | None = None
        self.fixed_pts = 0
        self.packet_time = 0.0  # time (s) of the last packet written, for audio interleaving
        self.rate = rate
        self.grid = output.format.name in FRAME_GRID  # AVI: frames on a frame-rate grid
        self.frame_time_base = time_base  # the time base of the frames handed to the encoder
        self.last_slot: int | None = None
        self.moved = 0                    # frames whose time the grid changed, and by how much at most
        self.moved_most = Fraction(0)

    def set_colour(self, primaries: int, trc: int) -> None:
        self.stream.codec_context.color_primaries = primaries
        self.stream.codec_context.color_trc = trc

    def carry_hdr(self, hdr) -> str | None:
        """Have the encoder write the input's HDR10 metadata (``media.container.Hdr``: mastering display,
        MaxCLL/MaxFALL) into the bitstream, where every decoder finds it; a warning where it cannot."""
        if not hdr.static:
            return None
        cc = self.stream.codec_context
        codec = by_encoder(cc.name)
        if codec is None or codec.hdr_option is None or cc.name != codec.encoder:
            return (f"HDR mastering display and light level metadata not written: {cc.name} cannot carry them "
                    "(players may show the video too bright or too dark); --codec hevc or av1 keeps them")
        cc.options = add_params(cc.options, codec.hdr_option, hdr_params(codec, hdr))
        return None

    def _times(self, pts: list[int]) -> list[int]:
        """The frames' times for the encoder: the input's (``_fix``), or on AVI's frame grid, each frame at
        its nearest free slot (an empty slot plays as the frame before: variable frame rate survives)."""
        ticks = self._fix(pts)
        if not self.grid:
            return ticks
        if self.last_slot is None:
            self._settle_grid(ticks)
        out = []
        for t in ticks:
            exact = t * self.time_base / self.frame_time_base
            slot = round(exact) if self.last_slot is None else max(round(exact), self.last_slot + 1)
            if slot != exact:
                self.moved += 1
                self.moved_most = max(self.moved_most, abs(slot - exact) * self.frame_time_base)
            self.last_slot = slot
            out.append(slot)
        return out

    def _settle_grid(self, ticks: list[int]) -> None:
        """AVI's frame period: the commonest step between the first frames' times (exact for constant frame
        rate, whatever the header's average says), else one over the nominal rate."""
        nominal = 1 / Fraction(self.rate)
        steps = [b - a for a, b in zip(ticks, ticks[1:]) if b > a]
        period = max(set(steps), key=steps.count) * self.time_base if steps else nominal
        if period < nominal / 2:  # repeated times moved a tick apart: no frame period, empty chunks by the thousand
            period = nominal
        self.frame_time_base = self.stream.time_base = self.stream.codec_context.time_base = period

    def grid_note(self) -> str | None:
        """What the AVI frame grid changed, for the report."""
        if not self.moved:
            return None
        fps = 1 / self.frame_time_base
        return (f"{self.moved} frame time(s) moved to AVI's {float(fps):.3g} fps frame rate grid (by up to "
                f"{float(self.moved_most) * 1000:.1f} ms): AVI stores a frame rate, not times; .mkv or .mp4 keep "
                "them exact")

    def _fix(self, pts: list[int]) -> list[int]:
        """Encoders need strictly increasing timestamps: move a repeated one forward a tick, and count it."""
        out = []
        for t in pts:
            if self.last_pts is not None and t <= self.last_pts:
                t = self.last_pts + 1
                self.fixed_pts += 1
            self.last_pts = t
            out.append(t)
        return out

    def encode(self, frames: np.ndarray, pts: list[int]) -> None:
        for pixels, t in zip(frames, self._times(pts)):
            frame = self.layout.frame(pixels) if self.layout else self._from_rgb(pixels)
            frame.pts, frame.time_base = t, self.frame_time_base
            self._mux(self.stream.encode(frame))

    def _from_rgb(self, rgb: np.ndarray) -> av.VideoFrame:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb),
                                           format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
        return frame.reformat(format=self.pix_fmt, dst_colorspace=self.colorspace[0],
                              dst_color_range=self.colorspace[1])

    def _mux(self, packets: list[av.Packet]) -> None:
        for p in packets:
            self.output.mux(p)
            if p.dts is not None:
                self.packet_time = float(p.dts * p.time_base)

    def close(self) -> None:
        self._mux(self.stream.encode(None))
