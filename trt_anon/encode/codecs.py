"""The video codecs trt_anon writes, one entry each: its FFmpeg encoders, default quality, options, and how it
carries what players need (no reordering in AVI, HDR10 metadata, Apple's HEVC tag). To write another codec, add
an entry to ``CODECS``; ``choose_codec`` picks among them for a container.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import av

from ..errors import ConfigError, OutputError

# x264's preset names: the speed option for every codec (each entry maps them to its encoder's own scale).
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# VP9's cpu-used (realtime up to "faster": ~30 fps at 720p on 2 cores; "good" quality below that is several
# times slower) and SVT-AV1's preset (8: ~70 fps at 720p, 2 cores), by x264's preset names.
VP9_CPU_USED = dict(zip(PRESETS, (8, 8, 7, 6, 5, 4, 3, 2, 1)))
SVT_PRESET = dict(zip(PRESETS, (12, 10, 8, 7, 6, 5, 4, 3, 2)))
NO_B_FRAMES = ("bf", "0")


def _x264(crf: int, preset: str) -> dict[str, str]:
    return {"crf": str(crf), "preset": preset}


def _x265(crf: int, preset: str) -> dict[str, str]:
    return {"crf": str(crf), "preset": preset, "x265-params": "log-level=error"}


def _vp9(crf: int, preset: str) -> dict[str, str]:
    cpu = VP9_CPU_USED[preset]
    return {"crf": str(crf), "b": "0", "deadline": "realtime" if cpu >= 6 else "good", "cpu-used": str(cpu),
            "row-mt": "1"}


def _svt_av1(crf: int, preset: str) -> dict[str, str]:
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration to stderr otherwise
    return {"crf": str(crf), "preset": str(SVT_PRESET[preset])}


@dataclass(frozen=True)
class Codec:
    """One output codec. ``crf`` is the default quality on the encoder's own scale (0..``crf_max``)."""

    name: str                      # --codec, and the name FFmpeg's muxers list
    title: str                     # in messages: "HEVC"
    encoder: str                   # FFmpeg's software encoder
    nvenc: str | None              # FFmpeg's NVENC encoder (None: the GPU path encodes in software)
    crf: int
    crf_max: int
    options: Callable[[int, str], dict[str, str]]  # (crf, preset) -> the software encoder's options
    no_reorder: tuple[str, str] | None = None      # the option that stops B-frames (None: never reorders)
    hdr_option: str | None = None  # where the encoder takes HDR10's static metadata (None: it cannot)
    hdr_keys: tuple[str, str] = ("mastering-display", "content-light")  # mastering display, light level
    hdr_decimal: bool = False      # the metadata as numbers, not x264/x265's 0.00002 and 0.0001 cd/m2 steps
    odd_444: bool = True           # odd sizes as 4:4:4 (libx264 refuses odd 4:2:0)
    apple_tag: str | None = None   # the tag Apple's players require in MP4/MOV

    def encoders(self) -> tuple[str, ...]:
        return (self.encoder,) + ((self.nvenc,) if self.nvenc else ())


# Default crf: about the same picture as x264 at 18 (measured on the test clips: PSNR 37.0 x264, 37.1 VP9 at 30,
# 38.0 SVT-AV1 at 32, each at its fast preset). The order is the order of preference when nothing is asked.
CODECS: dict[str, Codec] = {c.name: c for c in (
    Codec("h264", "H.264", "libx264", "h264_nvenc", 18, 51, _x264, NO_B_FRAMES, "x264-params",
          ("mastering-display", "cll")),
    Codec("hevc", "HEVC", "libx265", "hevc_nvenc", 18, 51, _x265, ("x265-params", "bframes=0"), "x265-params",
          ("master-display", "max-cll"), apple_tag="hvc1"),
    Codec("vp9", "VP9", "libvpx-vp9", None, 30, 63, _vp9),  # SVT-AV1's and libvpx's packets are in order already
    Codec("av1", "AV1", "libsvtav1", "av1_nvenc", 32, 63, _svt_av1, hdr_option="svtav1-params", hdr_decimal=True,
          odd_444=False),  # SVT-AV1 is 4:2:0 only (odd sizes fine)
)}


def by_encoder(encoder: str) -> Codec | None:
    """The codec an FFmpeg encoder writes (``libx265``, ``hevc_nvenc``), if it is one of ours."""
    return next((c for c in CODECS.values() if encoder in c.encoders()), None)


def check_crf(codec: str | None, crf: int) -> None:
    """The crf range of a codec's own scale (any codec's, before the codec is known); raises ConfigError."""
    top = CODECS[codec].crf_max if codec else max(c.crf_max for c in CODECS.values())
    if not 0 <= crf <= top:
        raise ConfigError(f"crf must be between 0 and {top}{f' for {codec}' if codec else ''}, not {crf}")


def codec_options(encoder: str, crf: int, preset: str) -> dict[str, str]:
    """Software encoder options for one quality (crf, the codec's own scale) and speed (x264's preset names)."""
    codec = by_encoder(encoder)
    return codec.options(crf, preset) if codec and encoder == codec.encoder else {}


def no_reorder(encoder: str) -> tuple[str, str] | None:
    """The option that keeps ``encoder``'s packets in presentation order (NVENC: no B-frames), if it needs one."""
    codec = by_encoder(encoder)
    if codec is None or codec.no_reorder is None:
        return None
    return codec.no_reorder if encoder == codec.encoder else NO_B_FRAMES


def add_params(options: dict[str, str], key: str, value: str) -> dict[str, str]:
    """``options`` with ``value`` added to a ``key=value:key=value`` list such as x265-params."""
    return {**options, key: f"{options[key]}:{value}" if options.get(key) else value}


def hdr_params(codec: Codec, hdr) -> str:
    """``hdr`` (media.container.Hdr) in ``codec``'s parameters: x264 and x265 count chromaticities in
    0.00002 and luminance in 0.0001 cd/m2 steps; SVT-AV1 takes the numbers themselves."""
    params = []
    if hdr.mastering is not None:
        rx, ry, gx, gy, bx, by, wx, wy, low, high = hdr.mastering
        xy, lum = (gx, gy, bx, by, rx, ry, wx, wy), (high, low)
        if codec.hdr_decimal:
            xy, lum = [f"{float(v):.5f}" for v in xy], [f"{float(v):.4f}" for v in lum]
        else:
            xy, lum = [round(v * 50000) for v in xy], [round(v * 10000) for v in lum]
        params.append(f"{codec.hdr_keys[0]}=G({xy[0]},{xy[1]})B({xy[2]},{xy[3]})R({xy[4]},{xy[5]})"
                      f"WP({xy[6]},{xy[7]})L({lum[0]},{lum[1]})")
    if hdr.light is not None:
        params.append(f"{codec.hdr_keys[1]}={hdr.light[0]},{hdr.light[1]}")
    return ":".join(params)


def pixel_format(encoder: str, width: int, height: int, deep: bool) -> str:
    """For frames made from RGB: yuv420p where both sides are even (what every player expects); yuv444p for odd
    sizes where the codec has it, so the resolution never changes; 10-bit for deep input. (Frames kept in the
    decoder's own format are written in it.)"""
    codec = by_encoder(encoder)
    odd = width % 2 or height % 2
    fmt = "yuv444p" if odd and (codec is None or codec.odd_444) else "yuv420p"
    return fmt + "10le" if deep else fmt


def ten_bit(encoder: str) -> bool:
    """Whether this FFmpeg's ``encoder`` writes 10-bit (PyAV's libvpx is built 8-bit only)."""
    if encoder not in av.codecs_available:
        return False
    return "yuv420p10le" in {f.name for f in av.Codec(encoder, "w").video_formats or ()}


def choose_codec(asked: str | None, ext: str, holds: frozenset[str] | None, deep: bool,
                 hdr: bool = False, chroma: str = "4:2:0") -> tuple[str, str | None]:
    """The codec to write into a ``ext`` file (whose muxer holds ``holds``; None: not a container trt_anon
    writes), and a note when it is not the one a user would assume. Any mismatch is a one-line error,
    before any work.

    ``asked`` None: the first in ``CODECS`` the container holds (H.264, which plays everywhere); for 10-bit
    (``deep``) or HDR input HEVC, since H.264 High 10 plays almost nowhere and HEVC Main 10 is what phones
    record and TVs, phones and browsers play HDR from (AV1 where the container cannot hold HEVC: WebM, as
    PyAV's libvpx is 8-bit only); VP9 where the container holds neither H.264 nor HEVC. ``chroma``: what the
    video will be written in (the input's own 4:2:2 or 4:4:4 is kept on the CPU path), for the profile named."""
    if holds is None:
        raise OutputError(f"{ext or 'a name without extension'} is not a video container trt_anon writes; "
                          "write .mp4, .m4v, .mov, .mkv, .webm, .avi, .flv or .3gp")

    def keeps_depth(codec: Codec) -> bool:
        return not deep or ten_bit(codec.encoder)

    if asked is not None:
        codec = CODECS[asked]
        if asked not in holds:
            others = [c for c in CODECS if c in holds]
            raise OutputError(f"{ext} cannot hold {asked} video; use --codec {' or '.join(others) or '...'} with "
                              f"{ext}, or another container (.mkv holds all four)")
        if codec.encoder not in av.codecs_available:
            raise ConfigError(f"this PyAV's FFmpeg has no {codec.encoder} encoder for --codec {asked}")
        if not keeps_depth(codec):
            raise ConfigError(f"the input is 10-bit but {codec.encoder} here writes 8-bit only; "
                              "use --codec av1, hevc or h264 to keep 10 bits")
        return asked, None
    first = next(iter(CODECS))
    order = ("hevc", "av1", "h264", "vp9") if deep or hdr else tuple(CODECS)
    for codec in map(CODECS.get, order):
        if codec.name not in holds or not keeps_depth(codec) or codec.encoder not in av.codecs_available:
            continue
        if codec.name in ("hevc", "av1") and (deep or hdr):
            what = " ".join(["10-bit"] * deep + ["HDR"] * hdr)
            tag = (f", tagged {codec.apple_tag} for Apple players"
                   if codec.apple_tag and ext in (".mp4", ".m4v", ".mov") else "")
            profile = ("Main 10" if deep else "Main") if chroma == "4:2:0" else \
                f"Main {chroma} 10" if chroma == "4:2:2" or deep else f"Main {chroma}"  # x265's profiles
            written = f"HEVC {profile} ({codec.encoder}{tag})" if codec.name == "hevc" \
                else f"{codec.title} ({codec.encoder})"
            why = "H.264 High 10 plays almost nowhere (no browser, few phones)" if deep else \
                "few players show HDR from H.264"
            return codec.name, (f"{what} input: video written as {written}, which phones, TVs and browsers play; "
                                f"{why}; --codec h264 writes it anyway")
        return codec.name, None if codec.name == first else \
            f"{ext} cannot hold H.264: video written as {codec.name} ({codec.encoder})"
    raise OutputError(f"trt_anon does not write {ext} files: they hold none of the video codecs it writes "
                      f"({', '.join(CODECS)}); write .mp4, .m4v, .mov, .mkv, .webm, .avi, .flv or .3gp")
