"""CPU encoder: libx264, libx265, libvpx-vp9 or SVT-AV1 through PyAV."""
from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

from ..config import PRESETS

SOFTWARE_CODECS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}
# x264's preset names, mapped to VP9's cpu-used (realtime up to "faster": ~30 fps at 720p on 2 cores;
# "good" quality below that is several times slower) and SVT-AV1's preset (8: ~70 fps at 720p, 2 cores).
VP9_CPU_USED = dict(zip(PRESETS, (8, 8, 7, 6, 5, 4, 3, 2, 1)))
SVT_PRESET = dict(zip(PRESETS, (12, 10, 8, 7, 6, 5, 4, 3, 2)))


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


# Containers that store no presentation times play frames in the order they are stored: their encoder must
# not reorder frames (no B-frames; SVT-AV1's and libvpx's packets are in presentation order already). AVI also
# stores a frame rate, not times: one chunk per frame period, an empty chunk for a frame period without a frame.
STORED_ORDER = {"avi", "asf"}
FRAME_GRID = {"avi"}
NO_REORDER = {"libx264": ("bf", "0"), "h264_nvenc": ("bf", "0"), "hevc_nvenc": ("bf", "0"),
              "libx265": ("x265-params", "bframes=0")}
# Where each encoder takes HDR10's static metadata: x264 and x265 write it as SEI, SVT-AV1 as metadata OBUs.
HDR_PARAMS = {"libx264": "x264-params", "libx265": "x265-params", "libsvtav1": "svtav1-params"}


def add_params(options: dict[str, str], key: str, value: str) -> dict[str, str]:
    """``options`` with ``value`` added to a ``key=value:key=value`` list such as x265-params."""
    return {**options, key: f"{options[key]}:{value}" if options.get(key) else value}


def hdr_params(codec: str, hdr) -> str:
    """``hdr`` (media.container.Hdr) in ``codec``'s parameters: x264 and x265 count chromaticities in
    0.00002 and luminance in 0.0001 cd/m2 steps; SVT-AV1 takes the numbers themselves."""
    params = []
    if hdr.mastering is not None:
        rx, ry, gx, gy, bx, by, wx, wy, low, high = hdr.mastering
        xy, lum = (gx, gy, bx, by, rx, ry, wx, wy), (high, low)
        if codec == "libsvtav1":
            xy, lum = [f"{float(v):.5f}" for v in xy], [f"{float(v):.4f}" for v in lum]
        else:
            xy, lum = [round(v * 50000) for v in xy], [round(v * 10000) for v in lum]
        key = "master-display" if codec == "libx265" else "mastering-display"
        params.append(f"{key}=G({xy[0]},{xy[1]})B({xy[2]},{xy[3]})R({xy[4]},{xy[5]})WP({xy[6]},{xy[7]})"
                      f"L({lum[0]},{lum[1]})")
    if hdr.light is not None:
        key = {"libx265": "max-cll", "libx264": "cll"}.get(codec, "content-light")
        params.append(f"{key}={hdr.light[0]},{hdr.light[1]}")
    return ":".join(params)


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


def choose_codec(asked: str | None, ext: str, holds: frozenset[str] | None, deep: bool,
                 hdr: bool = False) -> tuple[str, str | None]:
    """The codec to write into a ``ext`` file (whose muxer holds ``holds``; None: not a container trt_anon
    writes), and a note when it is not the one a user would assume. Any mismatch is a one-line error,
    before any work.

    ``asked`` None: H.264, which plays everywhere; for 10-bit (``deep``) or HDR input HEVC, since H.264
    High 10 plays almost nowhere and HEVC Main 10 is what phones record and TVs, phones and browsers play
    HDR from (AV1 where the container cannot hold HEVC: WebM, as PyAV's libvpx is 8-bit only); VP9 where
    the container holds neither H.264 nor HEVC."""
    from ..errors import ConfigError, OutputError

    if holds is None:
        raise OutputError(f"{ext or 'a name without extension'} is not a video container trt_anon writes; "
                          "write .mp4, .mkv, .mov or .webm")

    def keeps_depth(codec: str) -> bool:
        return not deep or ten_bit(SOFTWARE_CODECS[codec])

    if asked is not None:
        if asked not in holds:
            others = [c for c in SOFTWARE_CODECS if c in holds]
            raise OutputError(f"{ext} cannot hold {asked} video; use --codec {' or '.join(others) or '...'} with "
                              f"{ext}, or another container (.mkv holds all four)")
        if SOFTWARE_CODECS[asked] not in av.codecs_available:
            raise ConfigError(f"this PyAV's FFmpeg has no {SOFTWARE_CODECS[asked]} encoder for --codec {asked}")
        if not keeps_depth(asked):
            raise ConfigError(f"the input is 10-bit but {SOFTWARE_CODECS[asked]} here writes 8-bit only; "
                              "use --codec av1, hevc or h264 to keep 10 bits")
        return asked, None
    order = ("hevc", "av1", "h264", "vp9") if deep or hdr else tuple(SOFTWARE_CODECS)
    for codec in order:
        name = SOFTWARE_CODECS[codec]
        if codec not in holds or not keeps_depth(codec) or name not in av.codecs_available:
            continue
        if codec in ("hevc", "av1") and (deep or hdr):
            what = " ".join(["10-bit"] * deep + ["HDR"] * hdr)
            tag = ", tagged hvc1 for Apple players" if codec == "hevc" and ext in (".mp4", ".m4v", ".mov") else ""
            written = f"HEVC {'Main 10' if deep else 'Main'} ({name}{tag})" if codec == "hevc" else f"AV1 ({name})"
            why = "H.264 High 10 plays almost nowhere (no browser, few phones)" if deep else \
                "few players show HDR from H.264"
            return codec, (f"{what} input: video written as {written}, which phones, TVs and browsers play; "
                           f"{why}; --codec h264 writes it anyway")
        return codec, None if codec == "h264" else f"{ext} cannot hold H.264: video written as {codec} ({name})"
    raise OutputError(f"trt_anon does not write {ext} files: they hold none of the video codecs it writes "
                      f"({', '.join(SOFTWARE_CODECS)}); write .mp4, .mkv, .mov or .webm")


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
        if output.format.name in STORED_ORDER and codec in NO_REORDER:
            options = add_params(options, *NO_REORDER[codec])
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
        key = HDR_PARAMS.get(cc.name)
        if key is None:
            return (f"HDR mastering display and light level metadata not written: {cc.name} cannot carry them "
                    "(players may show the video too bright or too dark); --codec hevc or av1 keeps them")
        cc.options = add_params(cc.options, key, hdr_params(cc.name, hdr))
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
        for rgb, t in zip(frames, self._times(pts)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb),
                                               format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
            frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self.colorspace[0],
                                   dst_color_range=self.colorspace[1])
            frame.pts, frame.time_base = t, self.frame_time_base
            self._mux(self.stream.encode(frame))

    def _mux(self, packets: list[av.Packet]) -> None:
        for p in packets:
            self.output.mux(p)
            if p.dts is not None:
                self.packet_time = float(p.dts * p.time_base)

    def close(self) -> None:
        self._mux(self.stream.encode(None))
