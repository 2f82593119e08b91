"""CPU encoder: libx264, libx265, libvpx-vp9 or SVT-AV1 through PyAV."""
from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

SOFTWARE_CODECS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}
# x264's preset names, mapped to VP9's cpu-used (realtime up to "faster": ~30 fps at 720p on 2 cores;
# "good" quality below that is several times slower) and SVT-AV1's preset (8: ~70 fps at 720p, 2 cores).
SPEEDS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
VP9_CPU_USED = dict(zip(SPEEDS, (8, 8, 7, 6, 5, 4, 3, 2, 1)))
SVT_PRESET = dict(zip(SPEEDS, (12, 10, 8, 7, 6, 5, 4, 3, 2)))


def codec_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    """Encoder options for one quality (crf, the codec's own scale) and speed (x264's preset names)."""
    if codec in ("libx264", "libx265"):
        options = {"crf": str(crf), "preset": preset}
        if codec == "libx265":
            options["x265-params"] = "log-level=error"
        return options
    if codec == "libvpx-vp9":
        cpu = VP9_CPU_USED[preset]
        return {"crf": str(crf), "b": "0", "deadline": "realtime" if cpu >= 6 else "good",
                "cpu-used": str(cpu), "row-mt": "1"}
    if codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration to stderr otherwise
        return {"crf": str(crf), "preset": str(SVT_PRESET[preset])}
    return {}


def pixel_format(codec: str, width: int, height: int, deep: bool) -> str:
    """yuv420p where both sides are even (what every player expects); yuv444p for odd sizes where the
    codec has it (libx264 refuses odd 4:2:0), so the resolution never changes; 10-bit for deep input."""
    odd = width % 2 or height % 2
    fmt = "yuv444p" if odd and codec != "libsvtav1" else "yuv420p"  # SVT-AV1 is 4:2:0 only (odd sizes fine)
    return fmt + "10le" if deep else fmt


def ten_bit(codec: str) -> bool:
    """Whether this FFmpeg's ``codec`` writes 10-bit (PyAV's libvpx is built 8-bit only)."""
    if codec not in av.codecs_available:
        return False
    return "yuv420p10le" in {f.name for f in av.Codec(codec, "w").video_formats or ()}


def choose_codec(asked: str | None, ext: str, holds: frozenset[str] | None, deep: bool) -> tuple[str, str | None]:
    """The codec to write into a ``ext`` file (whose muxer holds ``holds``; None: unknown), and a note
    when it is not the one a user would assume. Any mismatch is a one-line error, before any work.

    ``None`` asks for the first that fits of h264, hevc, vp9, av1 (WebM: VP9, or AV1 for 10-bit input,
    since PyAV's libvpx is 8-bit only)."""
    from ..errors import ConfigError, OutputError

    def fits(codec: str) -> bool:
        return holds is None or codec in holds

    def keeps_depth(codec: str) -> bool:
        return not deep or ten_bit(SOFTWARE_CODECS[codec])

    if asked is not None:
        if not fits(asked):
            others = [c for c in SOFTWARE_CODECS if fits(c)]
            raise OutputError(f"{ext} cannot hold {asked} video; use --codec {' or '.join(others) or '...'} with "
                              f"{ext}, or another container (.mkv holds all four)")
        if SOFTWARE_CODECS[asked] not in av.codecs_available:
            raise ConfigError(f"this PyAV's FFmpeg has no {SOFTWARE_CODECS[asked]} encoder for --codec {asked}")
        if not keeps_depth(asked):
            raise ConfigError(f"the input is 10-bit but {SOFTWARE_CODECS[asked]} here writes 8-bit only; "
                              "use --codec av1, hevc or h264 to keep 10 bits")
        return asked, None
    for codec in SOFTWARE_CODECS:
        if fits(codec) and keeps_depth(codec) and SOFTWARE_CODECS[codec] in av.codecs_available:
            name = SOFTWARE_CODECS[codec]
            note = None if codec == "h264" else f"{ext} cannot hold H.264: video written as {codec} ({name})"
            return codec, note
    raise OutputError(f"{ext} cannot hold any video codec trt_anon writes ({', '.join(SOFTWARE_CODECS)})")


class PyAVEncoder:
    """Encodes frames with the input's own timestamps, resolution and colour tags.

    yuv420p where both sides are even (what every player expects), yuv444p otherwise, so the
    resolution never changes; 10-bit variants for input deeper than 8 bits. The RGB<->YUV matrix
    and range are the decoder's, so the background round-trips to within codec rounding.
    """

    def __init__(self, output: av.container.OutputContainer, width: int, height: int, rate: Fraction,
                 time_base: Fraction, colorspace: tuple[int, int] | None, crf: int, preset: str,
                 codec: str = "libx264", deep: bool = False) -> None:
        self.output = output
        self.colorspace = colorspace or (2, 0)
        self.time_base = time_base
        self.pix_fmt = pixel_format(codec, width, height, deep)  # 10-bit in, 10-bit out
        options = codec_options(codec, crf, preset)
        self.name = codec
        self.stream = output.add_stream(codec, rate=rate, options=options)
        if codec in ("libx265", "hevc_nvenc") and output.format.name in ("mp4", "mov"):
            self.stream.codec_context.codec_tag = "hvc1"  # what Apple's players require of HEVC in MP4/MOV
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, self.pix_fmt
        self.stream.time_base = time_base
        self.stream.codec_context.time_base = time_base
        self.stream.thread_type = "AUTO"
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
