"""A camera on loopback for the live-stream tests: plays a clip as MPEG-TS to whoever connects to
tcp://127.0.0.1:PORT (it listens), at the clip's own frame rate, then ends; or stops after N frames,
as a camera that goes away. Run as a separate process: FFmpeg's listening socket blocks its thread."""
import sys
import time

import av

port, clip = int(sys.argv[1]), sys.argv[2]
stop_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
with av.open(clip) as src:
    out = av.open(f"tcp://127.0.0.1:{port}?listen=1&listen_timeout=20000", "w", format="mpegts",
                  options={"flush_packets": "1"})
    video = src.streams.video[0]
    stream = out.add_stream("libx264", rate=video.average_rate,
                            options={"tune": "zerolatency", "preset": "ultrafast", "crf": "10"})
    stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
    start, n = None, 0
    for frame in src.decode(video):
        for packet in stream.encode(frame.reformat(format="yuv420p")):
            out.mux(packet)
        start = start or time.time()  # connected (the first packet went out): the clip's pace from here
        n += 1
        if stop_after and n >= stop_after:
            out.close()
            sys.exit(0)
        time.sleep(max(0.0, start + n / float(video.average_rate) - time.time()))
    for packet in stream.encode():
        out.mux(packet)
    out.close()
