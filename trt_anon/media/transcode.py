"""Audio the chosen container cannot hold, converted as FFmpeg would (WebM + AAC -> Opus).

Only used when the user named the output container: the default output is one that holds every
stream as it is, and copied packets are always preferred to a second lossy encode.
"""
from __future__ import annotations

from fractions import Fraction

import av

# The audio codec a muxer's unfit audio becomes, and the FFmpeg encoder that writes it.
TARGETS = {"webm": ("opus", "libopus")}
OPUS_RATE = 48000            # the only rate Opus is decoded at; libopus takes 8-48 kHz, FFmpeg players expect 48
TIME_BASE = Fraction(1, OPUS_RATE)
OPUS_FRAME = 960             # 20 ms, libopus' default frame_duration
GAP = OPUS_FRAME // 2       # a jump in the input's times larger than this (10 ms) is filled with silence
KBPS_PER_CHANNEL = 64        # 128 kb/s stereo: transparent for most listeners
# libopus' channel mapping family 1 takes the Vorbis channel orders only (FFmpeg's names for them);
# the resampler moves other layouts' channels there (5.1 with side speakers: side -> back).
OPUS_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def target(muxer: str) -> tuple[str, str] | None:
    """(codec, encoder) for audio a ``muxer`` file cannot hold as it is, or None where it stays an error."""
    t = TARGETS.get(muxer)
    return t if t is not None and t[1] in av.codecs_available else None


class AudioTranscoder:
    """One input audio stream decoded, resampled to 48 kHz and encoded to Opus, packet by packet.

    Output times count samples from the first decoded frame's time, so the audio starts where the
    input's did and never drifts from it (the resampler keeps every sample). Where the input's times
    jump (a dropout in a recording, a damaged file), silence fills the gap and overlapping frames are
    dropped, so what follows stays in time with the video, as ffmpeg's ``aresample=async`` does.
    """

    def __init__(self, src: av.audio.stream.AudioStream, output: av.container.OutputContainer,
                 encoder: str) -> None:
        cc = src.codec_context
        channels = cc.channels or 2
        self.layout = OPUS_LAYOUTS.get(channels, "7.1")
        self.from_codec = cc.codec.canonical_name  # "mp3", not its decoder's name "mp3float"
        self.stream = output.add_stream(encoder, rate=OPUS_RATE, options={"frame_duration": "20"})
        self.stream.layout = self.layout
        self.stream.bit_rate = KBPS_PER_CHANNEL * 1000 * min(channels, 8)
        self.stream.time_base = TIME_BASE
        self.output = output
        self.decoder = cc
        self.channels = channels
        self.resampler: av.AudioResampler | None = None
        self.shape: tuple | None = None    # (format, layout, rate) the resampler was made for
        self.fifo = av.AudioFifo()         # resampled samples, cut into 20 ms frames for the encoder
        self.start: int | None = None      # output time of the first sample, in 1/48000 s
        self.queued = 0                    # samples put in the FIFO so far (resampled and silence)
        self.encoded = 0                   # samples taken from it
        self.undecodable = 0
        self.filled = 0                    # samples of silence put in gaps
        self.dropped = 0                   # decoded frames dropped: their time was already written

    def describe(self) -> str:
        extra = f" (downmixed from {self.channels} channels)" if self.channels > 8 else ""
        return (f"{self.from_codec} -> Opus {self.stream.bit_rate // 1000} kb/s {self.layout}"
                f" 48 kHz{extra}")

    def feed(self, packet: av.Packet | None) -> None:
        """Decode ``packet`` (None: flush everything) and write the Opus packets it completes."""
        try:
            frames = self.decoder.decode(packet)
        except av.error.EOFError:
            frames = []
        except av.error.FFmpegError:  # a damaged packet: its samples are lost (a gap, filled), the rest goes on
            self.undecodable += 1
            frames = []
        for frame in frames:
            if not self._place(frame):
                continue
            shape = (frame.format.name, frame.layout.name, frame.sample_rate)
            if shape != self.shape:  # a new resampler for the new format; the old one's samples first
                self._resample(None)
                self.resampler = av.AudioResampler(format="flt", layout=self.layout, rate=OPUS_RATE)
                self.shape = shape
            frame.pts = None  # the resampler's and FIFO's clocks are the sample counts
            self._resample(frame)
        if packet is None:
            self._resample(None)
            self._encode(final=True)
            self.output.mux(self.stream.encode(None))

    def _place(self, frame: av.AudioFrame) -> bool:
        """Whether ``frame`` is to be used: silence is queued first where it starts more than 10 ms
        after what was queued; False where it ends before that (its time was written already)."""
        if frame.pts is None:
            return True
        at = round(frame.pts * frame.time_base * OPUS_RATE)
        if self.start is None:
            self.start = at
            return True
        gap = at - (self.start + self.queued)
        if gap > GAP:
            self._silence(gap)
        elif -gap >= round(frame.samples * OPUS_RATE / frame.sample_rate):
            self.dropped += 1
            return False
        return True

    def _silence(self, samples: int) -> None:
        self.filled += samples
        while samples > 0:  # a long gap is queued and encoded a second at a time (bounded memory)
            n = min(samples, OPUS_RATE)
            zeros = av.AudioFrame(format="flt", layout=self.layout, samples=n)
            for plane in zeros.planes:
                plane.update(bytes(plane.buffer_size))
            zeros.sample_rate = OPUS_RATE
            self._queue(zeros)
            samples -= n

    def _resample(self, frame: av.AudioFrame | None) -> None:
        if self.resampler is not None:
            for f in self.resampler.resample(frame):
                self._queue(f)

    def _queue(self, frame: av.AudioFrame) -> None:
        frame.pts = None
        self.fifo.write(frame)
        self.queued += frame.samples
        self._encode(final=False)

    def _encode(self, final: bool) -> None:
        """Encode what the FIFO holds in 20 ms frames (and, when ``final``, the short frame that ends it)."""
        while self.fifo.samples >= OPUS_FRAME or (final and self.fifo.samples):
            f = self.fifo.read(min(OPUS_FRAME, self.fifo.samples))
            f.pts, f.time_base = (self.start or 0) + self.encoded, TIME_BASE  # not the stream's: WebM makes it ms
            self.encoded += f.samples
            self.output.mux(self.stream.encode(f))
