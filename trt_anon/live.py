"""Live streams: a camera or a network stream anonymized as it plays, with a bounded delay.

    trt-anon tcp://127.0.0.1:5000 -o rec.mkv                  # a recording, playable even if the run is killed
    trt-anon rtsp://camera/stream -o rtsp://relay:8554/anon    # pushed to an RTSP server (MediaMTX, ...)
    trt-anon rtsp://camera/stream -o hls/live.m3u8             # an HLS folder, rolling segments

A reader thread demuxes the source as it arrives (PyAV: any URL or device FFmpeg opens; srt:// where FFmpeg has
libsrt) into a short queue: video frames decoded, audio packets as they are. The main thread detects (on a GPU
where one is usable, each frame uploaded), tracks and redacts the frames (``frames.Anonymizer``) and hands each
one, as soon as its boxes are final, to a writer thread that encodes and muxes it beside the audio (copied as it
is; converted to AAC where the output cannot hold its codec, as G.711 in a recording). Times: the source's own from
its first frame, audio and video moved by the same amount (in sync), and moved on where the source's clock restarts
(a reconnect). The delay is bounded by ``latency``: the back-fill window (``lookback``) and the queue are sized to
it, and the delay each frame had (arrival -> written) is measured. Fail closed: when the machine cannot keep up,
frames that would be late are dropped, or written as a flat cover (``on_overload``), never unredacted; a detector
error covers the frames it was given; the audio of those frames still goes out (it holds no faces). A source that
drops is reconnected with backoff. Ctrl-C or SIGTERM ends the stream with the output finalised.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from . import audit
from .config import Config
from .detect import select_detector
from .detect.detections import HIT
from .encode.codecs import CODECS, codec_options, pixel_format
from .errors import AnonError, BackendError, ConfigError, DetectorError, InputError, OutputError, Terminated, first_line
from .frames import Anonymizer
from .media.files import atomic_output
from .plan import use_gpu
from .planar import Planar
from .redact import select_redactor
from .report import BoxLog, Report

SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "tcp", "udp", "rtp", "http", "https")
TIME_BASE = Fraction(1, 90000)  # output timestamps: MPEG-TS's clock, exact for every common frame rate
RETRIES = 5                     # a network source that fails is reopened this many times (1, 2, 4, 8, 8 s apart)
READ_TIMEOUT = 10.0             # seconds without data from a source (opening, or reading) before it counts as failed
OVERLOAD = ("drop", "cover")
JUMP = 10.0                     # a source time going back, or forward more than this (s): its clock restarted
HELD_AUDIO = 500                # audio packets kept while a connection's first frame is decoded (its shift)
WARM_SIZE = (720, 1280)          # the detector's warm-up frame before a source is opened (the commonest size)
AAC_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350]
# Audio codecs the live muxers take as they are, where PyAV cannot ask them (MPEG-TS, HLS, RTSP); others are asked.
AUDIO_FITS = {"mpegts": {"aac", "mp2", "mp3", "ac3", "eac3", "opus"}, "hls": {"aac", "mp3", "ac3", "eac3"},
              "rtsp": {"aac", "opus", "mp2", "mp3", "ac3", "pcm_alaw", "pcm_mulaw"}, "flv": {"aac", "mp3"}}


def is_live(name: str) -> bool:
    """A URL FFmpeg reads as a stream, or a local camera (/dev/video*)."""
    scheme = name.split("://", 1)[0].lower() if "://" in name else ""
    return scheme in SCHEMES or name.startswith("/dev/video")


@dataclass
class Arrival:
    """A decoded frame (or an audio packet) and when it came. A frame too late to be written (``frame`` None)
    keeps its place: the tracker counts it as a frame not looked at, so motion and holds stay right across it;
    a ``gap`` is the source stopping (the frames waiting for their boxes go out meanwhile)."""

    frame: np.ndarray | av.VideoFrame | None  # as decoded, until the loop takes it (its planar row, or RGB where
                                              # the stream is not kept planar): None, a frame dropped
    time: float        # its time in the output, in seconds: the source's own from its first frame, moved on
                       # where the source's clock restarts (a reconnect), so it always increases
    at: float          # time.monotonic() when it arrived
    kind: str = "frame"  # or "covered" (written as a flat frame), "dropped" (not written), "gap", "audio"
    shape: tuple = ()  # a covered frame's shape
    packet: av.Packet | None = None  # an audio packet, its times already those of the output (each sink copies it)
    index: int = -1    # a frame's number in the stream (every frame that arrived, dropped ones included)


class LiveSource:
    """Frames as they arrive, read in a thread into a queue. A frame that waited too long for the delay budget
    (``take``), or the oldest past ``capacity`` frames, is dropped, or (``cover``) kept only as its place, to be
    written covered. Audio packets (``copy_audio``) pass through the same queue, never dropped: they hold no
    faces. ``paced``: a file read at its own frame rate (as a camera would send it).

    A source that fails (an error, or no data for ``READ_TIMEOUT`` s) is reopened, backing off, up to ``retries``
    times; one whose sender ends it (the end of the stream) is over."""

    def __init__(self, url: str, capacity: int, on_overload: str = "drop", input_format: str | None = None,
                 options: dict[str, str] | None = None, paced: bool = False, log=print, retries: int = RETRIES) -> None:
        self.url, self.capacity, self.on_overload, self.retries = url, max(1, capacity), on_overload, retries
        self.format, self.options, self.paced, self.log = input_format, dict(options or {}), paced, log
        self.queue: deque[Arrival] = deque()
        self.ready = threading.Condition()
        self.done = False
        self.stopping = threading.Event()
        self.dropped = self.covered = self.reconnects = self.audio_lost = 0
        self.damaged = 0                 # frames not trusted: repaired by the decoder, or drawn on one since a keyframe
        self.repairing = False           # the last frame was not trusted: nor are the next ones until a keyframe
        self.frames = 0                  # frames arrived (all connections): the next one's number
        self.rate: Fraction | None = None
        self.shift: float | None = None  # output time - source time, for this connection (None: not known yet)
        self.last: float | None = None   # the last frame's output time, and when it arrived
        self.last_at = 0.0
        self.floor = 0.0                 # the output time of the connection's first frame: audio starts there
        self.audio_last: float | None = None  # the last audio packet's output time
        self.held: list = []             # audio read before the connection's first frame (its shift unknown)
        self.container = self._open()  # in the caller: a source that cannot be opened is a one-line error now
        self.audio = self.container.streams.audio[0] if self.container.streams.audio else None
        self.audio_kind = _audio_kind(self.audio)
        self.copy_audio = False          # set where the output holds the audio
        self.thread = threading.Thread(target=self._read, name="trt_anon-live-read", daemon=True)

    def _open(self):
        try:
            # not 20 frames read ahead to measure the frame rate (0.7 s at 30 fps, then handed over at once, late):
            # the rate is in the stream's parameters
            container = av.open(self.url, format=self.format, options={"fpsprobesize": "0", **self.options},
                                timeout=(READ_TIMEOUT, READ_TIMEOUT))
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"cannot open {self.url}: {_why(exc)}") from None
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.url} has no video stream")
        stream = container.streams.video[0]
        # one thread: frame threads would hold a frame per thread back (that much more delay), and only a decoder
        # without threads says which frames it had to repair
        stream.thread_type = "NONE"
        self.rate = self.rate or stream.average_rate or stream.codec_context.framerate or stream.guessed_rate \
            or Fraction(30)
        return container

    def start(self) -> None:
        self.thread.start()

    @property
    def ended(self) -> bool:
        """The stream is over and every arrival was taken."""
        return self.done and not self.queue

    def _read(self) -> None:
        while not self.stopping.is_set():
            try:
                self._demux(self.container)
                why = None
            except (av.error.FFmpegError, OSError) as exc:
                why = _why(exc)
            self.container.close()
            if why is None and is_live(self.url) and not self.stopping.is_set():
                self.log(f"{self.url}: the stream ended (its sender closed it)")
            if self.stopping.is_set() or why is None or not is_live(self.url) or not self._reopen(why):
                break
        with self.ready:
            self.done = True
            self.ready.notify_all()

    def _reopen(self, why: str) -> bool:
        """A camera that fails: reconnect, backing off; True once the source is open again. Each line says why
        the source (or the attempt before) failed."""
        self._put(Arrival(None, 0.0, time.monotonic(), "gap"))  # what waits for its boxes goes out meanwhile
        for tries in range(1, self.retries + 1):
            wait = min(2 ** (tries - 1), 8)
            self.log(f"{self.url}: {why}; reconnecting in {wait} s ({tries} of {self.retries})")
            if self.stopping.wait(wait):
                return False
            try:
                self.container = self._open()
            except AnonError as exc:
                why = str(exc).removeprefix(f"cannot open {self.url}: ")
                continue
            self.reconnects += 1
            return True
        if self.retries:
            self.log(f"{self.url}: {why}; giving up after {self.retries} reconnection attempt(s)")
        else:
            self.log(f"{self.url}: {why}")
        return False

    def _demux(self, container) -> None:
        """One connection: video decoded into frames, audio packets passed on as they are."""
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio and self.copy_audio else None
        if audio is not None and _audio_kind(audio) != self.audio_kind:
            self.log(f"{self.url}: the audio is not the first connection's ({_audio_kind(audio)}): left out")
            audio = None
        self.shift, self.held = None, []
        start, first = time.monotonic(), None
        for packet in container.demux([video] + ([audio] if audio is not None else [])):
            if self.stopping.is_set():
                return
            if audio is not None and packet.stream.index == audio.index:
                self._audio(packet)
                continue
            try:
                frames = video.decode(packet)
            except av.error.InvalidDataError:  # a packet the decoder refuses: the frames after it are not whole
                self.repairing = True
                continue
            for frame in frames:
                # a frame the decoder had to repair (data lost or corrupt) may show pixels out of place, faces among
                # them where the tracker does not look, and the frames after it draw on it until a keyframe
                self.repairing = frame.is_corrupt or (self.repairing and not frame.key_frame)
                t = float(frame.pts * frame.time_base) if frame.pts is not None else None
                if self.paced and t is not None:  # a file played as a camera: each frame when its time comes
                    first = t if first is None else first
                    time.sleep(max(0.0, start + (t - first) - time.monotonic()))
                at = time.monotonic()
                out = self._place(t if t is not None else at, at)
                arrival = Arrival(frame, out, at, index=self.frames)  # made RGB when taken: never if dropped
                if self.repairing:  # not trusted: dropped or covered, as a frame too late
                    self._late(arrival, damaged=True)
                self._put(arrival)
                self.frames += 1
                for held in self.held:  # this connection's shift is known now
                    self._audio(held)
                self.held = []

    def _place(self, t: float, at: float) -> float:
        """A frame's output time: its source time ``t`` plus the connection's shift. The first frame read is
        the output's zero; where the source's clock restarts (a reconnect, a time going back or leaping ahead)
        the shift is set anew, so the output goes on from its last time plus the time that passed."""
        if self.shift is None or not 0 < t + self.shift - self.last <= JUMP:
            self.shift = -t if self.last is None else self.last + max(at - self.last_at, 1 / float(self.rate)) - t
            self.floor = t + self.shift
        self.last, self.last_at = t + self.shift, at
        return self.last

    def _audio(self, packet: av.Packet) -> None:
        """An audio packet, its times moved by the video's shift (the same origin: in sync). Audio from before
        the connection's first frame is left out, and audio whose time goes back (counted)."""
        if packet.size == 0 or (packet.pts is None and packet.dts is None):
            return
        if self.shift is None:
            self.held = (self.held + [packet])[-HELD_AUDIO:]
            return
        ticks = round(self.shift / packet.time_base)
        packet.pts = None if packet.pts is None else packet.pts + ticks
        packet.dts = None if packet.dts is None else packet.dts + ticks
        t = float((packet.dts if packet.dts is not None else packet.pts) * packet.time_base)
        if t < self.floor:
            return
        if self.audio_last is not None and t <= self.audio_last:
            self.audio_lost += 1
            return
        self.audio_last = t
        self._put(Arrival(None, t, time.monotonic(), "audio", packet=packet))

    def _put(self, arrival: Arrival) -> None:
        with self.ready:
            if arrival.kind == "frame" and sum(a.frame is not None for a in self.queue) >= self.capacity:
                self._late(next(a for a in self.queue if a.frame is not None))  # memory: the oldest is late anyway
            self.queue.append(arrival)
            self.ready.notify()

    def _late(self, arrival: Arrival, damaged: bool = False) -> None:
        """A frame that cannot be written in time (or, ``damaged``, not trusted): dropped, or kept only as its
        place, to be written covered."""
        frame = arrival.frame
        arrival.shape = (frame.height, frame.width, 3) if isinstance(frame, av.VideoFrame) else frame.shape
        arrival.frame = None
        arrival.kind = "covered" if self.on_overload == "cover" else "dropped"
        if damaged:
            self.damaged += 1
        elif self.on_overload == "cover":
            self.covered += 1
        else:
            self.dropped += 1

    def take(self, max_wait: float, until: float | None = None) -> Arrival | None:
        """The next arrival, waiting for it until ``until`` (``time.monotonic()``; None: until one comes); None
        if none came by then, or at the end of the stream (``ended``). Frames that waited in the queue longer
        than ``max_wait`` seconds would be written too late: dropped or covered first (``on_overload``)."""
        with self.ready:
            while not self.queue and not self.done:
                left = 0.5 if until is None else until - time.monotonic()
                if left <= 0:
                    return None
                self.ready.wait(min(left, 0.5))
            if not self.queue:
                return None
            now = time.monotonic()
            for a in [a for a in self.queue if a.frame is not None and now - a.at > max_wait]:
                self._late(a)
            return self.queue.popleft()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=15)
        if not self.thread.is_alive():
            self.container.close()


def _why(exc: BaseException) -> str:
    """Why a source failed, in words: FFmpeg's read timeout is its "immediate exit" (the interrupt callback)."""
    if isinstance(exc, av.error.ExitError):
        return f"no data for {READ_TIMEOUT:g} s"
    return getattr(exc, "strerror", None) or str(exc)


def _audio_kind(stream) -> tuple | None:
    """What must stay the same for a reconnected source's audio to go on in the same output stream."""
    if stream is None:
        return None
    cc = stream.codec_context
    return cc.name, cc.sample_rate, cc.channels


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


def _planar(video, size: tuple[int, int] | None) -> Planar | None:
    """The layout the stream's frames are kept in, where its decoder says up front that they come in the format
    the live encoder writes (4:2:0, 8 bits, even sizes: H.264 and HEVC cameras), else None (RGB)."""
    cc = video.codec_context
    if size is None or cc.pix_fmt is None:
        return None
    height, width = size
    if pixel_format("libx264", width, height, deep=False) != cc.pix_fmt:
        return None
    return Planar(cc.pix_fmt, width, height, int(cc.colorspace), int(cc.color_range))


class LiveSink:
    """The output of a live run: H.264 (x264 ``zerolatency``, a keyframe every 2 s for players that join) and
    the source's audio copied as it is, where the output holds its codec. Opened before the first frame (a
    muxer takes every stream up front). Encoding and muxing run in a writer thread, one frame behind the
    detector (x264 and swscale release the GIL: on 2 cores the two overlap); the muxer interleaves the audio,
    which arrives ahead of its video, by time. The delay each frame had (arrival -> written) is kept, and the
    time from handing a frame in to its being written (``lag``), which the loop's deadlines leave room for.

    A covered frame costs little: one black picture, made once in the encoder's format, encoded again (x264
    codes a run of them as skipped blocks), and the loop does not wait for it."""

    def __init__(self, output: str, rate: Fraction, config: Config, layout=None) -> None:
        """``layout`` (``planar.Planar``): frames come as the decoder's planar rows, written as they are."""
        self.output, self.rate, self.config, self.layout = output, rate, config, layout
        self.format, self.options = output_format(output)
        self.out = self.stream = self.audio_stream = None
        self.name = "libx264 (zerolatency)"
        self.last: int | None = None       # the last frame's time, in TIME_BASE
        self.delays = Delays()             # arrival -> written, per frame
        self.lags: deque[float] = deque(maxlen=30)  # handed in -> written, the last frames'
        self.audio_packets = 0
        self.raw_aac = False               # AAC's ADTS headers taken off, where the output wants raw AAC
        self.to_aac: ToAac | None = None   # audio the output cannot hold, converted
        self.black: av.VideoFrame | None = None  # a covered frame, in the encoder's format
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trt_anon-live-write")
        self.pending: Future | None = None  # the last real frame handed in
        self.error: BaseException | None = None

    def open(self, width: int, height: int, audio=None) -> str | None:
        """The output, with the source's ``audio`` stream beside the video where it holds its codec; else a
        warning (the audio is left out)."""
        if self.format == "hls":
            Path(self.output).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.out = av.open(self.output, mode="w", format=self.format, options=self.options, timeout=10.0)
            crf = self.config.crf if self.config.crf is not None else CODECS["h264"].crf
            self.stream = self.out.add_stream("libx264", rate=self.rate, options={
                **codec_options("libx264", crf, self.config.preset), "tune": "zerolatency",
                "g": str(max(1, round(2 * self.rate)))})
            self.stream.width, self.stream.height = width, height
            self.stream.pix_fmt = pixel_format("libx264", width, height, deep=False)
            self.stream.time_base = self.stream.codec_context.time_base = TIME_BASE
            if self.layout is not None:  # the decoder's samples go out as they are: tagged with its matrix and range
                cc = self.stream.codec_context
                cc.colorspace, cc.color_range = self.layout.colorspace, self.layout.color_range
                black = self.layout.empty(1)[0]
                for plane, value in zip(self.layout.planes(black), self.layout.fill((0, 0, 0))):
                    plane[...] = value
                self.black = self.layout.frame(black)
            else:
                self.black = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24") \
                    .reformat(format=self.stream.pix_fmt)
            return self._add_audio(audio) if audio is not None else None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.close(flush=False)
            raise OutputError(f"cannot write {self.output}: {getattr(exc, 'strerror', None) or exc}") from None

    def _add_audio(self, audio) -> str | None:
        """The audio stream, copied; converted to AAC where the output cannot hold its codec (G.711 from a
        camera into a recording or HLS), with a note; left out where it cannot be converted either."""
        cc = audio.codec_context
        if cc.name not in AUDIO_FITS.get(self.format, self.out.supported_codecs):
            try:
                self.to_aac = ToAac(cc, self.out)
            except (av.error.FFmpegError, ValueError) as exc:
                return f"audio ({cc.name}) left out: {self.format} cannot hold it and it cannot be converted ({exc})"
            self.audio_stream = self.to_aac.stream
            return f"audio ({cc.name}) converted to AAC: {self.format} cannot hold {cc.name}"
        config = None
        if cc.name == "aac" and self.format not in ("mpegts", "hls"):
            # MP4, Matroska, RTSP and FLV carry raw AAC frames, their config up front; AAC from MPEG-TS comes with
            # an ADTS header on every frame and no config: the config made from the stream's parameters
            self.raw_aac = True
            if not cc.extradata and (config := aac_config(cc)) is None:
                return f"audio (aac, {cc.sample_rate} Hz) left out: no AAC config for that rate"
        self.audio_stream = self.out.add_stream_from_template(audio)
        if config is not None:
            self.audio_stream.codec_context.extradata = config
        return None

    def write(self, frame: np.ndarray, a: Arrival) -> None:
        """Hand a frame to the writer thread, once the one before it is written (one in flight: memory)."""
        handed = time.monotonic()
        if self.out is None:  # a source that did not say its size up front (never kept planar)
            self.open(frame.shape[1], frame.shape[0])
        if self.pending is not None:
            self.pending.result()
        self._raise()
        self.pending = self.worker.submit(self._job, self._encode, frame, a, handed)

    def cover(self, a: Arrival, shape: tuple) -> None:
        """Hand the writer a covered frame (black, ``shape`` (H, W, 3)): nothing to wait for, nothing to convert."""
        if self.out is None:
            self.open(shape[1], shape[0])
        self._raise()
        self.worker.submit(self._job, self._encode, None, a, time.monotonic())

    def audio(self, a: Arrival) -> None:
        """Hand the writer an audio packet: a copy of its own (a muxer takes the packet it writes, and several
        sinks write the same packet), made here, before any writer thread has it."""
        if self.audio_stream is not None:
            self._raise()
            data = bytes(a.packet)
            packet = av.Packet(_raw_aac(data) if self.raw_aac else data)
            packet.time_base = a.packet.time_base
            packet.pts, packet.dts, packet.duration = a.packet.pts, a.packet.dts, a.packet.duration
            packet.is_keyframe = True  # every audio frame stands alone
            self.worker.submit(self._job, self._mux_audio, packet)

    def lag(self) -> float:
        """The longest recent time from handing a frame in to its being written (s); 0 before any."""
        return max(self.lags, default=0.0)

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _job(self, step, *args) -> None:
        """In the writer thread: one step; its error is raised in the loop's thread, by the next call."""
        if self.error is None:
            try:
                step(*args)
            except BaseException as exc:
                self.error = exc

    def _encode(self, frame: np.ndarray | None, a: Arrival, handed: float) -> None:
        """One frame encoded and muxed (None: a covered frame, the black picture)."""
        if frame is None:
            vf = self.black
        elif frame.ndim == 1:  # the decoder's planes, in the encoder's format
            vf = self.layout.frame(frame)
        else:
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=self.stream.pix_fmt)
        t = round(a.time / TIME_BASE)
        self.last = t if self.last is None or t > self.last else self.last + 1  # the encoder's times increase
        vf.pts, vf.time_base = self.last, TIME_BASE
        self._mux(self.stream.encode(vf))
        now = time.monotonic()
        self.delays.add(now - a.at)
        self.lags.append(now - handed)

    def _mux_audio(self, packet: av.Packet) -> None:
        if self.to_aac is not None:
            self._mux(self.to_aac.convert(packet))
        else:
            packet.stream = self.audio_stream
            self._mux([packet])
        self.audio_packets += 1

    def _mux(self, packets) -> None:
        try:
            for p in packets:
                self.out.mux(p)
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"writing {self.output} failed: {getattr(exc, 'strerror', None) or exc}") from None

    def close(self, flush: bool = True) -> None:
        """The writer thread's work done, the encoder flushed, the output finalised (``flush`` False: after an
        error, closed as it is, nothing raised)."""
        self.worker.shutdown(wait=True)
        if self.out is None:
            return
        try:
            if flush:
                self._raise()
                self._mux(self.stream.encode(None))
                if self.to_aac is not None:
                    self._mux(self.to_aac.flush())
        finally:
            out, self.out = self.out, None
            try:
                out.close()
            except (av.error.FFmpegError, OSError) as exc:
                if flush:
                    raise OutputError(f"finishing {self.output} failed: {exc}") from None


def _raw_aac(data: bytes) -> bytes:
    """An AAC frame without its ADTS header (7 bytes, 9 with a CRC), as MP4, Matroska, RTP and FLV carry it.
    (FFmpeg's aac_adtstoasc filter does this too, but also announces the config in the first packet, which a
    Matroska muxer that was given it up front then writes a second time over its header.)"""
    if len(data) > 7 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0:
        return data[7 if data[1] & 1 else 9:]
    return data


class ToAac:
    """Audio the output cannot hold, decoded and encoded to AAC as it comes. Times count samples from a packet's
    own (already the output's); where they jump (a reconnect), the count starts again there."""

    FRAME = 1024  # samples in an AAC frame

    def __init__(self, cc, out) -> None:
        self.decoder = av.CodecContext.create(cc.name, "r")
        self.decoder.sample_rate, self.decoder.layout = cc.sample_rate, cc.layout
        if cc.extradata:
            self.decoder.extradata = cc.extradata
        self.rate = cc.sample_rate if cc.sample_rate in AAC_RATES else 48000
        layout = "mono" if cc.channels == 1 else "stereo"
        self.stream = out.add_stream("aac", rate=self.rate, layout=layout)
        self.stream.time_base = Fraction(1, self.rate)
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.rate)
        self.fifo = av.AudioFifo()
        self.next: int | None = None  # the time of the FIFO's first sample, in samples

    def convert(self, packet: av.Packet) -> list[av.Packet]:
        at = round(float(packet.pts * packet.time_base) * self.rate) if packet.pts is not None else None
        if at is not None and (self.next is None or abs(at - (self.next + self.fifo.samples)) > self.rate // 10):
            self.fifo = av.AudioFifo()  # the start, or a jump: what is left (< 1024 samples) goes
            self.next = at
        for frame in self.decoder.decode(packet):
            for f in self.resampler.resample(frame):
                f.pts = None  # the FIFO counts the samples
                self.fifo.write(f)
        return self._encode(self.FRAME)

    def _encode(self, least: int) -> list[av.Packet]:
        out = []
        while self.next is not None and self.fifo.samples >= least and self.fifo.samples:
            f = self.fifo.read(min(self.FRAME, self.fifo.samples))
            f.pts, f.time_base = self.next, self.stream.time_base
            self.next += f.samples
            out += self.stream.encode(f)
        return out

    def flush(self) -> list[av.Packet]:
        return self._encode(1) + self.stream.encode(None)


def aac_config(cc) -> bytes | None:
    """AAC's AudioSpecificConfig (ISO 14496-3), as MP4 and RTSP carry it, from the stream's parameters: object
    type (HE-AAC is signalled as LC, its SBR implicit, at the core rate), sampling rate index, channels."""
    rate, kind = cc.sample_rate, {"Main": 1, "LC": 2, "SSR": 3, "LTP": 4}.get(cc.profile or "LC", 2)
    if (cc.profile or "").startswith("HE"):
        rate //= 2
    if rate not in AAC_RATES or not 0 < cc.channels < 8:
        return None
    return ((kind << 11) | (AAC_RATES.index(rate) << 7) | (cc.channels << 3)).to_bytes(2, "big")


class Delays:
    """The delay of every frame written, in memory that does not grow with the stream (hours of it): counts in
    1 ms steps up to a minute, for percentiles, and the last 300 delays, for the status line."""

    def __init__(self) -> None:
        self.counts = np.zeros(60_000, np.int64)
        self.recent: deque[float] = deque(maxlen=300)
        self.most = 0.0

    def add(self, seconds: float) -> None:
        self.counts[min(int(seconds * 1000), len(self.counts) - 1)] += 1
        self.recent.append(seconds)
        self.most = max(self.most, seconds)

    def percentile(self, q: float) -> float:
        """The delay (s) that ``q`` percent of frames were within, to the millisecond above; 0 before any."""
        total = int(self.counts.sum())
        if not total:
            return 0.0
        return (int(np.searchsorted(np.cumsum(self.counts), q / 100 * total)) + 1) / 1000


def budget(latency: float, rate: Fraction, config: Config) -> tuple[int, float, int]:
    """For a delay of ``latency`` seconds: the back-fill window in frames (every frame the delay holds, at most
    ``lookback``, at least ``ttl``: a frame leaves by its deadline, so the back-fill takes whatever the budget
    leaves after the work on it); the look-ahead kept for every frame (s, half the budget): a frame that waited
    in the queue so long that less is left is late, dropped or covered before it is worked on (written at once,
    it would have no back-fill); and the queue's length in frames (twice the delay's: memory stays bounded
    however late the frames are)."""
    frames = max(2, int(latency * float(rate)))
    return min(config.lookback, max(config.ttl, frames)), latency / 2, 2 * frames


def stream(source: str, output: str, config: Config | None = None, *, latency: float = 0.5,
           on_overload: str = "drop", input_format: str | None = None, input_options: dict | None = None,
           paced: bool = False, progress: bool = True, log=print, retries: int = RETRIES,
           record: str | None = None) -> Report:
    """Anonymize a live ``source`` into ``output`` until the stream ends or Ctrl-C; a Report back, with
    ``report.live``: the delay each frame had (p50, p99, max, in seconds), frames dropped or covered, reconnects,
    and ``stopped`` ("SIGINT", "SIGTERM") where a signal ended it. ``paced``: read a file at its own frame rate,
    as a live source. ``retries``: times a source that fails is reopened (backing off 1, 2, 4, 8 s) before the
    stream ends. ``record``: a recording (.mkv, .mp4, .ts) written beside ``output`` (a stream to a server, say),
    the same frames, encoded a second time. ``config.json_path``: every written frame's boxes, the report and an
    audit record (the SHA-256 of the files written), as for a file; written whole at the end, or not at all."""
    config = config or Config()
    outputs = [output] + ([record] if record is not None else [])
    _check(source, outputs, config, latency, on_overload)
    gpu = use_gpu(config, image=False)  # backend "gpu" without a usable GPU: refused before the source is opened
    # the model loaded and run before the source is opened: a camera sends from the moment it is opened, and
    # what it sent meanwhile would arrive at once, already late
    detector, gpu, notes = _detector(config, gpu)
    look = _look(detector, gpu, WARM_SIZE, times=2)  # what a look costs once set up: the first deadlines' margin
    src = LiveSource(source, 1, on_overload, input_format, input_options, paced, log, retries)
    try:
        with contextlib.ExitStack() as files:
            boxes = None
            if config.json_path:
                tmp = files.enter_context(atomic_output(Path(config.json_path), config.overwrite))
                boxes = BoxLog(files.enter_context(open(tmp, "w", encoding="utf-8")))
            report = _Run(src, outputs, config, latency, (detector, gpu, look), notes, progress, log, boxes).go()
            if boxes is not None:
                boxes.close(report, audit.live_record(source, outputs, config, report))
    finally:
        src.stop()
    return report


def _detector(config: Config, gpu: bool) -> tuple[object, bool, list[str]]:
    """The detector, whether it runs on the GPU, and notes. On a GPU (TensorRT, else PyTorch CUDA) each frame is
    uploaded for it; the frames stay on the host for redaction (~2 ms a frame) and x264. A GPU detector that
    cannot be made falls back to ONNX Runtime on the CPU, said in a note (backend "gpu": an error)."""
    notes: list[str] = []
    if gpu:
        try:
            return select_detector(config, gpu=True, notes=notes), True, notes
        except Exception as exc:
            if config.backend == "gpu":
                raise BackendError(f"backend 'gpu' cannot run here: {first_line(exc)}") from None
            notes.append(f"CPU path: {first_line(exc)}")
    return select_detector(config, gpu=False), False, notes


def _look(detector, gpu: bool, hw: tuple[int, int], times: int = 1) -> float:
    """The detector run ``times`` on a black frame of ``hw`` (its first run at a size sets it up); the seconds the
    last run took."""
    frames = np.zeros((1, *hw, 3), np.uint8)
    if gpu:
        import cupy
        frames = cupy.asarray(frames)
    for _ in range(times):
        started = time.monotonic()
        detector(frames)  # its boxes come back to the host: the GPU's work is done
    return time.monotonic() - started


def _check(source: str, outputs: list[str], config: Config, latency: float, on_overload: str) -> None:
    """Mistakes refused before anything is opened. ``outputs``: the output, then the recording if one is asked."""
    if on_overload not in OVERLOAD:
        raise ConfigError(f"on_overload must be one of {', '.join(OVERLOAD)}, not {on_overload!r}")
    if not 0.1 <= latency <= 30:
        raise ConfigError(f"latency must be between 0.1 and 30 seconds, not {latency}")
    if config.sign:
        raise ConfigError("--sign is for files: a live stream's output is never whole to be signed")
    for output in outputs:
        output_format(output)
    for record in outputs[1:]:
        if "://" in record or output_format(record)[0] == "hls":
            raise ConfigError(f"--record {record}: a recording is a .mkv, .mp4 or .ts file")
    for path in [o for o in outputs if "://" not in o] + ([config.json_path] if config.json_path else []):
        if Path(path).exists() and not config.overwrite:
            raise OutputError(f"output {path} exists; pass --overwrite to replace it")
    if not is_live(source) and not Path(source).exists():
        raise InputError(f"input {source} not found")
    if config.keep_faces:
        from .consent import people
        people(config.keep_faces)


class _Run:
    """One live run: the loop on the ``Anonymizer``'s steps, from the source's queue to the sinks (the output and,
    if asked, a recording: each its own encoder and writer thread; the delays are the output's).

    Every frame has a deadline: its arrival plus the budget (``latency``), less the time the work after it takes
    (``_margin``, measured as the run goes). A frame leaves when its boxes are final (``lookback`` frames later)
    or when its deadline comes, whichever is first: then with the boxes it has, as at the end of a stream (the
    frames held are tracked and the last frame looked at). So a source that stalls or bursts does not hold frames
    back past the budget, and the back-fill gets whatever time the budget leaves after the work."""

    def __init__(self, src: LiveSource, outputs: list[str], config: Config, latency: float, detector: tuple,
                 notes: list[str], progress: bool, log, boxes: BoxLog | None = None) -> None:
        """``detector``: (the detector, on the GPU or not, the seconds a look took once it was set up)."""
        self.src, self.latency, self.log, self.boxes = src, latency, log, boxes
        self.detector, self.gpu, self.look = detector
        video = src.container.streams.video[0]
        size = (video.height, video.width) if video.width and video.height else None
        if size is not None and size != WARM_SIZE:  # set up for this size too (once: the camera is sending)
            _look(self.detector, self.gpu, size)
        self.layout = None if self.gpu else _planar(video, size)  # frames kept in the decoder's own pixels
        self.redactor = select_redactor(config, gpu=False, layout=self.layout)
        self.lookback, self.reserve, src.capacity = budget(latency, src.rate, config)
        self.config = Config.from_options(config, lookback=self.lookback, batch_size=1)
        self.kept: list[dict] = []              # the tracks kept visible (--keep-face) by earlier trackers
        self.anon = self._anonymizer()
        self.report = Report(src.url, outputs[0])
        for note in notes:
            self._note(note)
        self.sinks = [LiveSink(o, src.rate, self.config, self.layout) for o in outputs]
        self.sink = self.sinks[0]
        if size is not None:
            for sink in self.sinks:
                try:
                    note = sink.open(size[1], size[0], src.audio)
                except BaseException:
                    self._close(flush=False)
                    raise
                if note:
                    self._note(note)
            src.copy_audio = any(sink.audio_stream is not None for sink in self.sinks)
        self.waiting: deque[Arrival] = deque()  # in the tracker, not yet written
        self.steps: deque[float] = deque(maxlen=60)  # the last steps' times (s): the loop is busy that long
        self.detector_errors = 0
        self.stopped: str | None = None
        self.shape: tuple[int, ...] = ()        # the frames' (H, W, 3): a covered frame's size
        self.status_at = 0.0
        self.bar = tqdm(unit="frame", disable=not progress, dynamic_ncols=True, desc="live", delay=0.5)

    def _note(self, text: str) -> None:
        """A warning for the report, said now too."""
        self.report.warnings.append(text)
        self.log(text)

    def _anonymizer(self) -> Anonymizer:
        """A fresh tracker (the first, or after a gap or a detector error); the tracks the last one kept visible
        go into the report."""
        if hasattr(self, "anon"):
            self.kept.extend(self.anon.kept())
        return Anonymizer(self.config, detector=self.detector, redactor=self.redactor, layout=self.layout)

    def go(self) -> Report:
        """Until the stream ends, Ctrl-C or SIGTERM; the output finalised either way."""
        started = time.perf_counter()
        self.src.start()
        try:
            try:
                while True:
                    a = self.src.take(self._max_wait(), self._due())
                    busy = time.monotonic()
                    if a is not None:
                        self._step(a)
                    elif self.src.ended:
                        break
                    self._release()
                    if a is None or a.kind != "audio":  # how long the loop was busy, unable to see a deadline
                        self.steps.append(time.monotonic() - busy)
                    self._status()
                self._track(self.anon.end)
            except (KeyboardInterrupt, Terminated) as exc:  # Ctrl-C, SIGTERM: the stream ends here, cleanly
                self._interrupted(exc)
            self.src.stop()
            self._close()
        except BaseException:
            self.src.stop()
            self._close(flush=False)
            self.bar.close()
            raise
        self._status(force=True)
        self.bar.close()
        if not self.report.frames and self.stopped is None:
            raise InputError(f"{self.src.url}: no frame arrived")
        self.report.wall = time.perf_counter() - started
        return self._finish()

    def _step(self, a: Arrival) -> None:
        """One arrival: audio copied; a gap ends the tracker's stream; a frame tracked, the final ones written."""
        if a.kind == "audio":
            for sink in self.sinks:
                sink.audio(a)
            return
        if a.kind == "gap":  # the source stopped: what waits goes out, and the tracker starts afresh
            self._track(self.anon.end)
            self.anon = self._anonymizer()
            return
        self.waiting.append(a)
        if a.frame is None:  # too late to be written: a frame not looked at, for the tracker
            self._track(self.anon.skip)
            return
        if isinstance(a.frame, av.VideoFrame):
            a.frame = self._pixels(a.frame)
        self.shape = a.frame.shape if self.layout is None else (self.layout.height, self.layout.width, 3)
        frames = self._device(a.frame[None])
        # with detect_every="auto" the Anonymizer holds frames up to its next look, then tracks them together
        self._track(lambda: self.anon.track(frames))

    def _pixels(self, frame: av.VideoFrame) -> np.ndarray:
        """A decoded frame as the loop works on it: its planes in a row (a frame of another format, size or range
        than the decoder said up front, or after a reconnection, brought to the stream's), or RGB where the stream
        is not kept planar."""
        if self.layout is None:
            return frame.to_ndarray(format="rgb24")
        lay = self.layout
        if frame.format.name != lay.pix_fmt or (frame.width, frame.height) != (lay.width, lay.height) or \
                (int(frame.color_range) == 2) != (lay.color_range == 2):  # full range, or limited (or unsaid)
            frame = frame.reformat(format=lay.pix_fmt, width=lay.width, height=lay.height,
                                   dst_color_range=lay.color_range or 1)
        row = lay.empty(1)[0]
        lay.read(frame, row)
        return row

    def _margin(self) -> float:
        """The time to leave before a frame's deadline: the longest of the loop's last steps (a frame or a
        release: it may be in one when the deadline comes) and the longest recent time a sink took to write a
        frame handed to it."""
        return max(self.steps, default=self.look) + max(sink.lag() for sink in self.sinks)

    def _due(self) -> float | None:
        """When the oldest frame waiting must leave (``time.monotonic()``); None while none waits."""
        return self.waiting[0].at + self.latency - self._margin() if self.waiting else None

    def _max_wait(self) -> float:
        """How long a frame may wait in the queue and still have its look-ahead and the work on it in time."""
        return max(0.5 / float(self.src.rate), self.latency - self.reserve - self._margin())

    def _release(self) -> None:
        """The frames whose deadline came leave now, with the boxes they have (as at the end of a stream); frames
        without pixels (covered, dropped) need no look for that."""
        due = time.monotonic() + self._margin() - self.latency
        n, look = 0, False
        for i, a in enumerate(self.waiting):
            if a.at > due:
                break
            n, look = i + 1, look or a.kind == "frame"
        if n:
            self._track(lambda: self.anon.end(n, look))

    def _track(self, step) -> None:
        """One of the Anonymizer's steps, which may run the detector; the frames it made final written. A detector
        error covers every frame waiting (fail closed) and the tracker starts afresh."""
        try:
            final = step()
        except DetectorError as exc:
            self._detector_failed(exc)
            return
        self._final(final)

    def _device(self, frames: np.ndarray):
        """The frames where the detector takes them: uploaded for a GPU detector."""
        if not self.gpu:
            return frames
        import cupy
        return cupy.asarray(frames)

    def _final(self, dets) -> None:
        """Write the frames whose boxes became final: redacted, or covered whole; a dropped one not at all."""
        for d in dets:
            a = self.waiting.popleft()
            if a.kind == "frame":
                frames, boxes = self.anon.redact(a.frame[None], [d])
                for sink in self.sinks:
                    sink.write(frames[0], a)
                self._written(a, d, boxes[0])
            elif a.kind == "covered":
                self._cover(a)

    def _cover(self, a: Arrival) -> None:
        shape = a.shape or (a.frame.shape if isinstance(a.frame, np.ndarray) and a.frame.ndim == 3 else self.shape)
        a.frame = None
        for sink in self.sinks:
            sink.cover(a, shape)
        self._written(a, None, np.array([[0, 0, shape[1], shape[0]]], np.float32))

    def _written(self, a: Arrival, d, boxes: np.ndarray) -> None:
        """A frame handed to the sinks: counted, and its boxes in the --json file (a covered frame: the whole
        frame, ``d`` None)."""
        self.report.count(0 if d is None else int((d.kind == HIT).sum()), len(boxes) if d is not None else 0)
        if self.boxes is not None:
            self.boxes.add(a.index, round(a.time / TIME_BASE), [] if d is None else d.to_json(), boxes)
        self.bar.update(1)

    def _detector_failed(self, exc: DetectorError) -> None:
        """Every frame waiting for its boxes is covered whole, and the tracker starts afresh."""
        self.detector_errors += 1
        self.log(f"detector error, frames covered: {exc}")
        self.anon = self._anonymizer()
        for a in self.waiting:
            if a.kind != "dropped":
                self._cover(a)
        self.waiting.clear()

    def _close(self, flush: bool = True) -> None:
        """Every sink finalised (``flush`` False: after an error, closed as they are); the first error raised."""
        errors = []
        for sink in self.sinks:
            try:
                sink.close(flush)
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _status(self, force: bool = False) -> None:
        """The status line, twice a second (and at the end): the recent delays, frames dropped and covered."""
        now = time.monotonic()
        if not force and now - self.status_at < 0.5:
            return
        self.status_at = now
        delays = ""
        if self.sink.delays.recent:
            recent = np.asarray(self.sink.delays.recent)
            delays = f"delay p50 {np.percentile(recent, 50):.2f}s p99 {np.percentile(recent, 99):.2f}s | "
        self.bar.set_postfix_str(f"{delays}dropped {self.src.dropped} | covered {self.src.covered}", refresh=force)

    def _interrupted(self, why: BaseException) -> None:
        """Stopped mid-stream: the frames waiting for their boxes get them as at the end of a stream."""
        self.stopped = "SIGINT" if isinstance(why, KeyboardInterrupt) else "SIGTERM"
        try:
            self._track(self.anon.end)
            note = "the recording is whole up to there"
        except Exception:  # stopped inside the tracker: its state is not whole, those frames are not written
            note = f"{len(self.waiting)} frame(s) waiting for their boxes not written"
        self.report.warnings.append(f"stopped ({self.stopped}); {note}")

    def _finish(self) -> Report:
        report, src, sink = self.report, self.src, self.sink
        report.duration = float((sink.last or 0) * TIME_BASE)
        report.kept = self.kept + self.anon.kept()
        report.backends = {"decode": "pyav (live)", "detect": self.detector.name, "redact": self.redactor.name,
                           "encode": sink.name}
        d = sink.delays
        report.live = {"delay_p50": d.percentile(50), "delay_p99": d.percentile(99), "delay_max": round(d.most, 3),
                       "latency": self.latency, "lookback": self.lookback, "dropped": src.dropped,
                       "covered": src.covered, "damaged": src.damaged, "detector_errors": self.detector_errors,
                       "reconnects": src.reconnects, "audio_packets": sink.audio_packets,
                       **({"record": self.sinks[1].output} if len(self.sinks) > 1 else {}),
                       **({"stopped": self.stopped} if self.stopped else {})}
        if src.dropped or src.covered:
            report.warnings.append(f"the machine could not keep up within {self.latency} s: {src.dropped} frame(s) "
                                   f"dropped, {src.covered} covered (never written unredacted)")
        if src.damaged:
            done = "covered" if src.on_overload == "cover" else "dropped"
            report.warnings.append(f"the stream was damaged: {src.damaged} frame(s) the decoder repaired, or that drew "
                                   f"on one before a keyframe, were {done} (their pixels may be out of place)")
        if self.detector_errors:
            report.warnings.append(f"the detector failed {self.detector_errors} time(s): the frames waiting for "
                                   "their boxes then were covered")
        if src.audio_lost:
            report.warnings.append(f"{src.audio_lost} audio packet(s) left out: their time went back")
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
