"""Opening inputs, copying the streams we do not re-encode, and scrubbing metadata."""
from __future__ import annotations

import contextlib
import math
import re
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from ..errors import InputError, OutputError
from . import transcode

# Tags that locate or identify a person or a device. Removed unless keep_metadata.
PRIVATE_TAG = re.compile(r"location|xyz|gps|geo|latitude|longitude|make|model|serial|device|manufacturer|"
                         r"camera|lens|owner|author|artist|copyright|com\.apple\.quicktime|com\.android|"
                         r"encoder|software", re.I)


MAX_TICK = 86400  # seconds per timestamp tick: a day (a time-lapse AVI may say 60; a damaged header, years)


def clean_metadata(tags: dict, keep: bool) -> dict:
    """Tags to write: all of them with ``keep``, else those that identify no place or device."""
    return dict(tags) if keep else {k: v for k, v in tags.items() if not PRIVATE_TAG.search(k)}


def stream_tags(stream: av.stream.Stream, keep: bool) -> dict:
    """A stream's tags to write (language, title, handler name, ...): cleaned, and an MP4/MOV track's name,
    which FFmpeg reads as ``name`` but writes from ``title``, as its title."""
    tags = clean_metadata(stream.metadata, keep)
    if "name" in tags and "title" not in tags and "mov" in stream.container.format.name:
        tags["title"] = tags.pop("name")
    return tags


def chapters(container: av.container.InputContainer, keep_metadata: bool) -> list[dict]:
    """The input's chapters (times in their own time base, titles), ready for ``set_chapters``."""
    return [{**c, "metadata": clean_metadata(c["metadata"], keep_metadata)} for c in container.chapters()]


CHAPTER_MUXERS = {"mp4", "mov", "3gp", "matroska", "webm"}  # the output containers that hold chapters


def is_chapter_track(container: av.container.InputContainer, stream: av.stream.Stream) -> bool:
    """MP4/MOV store chapters as a text track, which FFmpeg reads as chapters and shows as a data stream it
    discards itself; the chapters are copied as chapters, so that stream is no stream to copy or warn about."""
    return stream.type == "data" and stream.discard == av.stream.Discard.all and bool(container.chapters())


HDR_TRANSFERS = {16, 18}  # PQ (SMPTE ST 2084: HDR10, Dolby Vision) and HLG (ARIB STD-B67)
DOLBY_VISION_TAGS = {"dvh1", "dvhe", "dav1", "dva1", "dvav"}  # MP4 sample entries of Dolby Vision streams
_SIDE = av.sidedata.sidedata.Type


def is_hdr(stream: av.video.stream.VideoStream) -> bool:
    """Whether the stream is tagged with an HDR transfer function."""
    return stream.codec_context.color_trc in HDR_TRANSFERS


@dataclass(frozen=True)
class Hdr:
    """The input's HDR metadata, as a decoder hands it over with the first frame (from the bitstream's SEI or
    OBUs, or the container's mdcv/clli boxes and Matroska colour elements).

    ``mastering``: the grading display (SMPTE ST 2086): red, green, blue and white point chromaticities
    (x, y each), then minimum and maximum luminance in cd/m2. ``light``: MaxCLL and MaxFALL in cd/m2.
    ``dolby_vision``: a Dolby Vision layer (its RPU describes the original pixels; nothing can re-make it).
    """

    mastering: tuple[Fraction, ...] | None = None
    light: tuple[int, int] | None = None
    dolby_vision: bool = False

    @property
    def static(self) -> bool:
        return self.mastering is not None or self.light is not None


def _first_frame(container: av.container.InputContainer, stream: av.stream.Stream,
                 max_packets: int) -> av.VideoFrame | None:
    """The first frame that decodes within ``max_packets`` packets (damaged ones skipped), or None."""
    decoder = stream.codec_context
    try:
        for n, packet in enumerate(container.demux(stream)):
            with contextlib.suppress(av.error.FFmpegError):
                for frame in decoder.decode(packet if packet.size else None):
                    return frame
            if n >= max_packets:
                break
    except av.error.FFmpegError:  # a damaged file: the main read says what it makes of it
        pass
    return None


def hdr_metadata(path: Path, index: int, max_packets: int = 64) -> Hdr:
    """Stream ``index``'s HDR metadata, from its first frame (a second, short read of the file)."""
    from ..decode.pyav import bit_depth  # the decoder's module imports this one

    mastering = light = None
    try:
        container = av.open(str(path))
    except av.error.FFmpegError:  # opened once already: only a file changed under us gets here
        return Hdr()
    with container:
        stream = container.streams[index]
        cc = stream.codec_context
        dolby_vision = (cc.codec_tag or "").lower() in DOLBY_VISION_TAGS
        if not (dolby_vision or is_hdr(stream) or bit_depth(cc.pix_fmt) > 8):
            return Hdr()  # 8-bit SDR: nothing to find, no frame decoded for it (0.15 s at 1080p)
        frame = _first_frame(container, stream, max_packets)
        for sd in frame.side_data if frame is not None else ():
            if sd.type == _SIDE.MASTERING_DISPLAY_METADATA:
                v = struct.unpack("<22i", bytes(sd)[:88])  # AVMasteringDisplayMetadata: 10 rationals, 2 flags
                if v[20] and v[21] and all(v[i] for i in range(1, 20, 2)):
                    mastering = tuple(Fraction(v[i], v[i + 1]) for i in range(0, 20, 2))
            elif sd.type == _SIDE.CONTENT_LIGHT_LEVEL:
                light = struct.unpack("<2I", bytes(sd)[:8])
            elif sd.type in (_SIDE.DOVI_RPU_BUFFER, _SIDE.DOVI_METADATA):
                dolby_vision = True
    return Hdr(mastering, light, dolby_vision)


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about the input's video stream, read once."""

    width: int
    height: int
    rate: Fraction           # nominal frame rate (average; the timestamps are what count)
    time_base: Fraction
    frames: int              # best estimate, for the progress bar
    duration: float          # seconds, best estimate
    codec: str
    pix_fmt: str
    is_image: bool

    @classmethod
    def of(cls, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> "VideoInfo":
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        duration = 0.0
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        frames = stream.frames or (round(duration * rate) if duration else 0)
        fmt = container.format.name
        return cls(cc.width, cc.height, Fraction(rate), stream.time_base or Fraction(1, 90000), frames,
                   duration, cc.name, cc.pix_fmt or "", fmt == "image2" or fmt.endswith("_pipe"))


def open_input(path: Path) -> av.container.InputContainer:
    """Open ``path`` for reading, or raise a one-line InputError saying what is wrong with it."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a video")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except av.error.PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError):
        raise InputError(f"{path}: not a video or image that FFmpeg can read (damaged or truncated?)") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        what = "audio only" if "audio" in kinds else "no video stream"
        raise InputError(f"{path}: {what}; nothing to anonymize")
    stream = video_stream(container)
    if stream.codec_context is None:  # a codec FFmpeg does not know: a damaged or foreign header
        index = stream.index
        container.close()
        raise InputError(f"{path}: video stream #{index} has an unknown codec (damaged header?)")
    if stream.codec_context.width <= 0 or stream.codec_context.height <= 0:
        container.close()
        raise InputError(f"{path}: video stream has no picture size (damaged header?)")
    if stream.time_base is not None and stream.time_base > MAX_TICK:  # no container could write such times
        tb = stream.time_base
        container.close()
        raise InputError(f"{path}: video time base of {float(tb):.0f} s per tick is not a video's (damaged header?)")
    return container


def unfit(container: av.container.InputContainer, ext: str, convert_audio: bool = False) -> str | None:
    """The first audio/subtitle stream of ``container`` that a ``ext`` file cannot hold, said in words.

    With ``convert_audio`` (the user named the container), audio the container's own audio codec
    can replace (WebM: Opus) fits: it will be converted.
    """
    from .files import MUXERS, muxer_codecs

    supported = muxer_codecs(ext)
    if supported is None:
        return None
    convertible = convert_audio and transcode.target(MUXERS[ext.lower()]) is not None
    for s in container.streams:
        if s.type in ("audio", "subtitle") and s.codec_context is not None and s.codec_context.name not in supported:
            if s.type == "audio" and convertible:
                continue
            return f"{s.type} stream #{s.index} ({s.codec_context.name})"
    return None


def fits(container: av.container.InputContainer, ext: str) -> bool:
    """Whether every audio/subtitle stream of ``container`` can be copied into a ``ext`` file."""
    return unfit(container, ext) is None


def muxer_options(dst: Path, time_base: Fraction) -> dict[str, str]:
    """Options that keep the input's frame times exact in the output container.

    MP4/MOV write where a track starts (its edit list) in the movie's timescale, 1000 by default:
    a video starting at 1/15 s (an AVI with B-frames has one frame of delay) started 0.65 ms
    early. The video track's own timescale as the movie's keeps that start exact.
    """
    if dst.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        return {}
    scale = time_base.denominator
    while scale < 10000:  # the MP4 muxer's own rule for a video track's timescale
        scale *= 2
    return {"movie_timescale": str(scale)} if scale <= 10**6 else {}


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The stream we anonymize: the first video stream that is not cover art."""
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return container.streams.video[0]


def _ticks(t: Fraction, tb: Fraction) -> int:
    """``t`` seconds in ticks of ``tb``, rounded as FFmpeg's muxer rounds (half away from zero)."""
    x = Fraction(t) / tb
    return math.floor(x + Fraction(1, 2)) if x >= 0 else -math.floor(-x + Fraction(1, 2))


class Remuxer:
    """Copies the input's audio and subtitle packets into the output, bit-exact, interleaved.

    Reads the input a second time (its own demuxer), so the decoder never buffers audio.
    ``advance(t)`` writes every copied packet up to ``t`` seconds, keeping the file
    interleaved as the video is written. Other video streams (a second angle, cover art)
    and data streams (GPS telemetry) could identify someone: they are dropped, and said so.
    With ``convert_audio`` (the user named a container that cannot hold an audio stream's
    codec, e.g. WebM and AAC), that stream is converted as it is read (WebM: to Opus), in the
    same interleaved pass; every other stream is still copied.
    """

    def __init__(self, path: Path, output: av.container.OutputContainer, keep_metadata: bool,
                 video_index: int, convert_audio: bool = False) -> None:
        self.input = av.open(str(path), mode="r")
        self.output = output
        self.map: dict[int, av.stream.Stream] = {}
        self.converters: dict[int, transcode.AudioTranscoder] = {}  # the streams still being converted
        self.dropped: list[str] = []
        supported = output.supported_codecs
        convert_to = transcode.target(output.format.name) if convert_audio else None
        for s in self.input.streams:
            if s.index == video_index or is_chapter_track(self.input, s):
                continue
            if s.type not in ("audio", "subtitle"):  # a data stream (GPS track) has no codec context
                what = f"{s.type}, {s.name or 'unknown codec'}"
                self.dropped.append(f"stream #{s.index} ({what}) dropped: may show or locate people")
                continue
            if s.codec_context is None:  # FFmpeg does not know its codec (damaged header): cannot be copied
                self.dropped.append(f"stream #{s.index} ({s.type}) dropped: unknown codec (damaged header?)")
                continue
            name = s.codec_context.name
            if name not in supported and s.type == "audio" and convert_to is not None:
                converter = transcode.AudioTranscoder(s, output, convert_to[1])
                out = converter.stream
                self.converters[s.index] = converter
            elif name not in supported:
                raise OutputError(f"{s.type} stream #{s.index} ({name}) cannot be stored in "
                                  f"{output.format.name}; write to .mkv instead")
            else:
                out = output.add_stream_from_template(s)
            out.metadata.update(stream_tags(s, keep_metadata))
            out.disposition = s.disposition
            self.map[s.index] = out
        # MP4/MOV store AC-3 and E-AC-3 as whole sync frames: FFmpeg's muxer silently drops a
        # partial frame at the start (as in a cut AVI) and fails on one later. Both are left out
        # here and reported.
        self._sync_frames = {i for i, o in self.map.items() if output.format.name in ("mp4", "mov")
                             and o.codec_context.name in ("ac3", "eac3")}
        self.converted = dict(self.converters)  # every converted stream, for the report
        self._packets = self.input.demux([self.input.streams[i] for i in self.map]) if self.map else iter(())
        self._next: av.Packet | None = None
        self.lost: dict[int, list[str]] = {}  # per stream: the packets that could not be copied, and why
        self.copied = 0
        self.read_error: str | None = None
        self._last: dict[int, int] = {}       # per output stream: the last dts written, in its time base
        self.moved: dict[int, int] = {}       # per input stream: packets moved forward (times going backwards)

    def _pull(self) -> av.Packet | None:
        while True:
            try:
                packet = next(self._packets)
            except StopIteration:
                return None
            except av.error.FFmpegError as exc:  # a damaged chunk: copy what came before, say so
                self.read_error = exc.strerror or type(exc).__name__
                self._packets = iter(())
                return None
            if packet.size == 0:
                continue
            i = packet.stream.index
            if packet.dts is None and packet.pts is None:  # nowhere to put it in the output
                self.lost.setdefault(i, []).append(f"{packet.size} bytes without a time")
                continue
            ts = packet.dts if packet.dts is not None else packet.pts
            if i in self._sync_frames and bytes(packet)[:2] != b"\x0b\x77":
                self.lost.setdefault(i, []).append(f"a partial AC-3 frame ({packet.size} bytes at "
                                                   f"{float(ts * packet.time_base):.3f} s)")
                continue
            return packet

    def warnings(self) -> list[str]:
        """What was converted, and what was not copied, per stream, for the report (empty when every
        packet was copied as it is)."""
        fmt = {"webm": "WebM"}.get(self.output.format.name, self.output.format.name.upper())
        out = [f"audio stream #{i} converted: {c.describe()} ({fmt} cannot hold {c.from_codec})"
               for i, c in self.converted.items()]
        for i, c in self.converted.items():
            if c.undecodable:
                out.append(f"audio stream #{i}: {c.undecodable} damaged packet(s) could not be decoded; "
                           "left out, the rest kept in time")
            if c.filled:
                out.append(f"audio stream #{i}: its times jump (gaps in the recording?): {c.filled / 48000:.3f} s "
                           "of silence filled in, keeping it in time with the video")
            if c.dropped:
                out.append(f"audio stream #{i}: {c.dropped} frame(s) whose time was already played dropped "
                           "(times going backwards: damaged file?)")
        for i, what in self.lost.items():
            hint = (f"; {self.output.format.name.upper()} cannot store partial AC-3 frames, .mkv can"
                    if i in self._sync_frames else "")
            out.append(f"{self.input.streams[i].type} stream #{i}: {len(what)} packet(s) not copied: "
                       f"{', '.join(what[:3])}{', ...' if len(what) > 3 else ''}{hint}")
        for i, n in self.moved.items():
            out.append(f"{self.input.streams[i].type} stream #{i}: {n} packet(s) whose time went backwards "
                       "(damaged file?) moved just after the one before")
        if self.read_error:
            out.append(f"copying audio/subtitles stopped at a damaged part of the file ({self.read_error})")
        return out

    def advance(self, until: float | None) -> None:
        """Write the copied packets whose time is at most ``until`` seconds (all if None, and the
        converted streams' last samples with them)."""
        while True:
            if self._next is None:
                self._next = self._pull()
                if self._next is None:
                    if until is None:
                        self._finish()
                    return
            p = self._next
            ts = p.dts if p.dts is not None else p.pts
            if until is not None and ts * p.time_base > until:
                return
            converter = self.converters.get(p.stream.index)
            if converter is not None:  # decoded and encoded again: the encoder makes its own times
                converter.feed(p)
                self._next = None
                continue
            out = self.map[p.stream.index]
            last = self._last.get(out.index)
            if last is not None and _ticks(ts * p.time_base, out.time_base) <= last:
                self._move_after(p, ts, last, out.time_base)
                self.moved[p.stream.index] = self.moved.get(p.stream.index, 0) + 1
                ts = p.dts
            t = ts * p.time_base
            p.stream = out
            self.output.mux(p)
            self._last[out.index] = _ticks(t, out.time_base)  # the header is written: its time base is final
            self.copied += 1
            self._next = None

    def _finish(self) -> None:
        """Flush the converted streams once: the samples their decoder, resampler and encoder still hold."""
        converters, self.converters = self.converters, {}
        for c in converters.values():
            c.feed(None)

    @staticmethod
    def _move_after(p: av.Packet, ts: int, last: int, tb: Fraction) -> None:
        """Give ``p`` the first time after ``last`` (ticks of ``tb``), its pts moved alike."""
        pts = _ticks(p.pts * p.time_base, tb) if p.pts is not None else None
        shift = last + 1 - _ticks(ts * p.time_base, tb)
        p.time_base = tb
        p.dts = last + 1
        p.pts = None if pts is None else pts + shift

    def close(self) -> None:
        self.input.close()
