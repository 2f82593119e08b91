"""A camera on loopback for the live-stream tests and the live bench: an MPEG-TS stream (H.264, and AAC with an
ADTS header on every frame, as FFmpeg and IP cameras send it) played to whoever connects to
tcp://127.0.0.1:PORT (it listens), at its own frame rate, then closed. ``make_ts`` encodes it once from a clip and
notes where each frame ends in the bytes; the camera sends the bytes as the frames fall due, so a test picks how
they arrive:

    python live_camera.py PORT CAM.ts [--stop-after N [--again]] [--end-after N] [--stall FRAME:SECONDS ...]
                          [--constant-rate] [--damage FRACTION [--seed N]]

``--stop-after N``: after N frames the connection is reset (a camera that fails; ``--again``: it listens again
and plays the whole stream); ``--end-after N``: closed cleanly (its sender ended it); ``--stall``: nothing is sent
for SECONDS before frame FRAME, then the frames that fell due meanwhile go at once, as FFmpeg's ``-re`` catches
up; ``--constant-rate``: the bytes at a constant rate (as a constant-bitrate encoder or a shaped link sends
them: a keyframe's frames arrive late, in bursts); ``--damage``: that fraction of the 188-byte TS packets after
the first second get a byte flipped (which packets and bytes: drawn from ``--seed``, the same every time).
"""
from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

TS = 188  # bytes in an MPEG-TS packet


def make_ts(clip: str | Path, ts: str | Path, keyint: int = 30) -> list[int]:
    """The clip as a camera sends it: H.264 (x264 ``zerolatency``, a keyframe every ``keyint`` frames) and the
    audio encoded to AAC by FFmpeg, in MPEG-TS. Returns, and writes beside it (``.json``), the byte offset where
    each frame's packets end (where the next frame's begin: the audio between goes with the frame before)."""
    with av.open(str(clip)) as src, av.open(str(ts), "w", format="mpegts") as out:
        video = src.streams.video[0]
        audio = src.streams.audio[0] if src.streams.audio else None
        rate = video.average_rate
        stream = out.add_stream("libx264", rate=rate, options={
            "tune": "zerolatency", "preset": "ultrafast", "crf": "12", "g": str(keyint), "sc_threshold": "0"})
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        sound = out.add_stream("aac", rate=audio.sample_rate, layout=audio.layout.name) if audio else None
        for frame in src.decode(*([video, audio] if audio is not None else [video])):
            encoder = sound if isinstance(frame, av.AudioFrame) else stream
            for p in encoder.encode(frame if encoder is sound else frame.reformat(format="yuv420p")):
                out.mux(p)
        for encoder in [stream] + ([sound] if sound is not None else []):
            for p in encoder.encode():
                out.mux(p)
    with av.open(str(ts)) as c:  # where each frame's packets start, as the demuxer finds them
        starts = [p.pos for p in c.demux(video=0) if p.size]
    ends = starts[1:] + [Path(ts).stat().st_size]
    Path(ts).with_suffix(".json").write_text(json.dumps({"rate": str(rate), "ends": ends}))
    return ends


def damaged(ts: Path, fraction: float, seed: int = 0) -> bytes:
    """The stream's bytes with one byte flipped in ``fraction`` of its TS packets after its first second (the
    payload, not the sync byte or the header), the same for the same ``seed``: what ``--damage`` sends."""
    data = bytearray(Path(ts).read_bytes())
    info = json.loads(Path(ts).with_suffix(".json").read_text())
    rng = random.Random(seed)
    first = info["ends"][min(len(info["ends"]) - 1, round(float(Fraction(info["rate"]))))] // TS  # after 1 s
    for k in range(first, len(data) // TS):
        if rng.random() < fraction:
            data[k * TS + rng.randrange(4, TS)] ^= 0xFF
    return bytes(data)


def intact(clip, stream: bytes, tmp: Path, fps: float = 30) -> dict[int, bool]:
    """For each frame of a (damaged) MPEG-TS stream, as it decodes: whether every face in it came through whole
    (each face's pixels within codec noise of the clean clip's), not filled in from other pixels by the decoder.
    Only the faces' pixels are kept while the clean clip is read (a long clip's frames are not all held)."""
    tmp.write_bytes(stream)

    def faces(i: int, frame) -> list[np.ndarray]:
        a = frame.to_ndarray(format="rgb24").astype(np.int16)
        return [a[max(0, int(y1)):max(0, int(y2)), max(0, int(x1)):max(0, int(x2))] for x1, y1, x2, y2 in clip.boxes[i]]

    got: dict[int, list[np.ndarray]] = {}
    with av.open(str(tmp)) as c:
        c.streams.video[0].thread_type = "NONE"  # as the live reader decodes
        start = None
        for f in c.decode(video=0):
            start = f.time if start is None else start  # MPEG-TS's clock starts where it will: from the first frame
            i = round((f.time - start) * fps)
            if 0 <= i < len(clip.boxes):  # (not a time the damage changed)
                got[i] = faces(i, f)
    with av.open(str(clip.path)) as c:
        return {i: all(np.abs(a - b).mean() < 10 for a, b in zip(got[i], faces(i, f)) if a.size)
                for i, f in enumerate(c.decode(video=0)) if i in got}


def serve(port: int, ts: Path, stop_after: int | None = None, end_after: int | None = None,
          stalls: dict[int, float] | None = None, constant_rate: bool = False, damage: float = 0.0,
          seed: int = 0) -> None:
    """One connection: the stream sent as its frames fall due (see the module's docstring)."""
    info = json.loads(ts.with_suffix(".json").read_text())
    ends, period = info["ends"], 1 / float(Fraction(info["rate"]))
    data = damaged(ts, damage, seed) if damage else ts.read_bytes()
    with socket.create_server(("127.0.0.1", port)) as server:
        server.settimeout(30)
        conn, _ = server.accept()
    with conn:
        start, sent = time.monotonic(), 0
        last = len(ends) if stop_after is None and end_after is None else min(len(ends), stop_after or end_after)
        if constant_rate:
            rate, stop = ends[-1] / (len(ends) * period), ends[last - 1]
            for at in range(0, stop, 7 * TS):  # 1316 bytes, as a UDP packet of TS carries
                time.sleep(max(0.0, start + at / rate - time.monotonic()))
                conn.sendall(data[at:min(at + 7 * TS, stop)])
        else:
            for i in range(last):
                if (stalls or {}).get(i):
                    time.sleep((stalls or {})[i])  # stalled: then what fell due goes at once
                time.sleep(max(0.0, start + i * period - time.monotonic()))
                conn.sendall(data[sent:ends[i]])
                sent = ends[i]
        if stop_after is not None:  # a camera that fails: the connection reset, not closed
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("ts", type=Path)
    ap.add_argument("--stop-after", type=int)
    ap.add_argument("--again", action="store_true")
    ap.add_argument("--end-after", type=int)
    ap.add_argument("--stall", action="append", default=[], metavar="FRAME:SECONDS")
    ap.add_argument("--constant-rate", action="store_true")
    ap.add_argument("--damage", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    stalls = {int(f): float(s) for f, s in (x.split(":") for x in args.stall)}
    serve(args.port, args.ts, args.stop_after, args.end_after, stalls, args.constant_rate, args.damage, args.seed)
    if args.stop_after and args.again:
        serve(args.port, args.ts)


if __name__ == "__main__":
    main()
