"""Live streams: a camera or a network stream anonymized as it plays, with a bounded delay.

    trt-anon tcp://127.0.0.1:5000 -o rec.mkv                  # a recording, playable even if the run is killed
    trt-anon rtsp://camera/stream -o rtsp://relay:8554/anon    # pushed to an RTSP server (MediaMTX, ...)
    trt-anon srt://0.0.0.0:9000?mode=listener -o hls/live.m3u8 # an HLS folder, rolling segments

A reader thread takes frames as they arrive (PyAV: any URL or device FFmpeg opens) into a short queue; the
main thread detects, tracks and redacts them (``frames.Anonymizer``) and writes each frame as soon as its
boxes are final. The delay is bounded by ``latency``: the back-fill window (``lookback``) and the queue are
sized to it, and the delay each frame had (arrival -> written) is measured. Fail closed: when the machine
cannot keep up, frames that would be late are dropped, or written as a flat cover (``on_overload``), never
unredacted; a detector error covers the frames it was given. A source that drops is reconnected with
backoff; output timestamps stay increasing across the gap. Ctrl-C ends the stream with the output finalised.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from .config import CRFS, Config
from .detect import select_detector
from .detect.detections import HIT
from .encode.pyav import codec_options, pixel_format
from .errors import AnonError, ConfigError, DetectorError, InputError, OutputError, Terminated
from .frames import Anonymizer
from .redact import select_redactor
from .report import Report

SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "tcp", "udp", "rtp", "http", "https")
TIME_BASE = Fraction(1, 90000)  # output timestamps: MPEG-TS's clock, exact for every common frame rate
RETRIES = 5                     # a network source that drops is reopened this many times (1, 2, 4, 8, 8 s apart)
OVERLOAD = ("drop", "cover")


def is_live(name: str) -> bool:
    """A URL FFmpeg reads as a stream, or a local camera (/dev/video*)."""
    scheme = name.split("://", 1)[0].lower() if "://" in name else ""
    return scheme in SCHEMES or name.startswith("/dev/video")


@dataclass
class Arrival:
    """A decoded frame and when it came. A frame too late to be written (``frame`` None) keeps its place:
    the tracker counts it as a frame not looked at, so motion and holds stay right across it; a ``gap`` is
    the source stopping (the frames waiting for their boxes go out meanwhile)."""

    frame: np.ndarray | None
    time: float        # its presentation time in the source, in seconds
    at: float          # time.monotonic() when it arrived
    kind: str = "frame"  # or "covered" (written as a flat frame), "dropped" (not written), "gap"
    shape: tuple = ()  # a covered frame's shape


class LiveSource:
    """Frames as they arrive, read in a thread into a queue. A frame that waited too long for the delay budget
    (``take``), or the oldest past ``capacity`` frames, is dropped, or (``cover``) kept only as its place, to be
    written covered. ``paced``: a file read at its own frame rate (as a camera would send it)."""

    def __init__(self, url: str, capacity: int, on_overload: str = "drop", input_format: str | None = None,
                 options: dict[str, str] | None = None, paced: bool = False, log=print, retries: int = RETRIES) -> None:
        self.url, self.capacity, self.on_overload, self.retries = url, max(1, capacity), on_overload, retries
        self.format, self.options, self.paced, self.log = input_format, dict(options or {}), paced, log
        self.queue: deque[Arrival] = deque()
        self.ready = threading.Condition()
        self.done = False
        self.stopping = threading.Event()
        self.dropped = self.covered = self.reconnects = 0
        self.rate: Fraction | None = None
        self.first: float | None = None  # the source time of the first frame read: the output's zero
        self.container = self._open()  # in the caller: a source that cannot be opened is a one-line error now
        self.thread = threading.Thread(target=self._read, name="trt_anon-live-read", daemon=True)

    def _open(self):
        try:
            container = av.open(self.url, format=self.format, options=self.options, timeout=(10.0, 10.0))
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"cannot open {self.url}: {getattr(exc, 'strerror', None) or exc}") from None
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.url} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        self.rate = self.rate or stream.average_rate or stream.guessed_rate or Fraction(30)
        return container

    def start(self) -> None:
        self.thread.start()

    def _read(self) -> None:
        while not self.stopping.is_set():
            try:
                self._frames(self.container)
                why = "the stream ended"
            except (av.error.FFmpegError, OSError) as exc:
                why = f"reading failed: {getattr(exc, 'strerror', None) or exc}"
            self.container.close()
            if self.stopping.is_set() or not is_live(self.url) or not self._reopen(why):
                break
        with self.ready:
            self.done = True
            self.ready.notify_all()

    def _reopen(self, why: str) -> bool:
        """A camera that drops: reconnect, backing off; True once the source is open again."""
        if not self.retries:
            return False
        self._put(Arrival(None, 0.0, time.monotonic(), "gap"))  # what waits for its boxes goes out meanwhile
        for tries in range(1, self.retries + 1):
            wait = min(2 ** (tries - 1), 8)
            self.log(f"{self.url}: {why}; reconnecting in {wait} s ({tries} of {self.retries})")
            if self.stopping.wait(wait):
                return False
            try:
                self.container = self._open()
            except AnonError:
                continue
            self.reconnects += 1
            return True
        return False

    def _frames(self, container) -> None:
        stream = container.streams.video[0]
        start = time.monotonic()
        first = None
        for frame in container.decode(stream):
            if self.stopping.is_set():
                return
            t = float(frame.pts * frame.time_base) if frame.pts is not None else time.monotonic() - start
            self.first = t if self.first is None else self.first
            if self.paced:  # a file played as a camera: each frame when its time comes
                first = t if first is None else first
                time.sleep(max(0.0, start + (t - first) - time.monotonic()))
            self._put(Arrival(frame.to_ndarray(format="rgb24"), t, time.monotonic()))

    def _put(self, arrival: Arrival) -> None:
        with self.ready:
            if sum(a.frame is not None for a in self.queue) >= self.capacity:  # memory: the oldest is late anyway
                self._late(next(a for a in self.queue if a.frame is not None))
            self.queue.append(arrival)
            self.ready.notify()

    def _late(self, arrival: Arrival) -> None:
        """A frame that cannot be written in time: dropped, or kept only as its place, to be written covered."""
        arrival.shape, arrival.frame = arrival.frame.shape, None
        if self.on_overload == "cover":
            arrival.kind = "covered"
            self.covered += 1
        else:
            arrival.kind = "dropped"
            self.dropped += 1

    def take(self, max_wait: float) -> Arrival | None:
        """The next frame, waiting for it; None at the end of the stream. Frames that waited in the queue
        longer than ``max_wait`` seconds would be written too late: dropped or covered first (``on_overload``).
        (A burst that arrives at once, as the frames FFmpeg read while opening the source, is not late.)"""
        with self.ready:
            while True:
                while not self.queue and not self.done:
                    self.ready.wait(0.5)
                if not self.queue:
                    return None
                now = time.monotonic()
                for a in [a for a in self.queue if a.frame is not None and now - a.at > max_wait]:
                    self._late(a)
                if self.queue:
                    return self.queue.popleft()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=15)
        if not self.thread.is_alive():
            self.container.close()


def output_format(output: str) -> tuple[str, dict[str, str]]:
    """The muxer and its options for a live output: a recording that plays even if the run is killed, an
    RTSP push, MPEG-TS over SRT/TCP/UDP, or an HLS playlist with rolling segments."""
    scheme = output.split("://", 1)[0].lower() if "://" in output else ""
    ext = Path(output).suffix.lower()
    if scheme in ("rtsp", "rtsps"):
        return "rtsp", {"rtsp_transport": "tcp"}
    if scheme in ("rtmp", "rtmps"):
        return "flv", {}
    if scheme in ("srt", "tcp", "udp"):
        return "mpegts", {"flush_packets": "1"}
    if ext == ".m3u8":
        return "hls", {"hls_time": "2", "hls_list_size": "6", "hls_flags": "delete_segments+independent_segments"}
    if ext in (".mp4", ".mov"):
        return "mp4", {"movflags": "frag_keyframe+empty_moov+default_base_moof"}  # fragments: playable if cut
    if ext == ".mkv":
        return "matroska", {}
    if ext == ".ts":
        return "mpegts", {}
    raise ConfigError(f"live output {output}: write .mkv, .mp4 (fragmented), .ts, .m3u8 (HLS), or an rtsp://, "
                      "rtmp://, srt://, tcp:// or udp:// URL")


class LiveSink:
    """The output of a live run: H.264 (x264 ``zerolatency``, a keyframe every 2 s for players that join),
    opened with the first frame written. Times are the source's own from its first frame read (``zero``),
    moved on where they go back or jump (a reconnect); the delay each frame had is kept."""

    def __init__(self, output: str, rate: Fraction, config: Config) -> None:
        self.output, self.rate, self.config = output, rate, config
        self.format, self.options = output_format(output)
        self.out = self.stream = None
        self.name = "libx264 (zerolatency)"
        self.offset: int | None = None
        self.last: int | None = None       # the last frame's time, in TIME_BASE
        self.last_at = 0.0
        self.delays: list[float] = []      # arrival -> written, per frame, seconds

    def _open(self, width: int, height: int) -> None:
        if self.format == "hls":
            Path(self.output).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.out = av.open(self.output, mode="w", format=self.format, options=self.options, timeout=10.0)
            crf = self.config.crf if self.config.crf is not None else CRFS["h264"]
            self.stream = self.out.add_stream("libx264", rate=self.rate, options={
                **codec_options("libx264", crf, self.config.preset), "tune": "zerolatency",
                "g": str(max(1, round(2 * self.rate)))})
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {self.output}: {getattr(exc, 'strerror', None) or exc}") from None
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = pixel_format("libx264", width, height, deep=False)
        self.stream.time_base = self.stream.codec_context.time_base = TIME_BASE

    def _ticks(self, a: Arrival, zero: float) -> int:
        t = round(a.time / TIME_BASE)
        if self.offset is None:
            self.offset = -round(zero / TIME_BASE)
        out = t + self.offset
        if self.last is not None and (out <= self.last or out - self.last > 10 / TIME_BASE):
            out = self.last + max(1, round((a.at - self.last_at) / TIME_BASE))
            self.offset = out - t
        self.last, self.last_at = out, a.at
        return out

    def write(self, frame: np.ndarray, a: Arrival, zero: float) -> None:
        if self.out is None:
            self._open(frame.shape[1], frame.shape[0])
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=self.stream.pix_fmt)
        vf.pts, vf.time_base = self._ticks(a, zero), TIME_BASE
        self._mux(self.stream.encode(vf))
        self.delays.append(time.monotonic() - a.at)

    def _mux(self, packets) -> None:
        try:
            for p in packets:
                self.out.mux(p)
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"writing {self.output} failed: {getattr(exc, 'strerror', None) or exc}") from None

    def close(self) -> None:
        if self.out is None:
            return
        try:
            self._mux(self.stream.encode(None))
        finally:
            self.out.close()


def budget(latency: float, rate: Fraction, config: Config) -> tuple[int, float, int]:
    """For a delay of ``latency`` seconds: the back-fill window in frames (about half of it; faces are
    back-filled that far before their first detection; at least ``ttl``), the longest a frame may wait in the
    queue (the rest, less a tenth for the work on it), and the queue's length in frames (twice the delay's:
    memory stays bounded however late the frames are)."""
    frames = max(2, int(latency * float(rate)))
    lookback = min(config.lookback, max(config.ttl, frames // 2 - 1))
    max_wait = max(1 / float(rate), latency * 0.9 - (lookback + 1) / float(rate))
    return lookback, max_wait, 2 * frames


def stream(source: str, output: str, config: Config | None = None, *, latency: float = 0.5,
           on_overload: str = "drop", input_format: str | None = None, input_options: dict | None = None,
           paced: bool = False, progress: bool = True, log=print, retries: int = RETRIES) -> Report:
    """Anonymize a live ``source`` into ``output`` until the stream ends or Ctrl-C; a Report back, with
    ``report.live``: the delay each frame had (p50, p99, max, in seconds), frames dropped or covered, reconnects.
    ``paced``: read a file at its own frame rate, as a live source. ``retries``: times a source that drops is
    reopened (backing off 1, 2, 4, 8 s) before the stream ends."""
    config = config or Config()
    if on_overload not in OVERLOAD:
        raise ConfigError(f"on_overload must be one of {', '.join(OVERLOAD)}, not {on_overload!r}")
    if not 0.1 <= latency <= 30:
        raise ConfigError(f"latency must be between 0.1 and 30 seconds, not {latency}")
    output_format(output)  # refused before the source is opened
    if "://" not in output and Path(output).exists() and not config.overwrite:
        raise OutputError(f"output {output} exists; pass --overwrite to replace it")
    if not paced and not is_live(source) and not Path(source).exists():
        raise InputError(f"input {source} not found")
    # the model is loaded (and run once) before the source is opened: frames do not pile up behind it
    detector, redactor = select_detector(config, gpu=False), select_redactor(config, gpu=False)
    detector(np.zeros((1, 64, 64, 3), np.uint8))
    src = LiveSource(source, 1, on_overload, input_format, input_options, paced, log, retries)
    video = src.container.streams.video[0]
    if video.width and video.height:  # the detector's and encoder's set-up for this size, before frames queue up
        detector(np.zeros((1, video.height, video.width, 3), np.uint8))
    lookback, max_wait, src.capacity = budget(latency, src.rate, config)
    config = Config.from_options(config, lookback=lookback, batch_size=1)
    anon = Anonymizer(config, detector=detector, redactor=redactor)
    report = Report(source, output)
    sink = LiveSink(output, src.rate, config)
    waiting: deque[Arrival] = deque()  # in the tracker, not yet written
    detector_errors = 0
    shape: tuple[int, ...] = ()        # the frames' (H, W, 3): a covered frame's size
    bar = tqdm(unit="frame", disable=not progress, dynamic_ncols=True, desc="live", delay=0.5)
    started = time.perf_counter()

    def write(frame: np.ndarray, a: Arrival, faces: int = 0, boxes: int = 0) -> None:
        sink.write(frame, a, src.first if src.first is not None else a.time)
        report.count(faces, boxes)
        bar.update(1)

    def final(dets) -> None:
        """Write the frames whose boxes became final: redacted, or covered whole; a dropped one not at all."""
        for d in dets:
            a = waiting.popleft()
            if a.kind == "frame":
                frames, boxes = anon.redact(a.frame[None], [d])
                write(frames[0], a, int((d.kind == HIT).sum()), len(boxes[0]))
            elif a.kind == "covered":
                write(np.zeros(a.shape or shape, np.uint8), a)

    interrupted = None
    src.start()
    try:
        while (a := src.take(max_wait)) is not None:
            if a.kind == "gap":  # the source stopped: what waits goes out, and the tracker starts afresh
                final(anon.end())
                anon = Anonymizer(config, detector=detector, redactor=redactor)
                continue
            waiting.append(a)
            if a.frame is None:  # too late to be written: a frame not looked at, for the tracker
                final(anon.tracker.push([None]))
                continue
            shape = a.frame.shape
            try:
                final(anon.track(a.frame[None]))
            except DetectorError as exc:  # fail closed: what the detector could not see is covered
                detector_errors += 1
                log(f"detector error, frames covered: {exc}")
                anon = Anonymizer(config, detector=detector, redactor=redactor)  # the stream afresh
                for a in waiting:
                    if a.kind != "dropped":
                        write(np.zeros(a.shape or shape, np.uint8), a)
                waiting.clear()
            if report.frames % 15 == 0 and sink.delays:
                recent = np.asarray(sink.delays[-300:])
                bar.set_postfix_str(f"delay p50 {np.percentile(recent, 50):.2f}s p99 {np.percentile(recent, 99):.2f}s"
                                    f" | dropped {src.dropped} | covered {src.covered}", refresh=False)
        final(anon.end())
    except (KeyboardInterrupt, Terminated) as exc:  # Ctrl-C, SIGTERM: the stream ends here, cleanly
        interrupted = exc
    except BaseException:
        src.stop()
        sink.close()
        raise
    finally:
        bar.close()
    src.stop()
    if interrupted is not None:  # the frames waiting for their boxes get them as at the end of a stream
        try:
            final(anon.end())
            note = "the recording is whole up to there"
        except Exception:  # stopped inside the tracker: its state is not whole, those frames are not written
            note = f"{len(waiting)} frame(s) waiting for their boxes not written"
        report.warnings.append(f"stopped ({type(interrupted).__name__}); {note}")
    sink.close()
    if not report.frames and interrupted is None:
        raise InputError(f"{source}: no frame arrived")
    report.wall = time.perf_counter() - started
    report.duration = float((sink.last or 0) * TIME_BASE)
    report.backends = {"decode": "pyav (live)", "detect": detector.name, "redact": redactor.name, "encode": sink.name}
    d = np.asarray(sink.delays or [0.0])
    report.live = {"delay_p50": round(float(np.percentile(d, 50)), 3),
                   "delay_p99": round(float(np.percentile(d, 99)), 3), "delay_max": round(float(d.max()), 3),
                   "latency": latency, "lookback": lookback, "dropped": src.dropped, "covered": src.covered,
                   "detector_errors": detector_errors, "reconnects": src.reconnects}
    if src.dropped or src.covered:
        report.warnings.append(f"the machine could not keep up within {latency} s: {src.dropped} frame(s) dropped, "
                               f"{src.covered} covered (never written unredacted)")
    return report


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs for FFmpeg's input (e.g. rtsp_transport=tcp, video_size=1280x720)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--input-option {pair!r}: write KEY=VALUE")
        out[key] = value
    return out
