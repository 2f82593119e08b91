"""CPU encoder: libx264 or libx265 through PyAV (or an image codec for still images)."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

SOFTWARE_CODECS = {"h264": "libx264", "hevc": "libx265"}
IMAGE_CODECS = {".png": ("png", "rgb24"), ".jpg": ("mjpeg", "yuvj444p"), ".bmp": ("bmp", "bgr24"),
                ".tif": ("tiff", "rgb24"), ".tiff": ("tiff", "rgb24")}


class PyAVEncoder:
    """Encodes frames with the input's own timestamps, resolution and colour tags.

    yuv420p where both sides are even (what every player expects), yuv444p otherwise, so the
    resolution never changes; 10-bit variants for input deeper than 8 bits. The RGB<->YUV matrix
    and range are the decoder's, so the background round-trips to within codec rounding.
    """

    def __init__(self, output: av.container.OutputContainer, width: int, height: int, rate: Fraction,
                 time_base: Fraction, colorspace: tuple[int, int] | None, crf: int, preset: str,
                 image_ext: str | None = None, codec: str = "libx264", deep: bool = False) -> None:
        self.output = output
        self.colorspace = colorspace or (2, 0)
        self.time_base = time_base
        if image_ext:
            codec, self.pix_fmt = IMAGE_CODECS.get(image_ext, ("png", "rgb24"))
            options: dict[str, str] = {}
        else:
            self.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            if deep:  # 10-bit in, 10-bit out (libx264 builds both depths)
                self.pix_fmt += "10le"
            options = {"crf": str(crf), "preset": preset} if codec in SOFTWARE_CODECS.values() else {}
            if codec == "libx265":
                options["x265-params"] = "log-level=error"
        self.name = codec
        self.stream = output.add_stream(codec, rate=rate, options=options)
        if codec in ("libx265", "hevc_nvenc") and output.format.name in ("mp4", "mov"):
            self.stream.codec_context.codec_tag = "hvc1"  # what Apple's players require of HEVC in MP4/MOV
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, self.pix_fmt
        self.stream.time_base = time_base
        self.stream.codec_context.time_base = time_base
        self.stream.thread_type = "AUTO"
        if image_ext == ".jpg":
            self.stream.codec_context.qscale = 2
        cc = self.stream.codec_context
        cc.colorspace, cc.color_range = self.colorspace
        self.last_pts: int | None = None
        self.fixed_pts = 0
        self.packet_time = 0.0  # time (s) of the last packet written, for audio interleaving

    def set_colour(self, primaries: int, trc: int) -> None:
        self.stream.codec_context.color_primaries = primaries
        self.stream.codec_context.color_trc = trc

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
        for rgb, t in zip(frames, self._fix(pts)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb),
                                               format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
            frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self.colorspace[0],
                                   dst_color_range=self.colorspace[1])
            frame.pts, frame.time_base = t, self.time_base
            self._mux(self.stream.encode(frame))

    def _mux(self, packets: list[av.Packet]) -> None:
        for p in packets:
            self.output.mux(p)
            if p.dts is not None:
                self.packet_time = float(p.dts * p.time_base)

    def close(self) -> None:
        self._mux(self.stream.encode(None))
