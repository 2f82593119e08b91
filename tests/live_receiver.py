"""An RTSP server for the live-stream tests: receives one push on rtsp://127.0.0.1:PORT/anon (FFmpeg's
rtsp_flags=listen, as a relay would) and keeps every video frame it decodes and the time of every audio packet:
python live_receiver.py PORT OUT.npz. Run as a separate process: FFmpeg's listening socket blocks its thread."""
import sys

import av
import numpy as np

port, out = sys.argv[1], sys.argv[2]
src = av.open(f"rtsp://127.0.0.1:{port}/anon", options={"rtsp_flags": "listen", "listen_timeout": "30"})
video = src.streams.video[0]
frames, times, audio = [], [], []
for packet in src.demux():
    if packet.stream.type == "audio":
        if packet.size and packet.pts is not None:
            audio.append(float(packet.pts * packet.time_base))
        continue
    for frame in video.decode(packet):
        frames.append(frame.to_ndarray(format="rgb24"))
        times.append(float(frame.time) if frame.time is not None else -1.0)
np.savez(out, frames=np.stack(frames), times=np.array(times), audio=np.array(audio))
print("frames", len(frames), "audio packets", len(audio))
