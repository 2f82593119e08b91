"""Live streams on loopback: a camera (tests/live_camera.py, in its own process) sends a real-face clip with a tone
as MPEG-TS (H.264, AAC with ADTS headers, as FFmpeg and IP cameras send it) over TCP at its own pace, or stalling,
in bursts, damaged, failing, ending; trt_anon reads it as it plays. Every written frame is checked against the
clip's known faces, the audio against the video's times, every file written as ffprobe would; nothing is left
running."""
from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import av.logging
import numpy as np
import pytest
from helpers import cell_deviation, decode_frames, frame_problem
from live_camera import damaged, intact, make_ts
from synth import Face, make_clip

from trt_anon import Config, live
from trt_anon.cli import main
from trt_anon.detect import onnxrt
from trt_anon.errors import DetectorError

CAMERA = Path(__file__).with_name("live_camera.py")
RECEIVER = Path(__file__).with_name("live_receiver.py")
FRAMES = 90
FRAME = 1 / 30


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("live") / "cam.mp4", 320, 180, frames=FRAMES, audio=1,
                     faces=[Face(64, (40, 30), (2.0, 0.5)), Face(48, (220, 90), (-1.0, 0.3), enter=30)])


@pytest.fixture(scope="module")
def ts(clip):
    """The clip as the camera sends it: MPEG-TS, H.264 and AAC (ADTS)."""
    path = clip.path.with_name("cam.ts")
    make_ts(clip.path, path)
    return path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def camera(ts):
    """Start a camera (``camera(*options)``, live_camera.py's options) and get its URL; stopped after the test."""
    procs = []

    def start(*options: str) -> str:
        port = _port()
        procs.append(subprocess.Popen([sys.executable, str(CAMERA), str(port), str(ts), *options]))
        return f"tcp://127.0.0.1:{port}"

    yield start
    for p in procs:
        p.kill()
        p.wait()


def _probe(path: Path, streams: int = 2, audio: bool = True) -> int:
    """``path`` read through, every packet demuxed and decoded, as ``ffprobe -v error`` would: no error from FFmpeg
    (a Matroska header written over, a broken fragment, audio framed wrongly), and no stream but the video and
    audio written; the number of video frames. ``audio`` False: its packets are not decoded (copied from a damaged
    source, they are as damaged as it was)."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs, av.open(str(path)) as c:
            assert len(c.streams) == streams, [s.codec_context.name for s in c.streams]
            frames = sum(1 for p in c.demux() if audio or p.stream.type == "video"
                         for f in p.decode() if isinstance(f, av.VideoFrame))
    finally:
        av.logging.set_level(level)
    errors = [line for line in logs if line[0] <= av.logging.ERROR]
    assert not errors, errors[:5]
    return frames


def _open_when_up(url: str, output: Path, **kw):
    """``live.stream`` once the camera listens (its process takes a moment to start)."""
    import time

    for _ in range(100):
        try:
            return live.stream(url, str(output), progress=False, **kw)
        except live.InputError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never came up")


def _check_written(clip, out: Path, max_bg: float = 8.0) -> list[int]:
    """Every frame written shows the clip's frame of its time with each face covered (or is covered whole), and
    the rest within ``max_bg`` of it (two encodes: the camera's and ours); the times increase. Returns the source
    frame indices written."""
    src = decode_frames(clip.path)
    with av.open(str(out)) as c:
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    times = [t for t, _ in frames]
    assert all(b > a for a, b in itertools.pairwise(times)), times
    indices = []
    for t, frame in frames:
        i = round(t * 30)  # the output keeps the source's times, from its first frame
        indices.append(i)
        if frame.max() < 16:  # covered whole (overload)
            continue
        # faces are back-filled as far as the delay lets the tracker see ahead: up to its lookback (15 frames)
        problem = frame_problem(clip, i, src[i], frame, max_bg=max_bg, near=live.budget(0.5, 30, Config())[0])
        assert problem is None, (i, problem)
    return indices


def _audio(out: Path) -> np.ndarray:
    """The output's audio packets: (start, end) in seconds, in the order stored; they must increase."""
    with av.open(str(out)) as c:
        assert c.streams.audio, f"{out} has no audio"
        spans = np.array([(p.pts * p.time_base, (p.pts + p.duration) * p.time_base)
                          for p in c.demux(audio=0) if p.size], dtype=float)
    assert len(spans) and (np.diff(spans[:, 0]) > 0).all(), spans[:, 0]
    return spans


def _check_audio(out: Path, start: float = 0.0, end: float = FRAMES * FRAME) -> None:
    """The clip's tone, the whole of it, on the video's clock: from the first frame's time to the last's end,
    within a frame or two (an AAC packet is 21 ms), whatever video frames were dropped or covered."""
    spans = _audio(out)
    assert abs(spans[0, 0] - start) <= FRAME and abs(spans[-1, 1] - end) <= 2 * FRAME, (spans[0], spans[-1])
    assert (np.diff(spans[:, 0]) < 2 * FRAME).all()  # no hole


def test_a_camera_over_tcp_is_recorded_with_every_face_covered(clip, camera, tmp_path, monkeypatch):
    """An H.264 camera: its frames kept in the decoder's own planes (no RGB but for the detector), every face
    covered, the audio in step."""
    from trt_anon.planar import Planar
    rows = []
    real = Planar.read
    monkeypatch.setattr(Planar, "read", lambda self, frame, out: rows.append(self.pix_fmt) or real(self, frame, out))
    report = _open_when_up(camera(), tmp_path / "rec.mkv", retries=0)
    assert set(rows) == {"yuv420p"} and len(rows) >= report.frames
    assert _probe(tmp_path / "rec.mkv") == report.frames  # AAC from MPEG-TS made raw, its config written once
    indices = _check_written(clip, tmp_path / "rec.mkv")
    assert len(indices) == report.frames > 0 and report.frames + report.live["dropped"] == FRAMES
    assert report.live["delay_p50"] > 0 and report.live["lookback"] < Config().lookback  # sized to the delay
    _check_audio(tmp_path / "rec.mkv")  # copied through, in sync
    assert report.live["audio_packets"] == len(_audio(tmp_path / "rec.mkv"))


def test_a_camera_that_comes_back_goes_on_with_times_and_audio_in_step(clip, camera, tmp_path):
    """The camera goes away after 40 frames and comes back, playing the clip from its start: the output's
    times go on increasing across the gap, and the audio of the second connection starts with its video."""
    lines = []
    report = _open_when_up(camera("--stop-after", "40", "--again"), tmp_path / "again.mkv", retries=2, log=lines.append)
    assert report.live["reconnects"] == 1 and report.frames + report.live["dropped"] == 40 + FRAMES, lines
    with av.open(str(tmp_path / "again.mkv")) as c:
        times = np.array([f.time for f in c.decode(video=0)])
    assert (np.diff(times) > 0).all()
    cut = int(np.argmax(np.diff(times))) + 1  # the reconnect: the longest gap
    assert times[cut] - times[cut - 1] > 0.5 and times[cut - 1] < 40 * FRAME
    spans = _audio(tmp_path / "again.mkv")
    middle = (times[cut - 1] + times[cut]) / 2
    before, after = spans[spans[:, 0] < middle], spans[spans[:, 0] > middle]
    assert abs(before[0, 0]) <= FRAME and abs(before[-1, 1] - 40 * FRAME) <= 2 * FRAME  # the first connection's
    assert abs(after[0, 0] - times[cut]) <= 2 * FRAME  # the second connection's audio starts with its video
    assert abs(after[-1, 1] - (times[cut] + FRAMES * FRAME)) <= 2 * FRAME  # and runs the whole clip


def test_overload_never_writes_a_raw_frame(clip, camera, tmp_path, monkeypatch):
    """A detector too slow for the stream: late frames are covered whole (or dropped), never written raw."""
    import time

    real = onnxrt.OnnxRuntimeDetector.__call__

    def slow(self, frames, shown=None):
        time.sleep(0.08)  # ~12 frames/s for a 30 fps camera
        return real(self, frames, shown)

    monkeypatch.setattr(onnxrt.OnnxRuntimeDetector, "__call__", slow)
    report = _open_when_up(camera(), tmp_path / "cover.mkv", retries=0, on_overload="cover")
    assert report.live["covered"] > 10 and report.live["dropped"] == 0 and report.frames == FRAMES
    # the faces only: across frames not looked at, boxes grow with the motion they may hide (more is covered)
    indices = _check_written(clip, tmp_path / "cover.mkv", max_bg=255)
    assert len(indices) == FRAMES and sorted(set(indices)) == indices  # every frame, once, in order
    _check_audio(tmp_path / "cover.mkv")
    report = _open_when_up(camera(), tmp_path / "drop.mkv", retries=0, on_overload="drop")
    assert report.live["dropped"] > 10 and report.frames + report.live["dropped"] == FRAMES
    _check_written(clip, tmp_path / "drop.mkv", max_bg=255)
    _check_audio(tmp_path / "drop.mkv")  # the audio of the frames dropped is there: it holds no faces


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """A second of a face with a tone, as an MP4 file and as the MPEG-TS a camera sends."""
    d = tmp_path_factory.mktemp("short")
    clip = make_clip(d / "short.mp4", 160, 96, frames=30, audio=1, faces=[Face(40, (20, 20), (2.0, 0.5))])
    make_ts(clip.path, d / "short.ts")
    return clip


@pytest.mark.parametrize("source", ["ts", "mp4"])
def test_every_output_with_every_recording_plays_clean(short, source, tmp_path):
    """Each output (a recording, fragmented MP4, MPEG-TS, HLS) with each recording beside it, from an MP4 file and
    from MPEG-TS (AAC with ADTS headers): both written whole, read through without an error from FFmpeg (no
    header written over, no extra stream), every frame in both, and the audio in both."""
    src = str(short.path.with_suffix(f".{source}"))
    for out in ("o.mkv", "o.mp4", "o.ts", "hls/o.m3u8"):
        for rec in ("r.mkv", "r.mp4", "r.ts"):
            d = tmp_path / f"{Path(out).suffix[1:]}-{Path(rec).suffix[1:]}"
            d.mkdir()
            # read as fast as it decodes, with a budget no frame can miss: the muxing is what is checked
            report = live.stream(src, str(d / out), latency=30, progress=False, record=str(d / rec),
                                 log=lambda _: None)
            assert report.frames == 30 and not report.warnings, (out, rec, report.warnings)
            for path in (d / out, d / rec):
                assert _probe(path) == 30, path
                _check_audio(path, end=30 * FRAME)


def _timed(monkeypatch) -> dict[int, tuple[float, float]]:
    """Each frame written: its number in the stream -> (when it arrived, when the output's writer wrote it)."""
    written: dict[int, tuple[float, float]] = {}
    real = live.LiveSink._encode

    def encode(self, frame, a, handed):
        real(self, frame, a, handed)
        if self.output.endswith(".mkv"):
            written[a.index] = (a.at, time.monotonic())

    monkeypatch.setattr(live.LiveSink, "_encode", encode)
    return written


def test_a_camera_that_stalls_does_not_hold_the_frames_before_it(clip, camera, tmp_path, monkeypatch):
    """The camera sends nothing for 2 s after frame 44, then the frames that fell due meanwhile at once (as FFmpeg's
    -re catches up). The frames that came before the stall leave by their deadline, with the boxes they have: all
    are written before the frames after the stall arrive, not held for frames that have not come."""
    written = _timed(monkeypatch)
    report = _open_when_up(camera("--stall", "45:2"), tmp_path / "stall.mkv", retries=0)
    assert report.frames > 0 and report.live["covered"] == 0
    arrived = np.array(sorted(at for at, _ in written.values()))
    gap = int(np.argmax(np.diff(arrived)))  # the stall, as seen here (a TS demuxer hands a frame over when the
    stalled, resumed = arrived[gap], arrived[gap + 1]  # next one begins: the frame before a stall comes after it)
    assert resumed - stalled > 1.5
    before = [done for at, done in written.values() if at <= stalled]
    assert len(before) > 30 and max(before) < resumed, "frames that came before the stall waited for it"
    # a frame out before the detector looked at one after it holds its faces along their motion, growing
    _check_written(clip, tmp_path / "stall.mkv", max_bg=255)
    _check_audio(tmp_path / "stall.mkv")


@pytest.mark.parametrize("options", [("--constant-rate",), ("--damage", "0.002")], ids=["bursts", "damaged"])
def test_a_camera_in_bursts_or_damaged_never_shows_a_face(clip, ts, camera, options, tmp_path):
    """A constant-byte-rate sender (a keyframe's frames arrive late, then together) and a damaged stream (bytes
    flipped in 0.2% of the TS packets, where they damage faces): every frame written has its faces covered; the
    output plays clean."""
    out = tmp_path / "rec.mkv"
    if "--damage" in options:
        # which packets are hit is drawn; where a draw misses the faces (the encoder's bytes differ from machine
        # to machine) the next one is taken, so that the damage always reaches faces in some frames
        for seed in range(20):
            received = intact(clip, damaged(ts, float(options[1]), seed), tmp_path / "got.ts")
            if not all(received.values()):
                break
        assert not all(received.values()), "no draw of the damage reached a face"
        options = (*options, "--seed", str(seed))
    report = _open_when_up(camera(*options), out, retries=0, on_overload="cover")
    assert report.frames > 0 and _probe(out, audio="--damage" not in options) == report.frames
    written = _check_written(clip, out, max_bg=255)
    if "--damage" in options:
        # the frames the decoder repaired, and those drawn on them up to a keyframe, are covered, not trusted: each
        # frame written with pixels came through whole (its faces where the clip has them)
        with av.open(str(out)) as c:
            shown = [i for i, f in zip(written, c.decode(video=0)) if f.to_ndarray(format="rgb24").max() >= 16]
        assert report.live["damaged"] > 0 and shown and all(received[i] for i in shown), \
            [(i, received.get(i)) for i in shown if not received.get(i)]


def test_a_detector_error_mid_stream_covers_the_frames_that_waited(clip, camera, tmp_path, monkeypatch):
    """The detector raises once, mid-stream: the frames waiting for their boxes then are covered whole, never
    written as they are; the stream goes on with a fresh tracker and every face after it covered."""
    real, calls = onnxrt.OnnxRuntimeDetector.__call__, [0]

    def once(self, frames, shown=None):
        calls[0] += 1
        if calls[0] == 20:  # past the warm-up and the first frames
            raise DetectorError("simulated detector failure")
        return real(self, frames, shown)

    monkeypatch.setattr(onnxrt.OnnxRuntimeDetector, "__call__", once)
    lines = []
    report = _open_when_up(camera(), tmp_path / "err.mkv", retries=0, log=lines.append)
    assert report.live["detector_errors"] == 1 and any("detector error" in line for line in lines)
    with av.open(str(tmp_path / "err.mkv")) as c:
        black = sum(f.to_ndarray(format="rgb24").max() < 16 for f in c.decode(video=0))
    assert black >= 1 and report.live["covered"] == 0  # covered for the error, not for lateness
    _check_written(clip, tmp_path / "err.mkv")
    assert any("the detector failed 1 time(s)" in w for w in report.warnings)


def test_a_live_run_keeps_its_boxes_and_audit_record(clip, camera, tmp_path, monkeypatch, capsys):
    """``--json`` on a live run: every frame written with its number, time and boxes, the report with the delays,
    and an audit record of the files written (the recording and the output, by SHA-256; the camera by its URL),
    which ``trt-anon verify`` checks."""
    import hashlib

    monkeypatch.chdir(tmp_path)
    url = camera()
    for _ in range(100):
        code = main([url, "-o", "rec.mkv", "--record", "rec.ts", "--json", "run.json", "-q", "--reconnect", "0"])
        if "cannot open" not in capsys.readouterr().err:
            break
        time.sleep(0.1)
    assert code == 0
    data = json.loads((tmp_path / "run.json").read_text())
    report, record = data["report"], data["audit"]
    assert len(data["frames"]) == report["frames"] > 0 and report["live"]["delay_p99"] > 0
    numbers = [f["frame"] for f in data["frames"]]
    assert numbers == sorted(set(numbers)) and max(numbers) < FRAMES
    assert all(f["faces"] for f in data["frames"][:30])  # the first face is in every frame from the start
    assert record["input"] == {"path": url, "stream": True}
    for name, entry in (("rec.mkv", record["output"]), ("rec.ts", record["recording"])):
        assert entry["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert main(["verify", name, "run.json"]) == 0
    (tmp_path / "other.mkv").write_bytes(b"\0" + (tmp_path / "rec.mkv").read_bytes()[1:])
    assert main(["verify", "other.mkv", "run.json"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.mkv", "rec.mkv", "rec.ts", "run.json"]


def test_the_model_is_ready_before_the_source_is_opened(clip, monkeypatch, tmp_path):
    """A camera sends from the moment it is opened: the model is loaded and run once before, so that what the
    camera sends meanwhile does not wait for it (and arrive late, all at once)."""
    events = []
    real_open, real_look = live.LiveSource._open, onnxrt.OnnxRuntimeDetector.__call__
    monkeypatch.setattr(live.LiveSource, "_open", lambda self: events.append("open") or real_open(self))
    monkeypatch.setattr(onnxrt.OnnxRuntimeDetector, "__call__",
                        lambda self, frames, shown=None: events.append("look") or real_look(self, frames, shown))
    live.stream(str(clip.path), str(tmp_path / "rec.mkv"), paced=True, progress=False)
    assert events.index("open") > 0 and set(events[:events.index("open")]) == {"look"}


def test_the_first_frames_come_at_the_cameras_pace_not_at_once(camera):
    """Opening a stream reads no frames ahead to measure its frame rate (FFmpeg's default reads 20: 0.7 s of a
    30 fps camera, then handed over at once, already late): the rate is the stream's own, from its parameters."""
    url = camera()
    for _ in range(100):
        try:
            src = live.LiveSource(url, capacity=100)
            break
        except live.InputError:
            time.sleep(0.1)
    try:
        assert src.rate == 30
        src.start()
        frames = []
        while len(frames) < 15:
            a = src.take(max_wait=10)
            frames += [a] if a is not None and a.kind == "frame" else []
        assert frames[-1].at - frames[0].at > 0.25  # 14 frame periods are 0.47 s; a burst comes within ms
    finally:
        src.stop()


def test_a_small_face_there_from_the_first_frame_is_covered_live(tmp_path):
    """A 26 px face in view from the first frame of a stream: the detector may be sure of it only some frames in;
    the back-fill, which takes what the delay budget leaves, covers the frames before (at the default latency)."""
    clip = make_clip(tmp_path / "small.mp4", 640, 360, frames=60, audio=1, faces=[Face(26, (300, 150), (1.0, 0.3))])
    out = tmp_path / "rec.mkv"
    report = live.stream(str(clip.path), str(out), paced=True, progress=False)
    assert report.frames > 0
    indices = _check_written(clip, out)
    assert indices[0] == 0  # the first frame itself was written, covered


def test_a_stream_that_ends_is_over_and_one_that_fails_says_why(camera, tmp_path, monkeypatch):
    """A sender that closes the stream ends the run at once (no reconnection attempts); one that stops sending is
    given up after the read timeout, saying so (not FFmpeg's "Immediate exit requested")."""
    lines = []
    report = _open_when_up(camera("--end-after", "30"), tmp_path / "end.mkv", log=lines.append)
    assert report.live["reconnects"] == 0 and report.frames + report.live["dropped"] == 30
    assert [line.split(": ", 1)[1] for line in lines] == ["the stream ended (its sender closed it)"]
    monkeypatch.setattr(live, "READ_TIMEOUT", 1.0)
    lines = []
    report = _open_when_up(camera("--stall", "30:60"), tmp_path / "silent.mkv", retries=0, log=lines.append)
    assert 0 < report.frames + report.live["dropped"] <= 30
    assert [line.split(": ", 1)[1] for line in lines] == ["no data for 1 s"]


def test_a_camera_that_goes_away_ends_the_stream_with_the_recording_whole(clip, camera, tmp_path):
    lines = []
    report = _open_when_up(camera("--stop-after", "40"), tmp_path / "cut.mp4", retries=1, log=lines.append)
    # tried once more, then ended; each line says why: the camera's connection reset, then nothing listening
    assert [line.split(": ", 1)[1] for line in lines] == [
        "Connection reset by peer; reconnecting in 1 s (1 of 1)",
        "Connection refused; giving up after 1 reconnection attempt(s)"], lines
    assert report.frames + report.live["dropped"] == 40 and report.frames > 0  # drops: a loaded machine
    indices = _check_written(clip, tmp_path / "cut.mp4")  # fragmented MP4: whole up to its last fragment
    assert indices == sorted(indices) and max(indices) < 40
    _check_audio(tmp_path / "cut.mp4", end=40 * FRAME)  # MPEG-TS's AAC (ADTS) made raw, as MP4 holds it


def test_a_file_played_live_into_an_hls_folder(clip, tmp_path):
    out = tmp_path / "hls" / "live.m3u8"
    report = live.stream(str(clip.path), str(out), paced=True, progress=False)
    assert report.frames + report.live["dropped"] == FRAMES and report.frames > 0  # drops: a loaded machine
    assert out.exists() and list(out.parent.glob("*.ts"))
    assert len(_check_written(clip, out)) == report.frames
    _check_audio(out)


def test_a_stream_and_a_recording_at_once(clip, tmp_path):
    """``-o`` an HLS folder and ``--record`` a recording, from the CLI: the same frames in both (each encoded
    apart), every face covered, the audio in both."""
    out, rec = tmp_path / "hls" / "live.m3u8", tmp_path / "rec.mkv"
    assert main([str(clip.path), "--live", "-o", str(out), "--record", str(rec), "-q"]) == 0
    written = _check_written(clip, out)
    assert written == _check_written(clip, rec) and len(written) > FRAMES // 2
    _check_audio(out)
    _check_audio(rec)


def test_auto_skips_frames_live_and_still_covers_every_face(clip, tmp_path, monkeypatch):
    """``detect_every="auto"`` on a stream that comes one frame at a time: frames are gathered up to the cadence's
    next look, so the detector skips frames where faces move as tracked (one frame at a time, every frame would
    be the batch's last, always looked at); every face written is still covered."""
    looked = []
    chosen = live.select_detector

    def counting(config, gpu):
        detector = chosen(config, gpu=gpu)

        class Counting:
            name = detector.name

            def __call__(self, frames):
                looked.append(len(frames))
                return detector(frames)
        return Counting()

    monkeypatch.setattr(live, "select_detector", counting)
    out = tmp_path / "rec.mkv"
    report = live.stream(str(clip.path), str(out), Config(detect_every="auto"), paced=True, progress=False)
    assert len(_check_written(clip, out)) == report.frames > FRAMES // 2
    frames_seen = report.frames + report.live["dropped"]
    assert sum(looked[2:]) < 0.8 * frames_seen, (sum(looked[2:]), frames_seen)  # past the two warm-up calls
    _check_audio(out)


def test_g711_audio_is_converted_to_aac_for_a_recording(clip, tmp_path):
    """A camera's G.711 (mu-law, 8 kHz mono), which Matroska, MP4, MPEG-TS and HLS cannot hold: converted to AAC,
    with one note, on the video's clock, the whole of it."""
    cam = tmp_path / "g711.mov"
    with av.open(str(clip.path)) as src, av.open(str(cam), "w") as dst:
        video = dst.add_stream_from_template(src.streams.video[0])
        sound = dst.add_stream("pcm_mulaw", rate=8000, layout="mono")
        for p in src.demux(video=0):
            if p.size:
                tb = p.time_base
                p.stream, p.time_base = video, tb
                dst.mux(p)
        tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(FRAMES * 8000 // 30) / 8000)).astype(np.int16)
        for start in range(0, len(tone), 160):  # 20 ms packets, as RTP carries G.711
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + 160], format="s16", layout="mono")
            frame.sample_rate, frame.pts = 8000, start
            dst.mux(sound.encode(frame))
        dst.mux(sound.encode(None))
    report = live.stream(str(cam), str(tmp_path / "rec.mkv"), paced=True, progress=False, log=lambda _: None)
    assert [w for w in report.warnings if "audio" in w] == [("audio (pcm_mulaw) converted to AAC: matroska cannot "
                                                            "hold pcm_mulaw")]
    with av.open(str(tmp_path / "rec.mkv")) as c:
        assert c.streams.audio[0].codec_context.name == "aac" and c.streams.audio[0].sample_rate == 8000
        assert np.abs(np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)).max() > 0.1  # a tone
    spans = _audio(tmp_path / "rec.mkv")
    # the encoder's priming (one AAC frame, 1024 samples) ends where the video starts; the last frame, padded
    assert np.isclose(spans[0, 1], 0, atol=1e-3) and np.isclose(spans[0, 1] - spans[0, 0], 1024 / 8000, atol=1e-3)
    assert FRAMES * FRAME <= spans[-1, 1] < FRAMES * FRAME + 1024 / 8000


def test_audio_that_cannot_be_converted_either_is_left_out_with_one_warning(tmp_path, monkeypatch):
    """Opus (a WebM camera) into HLS, which takes AAC, MP3 or AC-3: converted to AAC; where that fails, the video
    goes on and the audio is left out, said once."""
    webm = make_clip(tmp_path / "cam.webm", 160, 96, frames=20, audio=1)
    report = live.stream(str(webm.path), str(tmp_path / "hls" / "live.m3u8"), paced=True, progress=False,
                         log=lambda _: None)
    assert [w for w in report.warnings if "audio" in w] == ["audio (opus) converted to AAC: hls cannot hold opus"]
    _check_audio(tmp_path / "hls" / "live.m3u8", end=20 * FRAME)

    def refuse(*args):
        raise ValueError("no encoder")

    monkeypatch.setattr(live.ToAac, "__init__", refuse)
    lines = []
    report = live.stream(str(webm.path), str(tmp_path / "again" / "live.m3u8"), paced=True, progress=False,
                         log=lines.append)
    assert report.frames == 20 and report.live["audio_packets"] == 0
    notes = [w for w in report.warnings if "audio" in w]
    assert len(notes) == 1 and "left out" in notes[0] and "opus" in notes[0] and lines == notes
    with av.open(str(tmp_path / "again" / "live.m3u8")) as c:
        assert not c.streams.audio and len(list(c.decode(video=0))) == 20


def test_an_rtsp_push_reaches_the_server_with_every_face_covered(clip, tmp_path):
    """``-o rtsp://...``: pushed to a server (here PyAV listening, as MediaMTX would), every frame arrives, and
    the audio, from MPEG-TS (AAC with ADTS headers, which RTP does not carry: made raw, its config in the SDP)."""
    import time

    ts = tmp_path / "cam.ts"
    with av.open(str(clip.path)) as src, av.open(str(ts), "w") as dst:
        copies = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for p in src.demux():
            if p.size:
                tb = p.time_base
                p.stream, p.time_base = copies[p.stream.index], tb
                dst.mux(p)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got = tmp_path / "got.npz"
    server = subprocess.Popen([sys.executable, str(RECEIVER), str(port), str(got)])
    try:
        for _ in range(50):
            try:
                report = live.stream(str(ts), f"rtsp://127.0.0.1:{port}/anon", paced=True, progress=False)
                break
            except live.OutputError:  # the server is not listening yet
                time.sleep(0.2)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
    got = np.load(got)
    frames, sound = got["frames"], got["audio"]
    assert len(frames) == report.frames > 0
    # the audio arrived, in order (the server may miss the last packet or two as the push ends)
    assert report.live["audio_packets"] - 2 <= len(sound) <= report.live["audio_packets"] and len(sound)
    assert (np.diff(sound) > 0).all()
    if report.live["dropped"] == 0:  # then the n-th frame received is the clip's n-th
        src = decode_frames(clip.path)
        for i, frame in enumerate(frames):
            assert frame_problem(clip, i, src[i], frame, max_bg=8.0) is None, i


@pytest.mark.parametrize("args, words", [
    (["tcp://127.0.0.1:9"], "-o"),                                 # no output
    (["tcp://127.0.0.1:9", "-o", "out.avi"], ".m3u8"),               # not a live output
    (["tcp://127.0.0.1:9", "-o", "rec.mkv"], "cannot open"),         # nothing listens there
    (["tcp://127.0.0.1:9", "-o", "rec.mkv", "--latency", "0"], "latency"),
    (["tcp://127.0.0.1:9", "-o", "rec.mkv", "--input-option", "novalue"], "KEY=VALUE"),
    (["tcp://127.0.0.1:9", "-o", "hls/s.m3u8", "--record", "rtsp://127.0.0.1:9/x"], "--record"),  # not a file
    (["clip.mp4", "-o", "out.mp4", "--record", "rec.mkv"], "--record: for live streams"),
    (["clip.mp4", "-o", "out.mp4", "--latency", "2", "--on-overload", "cover"], "--latency, --on-overload: for live"),
    (["tcp://127.0.0.1:9", "-o", "rec.mkv", "--reconnect", "-1"], "--reconnect must be 0 or more"),
    (["tcp://127.0.0.1:9", "-o", "rec.mkv", "--review"], "--review is for files"),  # never silently ignored
])
def test_live_mistakes_are_one_line_errors(args, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*args, "-q"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())


def test_signing_is_refused_for_a_stream_by_the_api_too(tmp_path):
    with pytest.raises(live.ConfigError, match="--sign is for files"):
        live.stream("tcp://127.0.0.1:9", str(tmp_path / "rec.mkv"), Config(sign=("c.pem", "k.pem")), progress=False)
    assert not list(tmp_path.iterdir())


def test_the_delay_budget_sizes_the_back_fill_and_the_queue():
    """Every frame the delay holds may serve as look-ahead for the back-fill (frames leave by their deadline,
    with what the budget left); half the budget is kept for it, so a frame that waited in the queue longer is late."""
    lookback, reserve, capacity = live.budget(0.5, 30, Config())
    assert (lookback, reserve, capacity) == (15, 0.25, 30)
    assert live.budget(5.0, 30, Config())[0] == Config().lookback  # never more than asked
    assert live.budget(0.1, 30, Config())[0] == Config().ttl  # never less than the hold
    assert live.budget(2.0, 25, Config(lookback=10))[0] == 10


def test_sigterm_ends_a_live_run_with_the_recording_whole(clip, tmp_path):
    """The CLI on a file played live, stopped by SIGTERM mid-stream: exit 143 (as for a file), saying the recording
    is whole up to there, and it is: every frame written covered."""
    import os
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = tmp_path / "rec.mkv"
    proc = subprocess.Popen([sys.executable, "-m", "trt_anon", str(clip.path), "--live", "-o", str(out), "-q"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(400):  # until the first frame is written (the output is opened then)
            if out.exists():
                break
            time.sleep(0.05)
        time.sleep(0.8)  # of the clip's 3 s
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
        assert proc.stderr.read().strip().splitlines()[-1] == f"trt-anon: terminated; {out} is whole up to there"
    finally:
        proc.kill()
    indices = _check_written(clip, out)
    assert 0 < len(indices) < FRAMES and indices == sorted(set(indices))  # stopped mid-stream, in order


@pytest.mark.parametrize("policy", ["drop", "cover"])
def test_frames_that_waited_too_long_are_never_handed_out_raw(clip, policy):
    """The queue's rule, on made-up arrival times: frames older than the wait the delay budget allows are
    dropped or covered when the next frame is taken; the first fresh frame comes out."""
    import time

    src = live.LiveSource(str(clip.path), capacity=100, on_overload=policy, paced=True)
    try:
        now = time.monotonic()
        frame = np.zeros((4, 4, 3), np.uint8)
        for age in (1.0, 0.9, 0.8, 0.05, 0.01):  # seconds ago
            src._put(live.Arrival(frame, 0.0, now - age))
        src.done = True  # nothing more will come: take() returns None once the queue is empty
        taken = list(iter(lambda: src.take(max_wait=0.3), None))
        # late frames keep their place (the tracker counts them as not looked at), without their pixels
        late = "dropped" if policy == "drop" else "covered"
        assert [x.kind for x in taken] == [late] * 3 + ["frame"] * 2
        assert all(x.frame is None and x.shape == frame.shape for x in taken[:3])
        assert (src.dropped, src.covered) == ((3, 0) if policy == "drop" else (0, 3))
    finally:
        src.container.close()


def test_the_delays_are_counted_in_memory_that_does_not_grow():
    """Hours of frames: the percentiles come from counts in 1 ms steps (within a step of the exact ones)."""
    delays = live.Delays()
    assert delays.percentile(99) == 0.0
    seconds = np.random.default_rng(0).gamma(4.0, 0.08, 20_000)
    for s in seconds:
        delays.add(float(s))
    for q in (50, 99):
        assert 0 <= delays.percentile(q) - np.percentile(seconds, q) <= 0.0011
    assert delays.most == seconds.max() and len(delays.recent) == 300 and delays.counts.sum() == len(seconds)


@pytest.mark.consent
@pytest.mark.skipif(not __import__("test_consent")._extra(), reason="needs the consent extra: pip install '.[consent]'")
def test_a_consenting_person_is_kept_live_once_matched_and_no_one_else(camera, tmp_path):
    """--keep-face on a camera over loopback: Eileen Collins (the reference) and Grace Hopper, side by side. Her
    face grows from 30 px (too small to compare) to 120: it is shown only once her track matched, the frames
    written before that redacted; Hopper's never."""
    from PIL import Image
    from synth import face_source
    clip = make_clip(tmp_path / "two.mp4", 480, 270, frames=FRAMES, audio=1,
                     faces=[Face(30, (40, 60), (0.5, 0), grow=1.0), Face(80, (330, 90), (-0.5, 0), source="hopper")])
    make_ts(clip.path, tmp_path / "two.ts")
    Image.fromarray(face_source("astronaut")[0]).save(tmp_path / "eileen.png")
    port = _port()
    proc = subprocess.Popen([sys.executable, str(CAMERA), str(port), str(tmp_path / "two.ts")])
    try:
        for _ in range(100):
            code = main([f"tcp://127.0.0.1:{port}", "-o", str(tmp_path / "rec.mkv"), "--keep-face",
                         str(tmp_path / "eileen.png"), "--json", str(tmp_path / "run.json"), "-q", "--reconnect", "0"])
            if code == 0:
                break
            time.sleep(0.1)  # the camera's process is not listening yet
    finally:
        proc.kill()
        proc.wait()
    assert code == 0
    data = json.loads((tmp_path / "run.json").read_text())
    kept = data["report"]["kept"]
    assert [k["person"] for k in kept] == ["eileen"], kept
    src = decode_frames(clip.path)
    with av.open(str(tmp_path / "rec.mkv")) as c:
        out = [(round(f.time * 30), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    shown = 0
    for (i, frame), entry in zip(out, data["frames"]):
        assert entry["frame"] == i
        for face in entry["faces"]:
            assert cell_deviation(src[i], face["box"]) > 6   # a face there in the camera's picture
            assert (cell_deviation(frame, face["box"]) > 6) == bool(face.get("kept")), (i, face)
            assert not face.get("kept") or face["box"][0] < 240, (i, face)   # Hopper (on the right) never kept
            shown += bool(face.get("kept"))
    first = next(e["frame"] for e in data["frames"] if any(f.get("kept") for f in e["faces"]))
    # redacted until matched, then shown (how often depends on the machine: a frame it cannot keep up with is
    # dropped, never written raw)
    assert first > 10 and shown >= 5, (first, shown)


@pytest.mark.parametrize("color_range", [1, 2])
def test_planes_kept_live_are_written_in_their_own_range(tmp_path, color_range):
    """A camera's planes go out as they came: the recording is tagged with the camera's matrix and range (a
    full-range HEVC camera's samples read as limited range would be washed out), and a covered frame is black
    in that range (Y 0 full range, 16 limited)."""
    from trt_anon.planar import Planar
    layout = Planar("yuv420p", 64, 48, colorspace=1, color_range=color_range)
    sink = live.LiveSink(str(tmp_path / "rec.mkv"), Fraction(25), Config(), layout)
    sink.open(64, 48)
    row = layout.empty(1)[0]
    row[...] = 128
    sink.write(row, live.Arrival(row, 0.0, time.monotonic()))
    sink.cover(live.Arrival(None, 0.04, time.monotonic(), kind="covered"), (48, 64, 3))
    sink.close()
    with av.open(str(tmp_path / "rec.mkv")) as c:
        frames = list(c.decode(video=0))
    assert [int(f.color_range) for f in frames] == [color_range] * 2
    assert [int(f.colorspace) for f in frames] == [1, 1]
    y = [f.to_ndarray()[:48] for f in frames]
    assert abs(int(np.median(y[0])) - 128) <= 1
    assert abs(int(np.median(y[1])) - (0 if color_range == 2 else 16)) <= 1


def test_frames_in_another_range_than_said_up_front_are_brought_to_it():
    """The sink is tagged with the range the camera's decoder gave up front; a frame that comes in the other range
    (said only by the frames) is converted to it, not written with the wrong tag; one in that range as it is."""
    from types import SimpleNamespace

    from trt_anon.planar import Planar
    frame = av.VideoFrame(64, 48, "yuv420p")
    for plane, value in zip(frame.planes, (0, 128, 128)):  # black, full range
        np.frombuffer(plane, np.uint8)[:] = value
    frame.color_range = 2
    limited = SimpleNamespace(layout=Planar("yuv420p", 64, 48, colorspace=1, color_range=0))
    assert live._Run._pixels(limited, frame)[:64 * 48].max() == 16      # black in limited range
    full = SimpleNamespace(layout=Planar("yuv420p", 64, 48, colorspace=1, color_range=2))
    assert live._Run._pixels(full, frame)[:64 * 48].max() == 0          # kept as it came
