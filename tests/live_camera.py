"""A camera on loopback for the live-stream tests: plays a clip as MPEG-TS to whoever connects to
tcp://127.0.0.1:PORT (it listens), video re-encoded and audio copied, at the clip's own frame rate, then ends;
or stops after N frames, as a camera that goes away (``again``: and comes back, listening again, to play the
whole clip). Run as a separate process: FFmpeg's listening socket blocks its thread.

    python live_camera.py PORT CLIP [STOP_AFTER [again]]
"""
import sys
import time

import av


def play(port: int, clip: str, stop_after: int | None) -> None:
    with av.open(clip) as src:
        out = av.open(f"tcp://127.0.0.1:{port}?listen=1&listen_timeout=20000", "w", format="mpegts",
                      options={"flush_packets": "1"})
        video = src.streams.video[0]
        audio = src.streams.audio[0] if src.streams.audio else None
        stream = out.add_stream("libx264", rate=video.average_rate,
                                options={"tune": "zerolatency", "preset": "ultrafast", "crf": "10"})
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        sound = out.add_stream_from_template(audio) if audio is not None else None
        start, n = None, 0
        for packet in src.demux([video] + ([audio] if audio is not None else [])):
            if audio is not None and packet.stream.index == audio.index:
                if packet.size:
                    packet.stream = sound
                    out.mux(packet)
                continue
            for frame in video.decode(packet):
                for p in stream.encode(frame.reformat(format="yuv420p")):
                    out.mux(p)
                start = start or time.time()  # connected (the first packet went out): the clip's pace from here
                n += 1
                if stop_after and n >= stop_after:
                    out.close()
                    return
                time.sleep(max(0.0, start + n / float(video.average_rate) - time.time()))
        for p in stream.encode():
            out.mux(p)
        out.close()


port, clip = int(sys.argv[1]), sys.argv[2]
stop_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
play(port, clip, stop_after)
if stop_after and sys.argv[4:] == ["again"]:
    play(port, clip, None)
