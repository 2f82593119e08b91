"""Opening inputs, copying the streams we do not re-encode, and scrubbing metadata."""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from ..errors import InputError, OutputError

# Tags that locate or identify a person or a device. Removed unless keep_metadata.
PRIVATE_TAG = re.compile(r"location|xyz|gps|geo|latitude|longitude|make|model|serial|device|manufacturer|"
                         r"camera|lens|owner|author|artist|copyright|com\.apple\.quicktime|com\.android|"
                         r"encoder|software", re.I)


def clean_metadata(tags: dict, keep: bool) -> dict:
    """Tags to write: all of them with ``keep``, else those that identify no place or device."""
    return dict(tags) if keep else {k: v for k, v in tags.items() if not PRIVATE_TAG.search(k)}


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
    stream = container.streams.video[0]
    if stream.codec_context.width <= 0 or stream.codec_context.height <= 0:
        container.close()
        raise InputError(f"{path}: video stream has no picture size (damaged header?)")
    return container


def unfit(container: av.container.InputContainer, ext: str) -> str | None:
    """The first audio/subtitle stream of ``container`` that a ``ext`` file cannot hold, said in words."""
    from .files import muxer_codecs

    supported = muxer_codecs(ext)
    if supported is None:
        return None
    for s in container.streams:
        if s.type in ("audio", "subtitle") and s.codec_context is not None and s.codec_context.name not in supported:
            return f"{s.type} stream #{s.index} ({s.codec_context.name})"
    return None


def fits(container: av.container.InputContainer, ext: str) -> bool:
    """Whether every audio/subtitle stream of ``container`` can be copied into a ``ext`` file."""
    return unfit(container, ext) is None


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The stream we anonymize: the first video stream that is not cover art."""
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return container.streams.video[0]


class Remuxer:
    """Copies the input's audio and subtitle packets into the output, bit-exact, interleaved.

    Reads the input a second time (its own demuxer), so the decoder never buffers audio.
    ``advance(t)`` writes every copied packet up to ``t`` seconds, keeping the file
    interleaved as the video is written. Other video streams (a second angle, cover art)
    and data streams (GPS telemetry) could identify someone: they are dropped, and said so.
    """

    def __init__(self, path: Path, output: av.container.OutputContainer, keep_metadata: bool,
                 video_index: int) -> None:
        self.input = av.open(str(path), mode="r")
        self.output = output
        self.map: dict[int, av.stream.Stream] = {}
        self.dropped: list[str] = []
        supported = output.supported_codecs
        for s in self.input.streams:
            if s.index == video_index:
                continue
            name = s.codec_context.name if s.codec_context else "unknown"
            if s.type not in ("audio", "subtitle"):
                self.dropped.append(f"stream #{s.index} ({s.type}, {name}) dropped: may show or locate people")
                continue
            if name not in supported:
                raise OutputError(f"{s.type} stream #{s.index} ({name}) cannot be stored in "
                                  f"{output.format.name}; write to .mkv instead")
            out = output.add_stream_from_template(s)
            out.metadata.update(clean_metadata(s.metadata, keep_metadata))
            out.disposition = s.disposition
            self.map[s.index] = out
        self._packets = self.input.demux([self.input.streams[i] for i in self.map]) if self.map else iter(())
        self._next: av.Packet | None = None
        self.copied = 0

    def _pull(self) -> av.Packet | None:
        for packet in self._packets:
            if packet.size == 0 or packet.dts is None and packet.pts is None:
                continue
            return packet
        return None

    def advance(self, until: float | None) -> None:
        """Write the copied packets whose time is at most ``until`` seconds (all if None)."""
        while True:
            if self._next is None:
                self._next = self._pull()
                if self._next is None:
                    return
            p = self._next
            ts = p.dts if p.dts is not None else p.pts
            if until is not None and ts * p.time_base > until:
                return
            p.stream = self.map[p.stream.index]
            self.output.mux(p)
            self.copied += 1
            self._next = None

    def close(self) -> None:
        self.input.close()
