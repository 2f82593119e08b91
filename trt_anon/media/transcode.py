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

    Output times count samples from the first decoded frame's time, so the audio starts where
    the input's did and never drifts from it (the resampler keeps every sample).
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
        self.decoder = cc
        self.channels = channels
        self.resampler = av.AudioResampler(format="flt", layout=self.layout, rate=OPUS_RATE, frame_size=OPUS_FRAME)
        self.next_pts: int | None = None   # output time of the next sample, in 1/48000 s
        self.undecodable = 0
        self.samples_in = 0

    def describe(self) -> str:
        extra = f" (downmixed from {self.channels} channels)" if self.channels > 8 else ""
        return (f"{self.from_codec} -> Opus {self.stream.bit_rate // 1000} kb/s {self.layout}"
                f" 48 kHz{extra}")

    def feed(self, packet: av.Packet | None, output: av.container.OutputContainer) -> None:
        """Decode ``packet`` (None: flush everything) and write the Opus packets it completes."""
        try:
            frames = self.decoder.decode(packet)
        except av.error.EOFError:
            frames = []
        except av.error.FFmpegError:  # a damaged packet: its samples are lost, the rest goes on
            self.undecodable += 1
            frames = []
        for frame in frames:
            if self.next_pts is None:
                start = frame.pts * frame.time_base if frame.pts is not None else Fraction(0)
                self.next_pts = round(start * OPUS_RATE)
            self.samples_in += frame.samples
            frame.pts = None  # the resampler's own clock; ours is next_pts
            self._encode(self.resampler.resample(frame), output)
        if packet is None:
            self._encode(self.resampler.resample(None), output)
            output.mux(self.stream.encode(None))

    def _encode(self, frames: list[av.AudioFrame], output: av.container.OutputContainer) -> None:
        for f in frames:
            f.pts, f.time_base = self.next_pts, TIME_BASE  # not the stream's: the muxer changes it (WebM: ms)
            self.next_pts += f.samples
            output.mux(self.stream.encode(f))
