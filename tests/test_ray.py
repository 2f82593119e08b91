"""process_many on Ray: a two-node cluster on this machine (started once for the whole run), segments
exactly equal to process(), a killed worker retried, a bad file failing alone, resume, loopback only."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import assert_copied, decode_frames, frame_problem, video_times

# Ray reads these when imported: everything it starts here binds 127.0.0.1 (see trt_anon.scale.RAY_ENV)
os.environ.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"})
if os.environ.get("TRT_ANON_REQUIRE_RAY"):  # CI's Ray pass: a missing Ray fails instead of skipping
    import ray
else:
    ray = pytest.importorskip("ray")

from synth import Face, make_clip  # noqa: E402

import trt_anon  # noqa: E402
from trt_anon import scale  # noqa: E402
from trt_anon.audit import verify  # noqa: E402
from trt_anon.cli import main  # noqa: E402
from trt_anon.plan import plan  # noqa: E402

SMALL = dict(width=320, height=180)
# a short lookback and batch keep each segment's context (2 x (ttl + eyes_every + lookback), whole batches)
# inside this 150-frame clip: the tracker really restarts before each cut (frames 32, 56, 88 for cuts 60, 90, 120);
# a fixed detect_every, so that every segment looks at the frames a whole run does ("auto" plans its looks from
# each segment's own tracker: test_segments_with_auto_cover_every_face)
SEG = dict(lookback=5, detect_every=1)  # and the CPU's default batch (8): settled by process() and by process_many


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """Two logical nodes of one CPU each (Ray's own test utility), on 127.0.0.1, for every test here."""
    from ray.cluster_utils import Cluster

    crash = tmp_path_factory.mktemp("crash")
    saved = dict(os.environ)
    assert not ray._private.ray_constants.ENABLE_RAY_CLUSTER  # set before Ray was imported

    def crash_once(folder=str(crash)):
        """In every worker, before any task: a segment task dies like a killed worker (os._exit) once the
        test arms it, once (the arm file is taken atomically). Sent by value: the workers cannot import tests/."""
        import functools
        from pathlib import Path

        from trt_anon import scale

        real = scale.run_segment

        @functools.wraps(real)
        def run_segment(*args, **kwargs):
            try:
                os.rename(Path(folder) / "arm", Path(folder) / "fired")
            except FileNotFoundError:
                return real(*args, **kwargs)
            os._exit(1)

        scale.run_segment = run_segment

    node = {"num_cpus": 1, "object_store_memory": scale.OBJECT_STORE}
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    c.add_node(**node)
    ray.init(address=c.address, log_to_driver=False, runtime_env={"worker_process_setup_hook": crash_once})
    try:
        yield crash
    finally:
        ray.shutdown()
        c.shutdown()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """150 frames, a keyframe every 30: one face stays throughout; one enters at 61 (just after the cut
    at 60) and leaves at 119 (just before the cut at 120); one enters at 29 and leaves at 91."""
    d = tmp_path_factory.mktemp("long")
    return make_clip(d / "long.mp4", **SMALL, frames=150, keyint=30, faces=[
        Face(44, (230, 90), (-0.8, 0.1)),
        Face(50, (20, 40), (1.5, 0.2), enter=61, leave=119),
        Face(40, (120, 20), (0.5, 0.4), enter=29, leave=91, source="hopper")])


def _serial(clip, tmp_path, **options):
    out = tmp_path / "serial"
    out.mkdir(exist_ok=True)
    trt_anon.process(clip.path, out / "s.mp4", backend="cpu", json_path=str(out / "s.json"), **options)
    return out / "s.mp4", json.loads((out / "s.json").read_text())["frames"]


def _same_as_serial(report, clip, tmp_path, boxes, **options):
    serial, serial_boxes = _serial(clip, tmp_path, **options)
    out = Path(report.output)
    assert report.error is None
    assert report.frames == len(clip.boxes)
    assert video_times(out) == video_times(serial) == video_times(clip.path)
    assert_copied(clip.path, out)
    # every frame: detections, held/filled boxes, eye bands, mosaicked boxes; the track numbers differ (each
    # segment numbers its faces from its number x 2^20), but each of a segment's is one of the serial run's
    assert _without_tracks(boxes) == _without_tracks(serial_boxes)
    pairs = {(a["track"], b["track"]) for fa, fb in zip(boxes, serial_boxes) for a, b in zip(fa["faces"], fb["faces"])}
    assert len({a for a, _ in pairs}) == len(pairs)
    assert sum(1 for f in boxes if f["redacted"]) > 100


def _without_tracks(frames: list[dict]) -> list[dict]:
    return [{**f, "faces": [{k: v for k, v in face.items() if k != "track"} for face in f["faces"]]} for f in frames]


def _no_leftovers(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if ".part" in p.name or "segments" in p.name]


def test_segments_give_what_process_gives(cluster, long_clip, tmp_path):
    out, js = tmp_path / "out", tmp_path / "json"
    (report,) = trt_anon.process_many([long_clip.path], out, segment_frames=30, backend="cpu",
                                      json_path=str(js), progress=False, **SEG)
    assert [p["part"] for p in report.placement] == [f"segment {i}" for i in range(5)]
    assert len({p["node"] for p in report.placement}) == 2  # both nodes took segments
    segs = scale.plan_segments(plan(long_clip.path, tmp_path, trt_anon.Config(batch_size=8, **SEG)), 30)
    assert [s.first for s in segs] == [0, 0, 32, 56, 88]
    boxes = json.loads((js / "long.anon.json").read_text())["frames"]
    _same_as_serial(report, long_clip, tmp_path, boxes, **SEG)
    assert verify(Path(report.output), js / "long.anon.json", long_clip.path) == []  # the join's audit record
    _no_leftovers(out)


def test_segments_keep_hdr10_chapters_and_dispositions(cluster, tmp_path):
    """Each segment's encoder (x264 here) writes the input's HDR10 metadata; the join copies chapters,
    dispositions and tags."""
    import av
    from test_streams_kept import (
        HDR10,
        LIGHT,
        MASTER,
        PRIMARIES,
        described,
        restream,
        side_data,
    )

    clip = make_clip(tmp_path / "hdr.mp4", 160, 96, frames=90, keyint=30, audio=1, codec="libx265",
                     pix_fmt="yuv420p10le", color=HDR10, faces=[Face(44, (30, 20), (1.0, 0.2))],
                     options={"x265-params": f"master-display={MASTER}:max-cll={LIGHT[0]},{LIGHT[1]}"})
    src = restream(clip.path, tmp_path / "in.mp4", {0: {"title": "Kamera 1"}, 1: {"language": "deu"}},
                   {0: av.stream.Disposition.default, 1: av.stream.Disposition.default})
    (report,) = trt_anon.process_many([src], tmp_path / "out", segment_frames=30, backend="cpu", codec="h264",
                                      progress=False, **SEG)  # segments are H.264 only (x264's stitchable)
    assert report.error is None and [p["part"] for p in report.placement] == [f"segment {i}" for i in range(3)]
    mastering, light = side_data(report.output)
    assert light == LIGHT and mastering[:8] == pytest.approx(PRIMARIES, abs=2e-4)
    assert described(report.output) == described(src)


def test_eye_bands_across_cuts(cluster, long_clip, tmp_path):
    (report,) = trt_anon.process_many([long_clip.path], tmp_path / "out", segment_frames=30, backend="cpu",
                                      target="eyes", json_path=str(tmp_path / "js"), progress=False, **SEG)
    boxes = json.loads((tmp_path / "js" / "long.anon.json").read_text())["frames"]
    _same_as_serial(report, long_clip, tmp_path, boxes, target="eyes", **SEG)


def test_segments_with_auto_cover_every_face(cluster, long_clip, tmp_path):
    """The default ``detect_every="auto"`` in segments: each plans its looks from its own tracker, so near a cut
    it may look at other frames than a whole run, by the same rules: every face of every frame is covered."""
    (report,) = trt_anon.process_many([long_clip.path], tmp_path / "out", segment_frames=30, backend="cpu",
                                      progress=False, lookback=5)
    assert [p["part"] for p in report.placement] == [f"segment {i}" for i in range(5)]
    out = Path(report.output)
    assert video_times(out) == video_times(long_clip.path)
    for i, (before, after) in enumerate(zip(decode_frames(long_clip.path), decode_frames(out), strict=True)):
        # max_bg: from frame 142 on, a second box on the background (a false alarm, the same in a whole run
        # with every frame looked at) changes ~9 levels of it on average
        assert frame_problem(long_clip, i, before, after, max_bg=12.0) is None, i
    _no_leftovers(tmp_path / "out")


def test_killed_worker_is_retried(cluster, long_clip, tmp_path):
    (cluster / "arm").touch()   # the first segment task to get there dies with os._exit
    (report,) = trt_anon.process_many([long_clip.path], tmp_path / "out", segment_frames=50, backend="cpu",
                                      json_path=str(tmp_path / "js"), progress=False, detect_every=1)  # lookback 36
    assert (cluster / "fired").exists() and not (cluster / "arm").exists()
    (cluster / "fired").unlink()
    boxes = json.loads((tmp_path / "js" / "long.anon.json").read_text())["frames"]
    _same_as_serial(report, long_clip, tmp_path, boxes, detect_every=1)
    _no_leftovers(tmp_path / "out")


def test_folder_bad_file_fails_alone_then_resume(cluster, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name, x in (("a", 30), ("b", 150)):
        make_clip(src / f"{name}.mp4", **SMALL, frames=20, audio=0, faces=[Face(50, (x, 40), (1.0, 0))])
    (src / "bad.mp4").write_bytes(b"\x00not a video" * 100)
    out, js = tmp_path / "out", tmp_path / "json"
    assert main([str(src), "-o", str(out), "--ray", "--backend", "cpu", "-q", "--json", str(js)]) == 1
    err = capsys.readouterr().err
    assert err.count("trt-anon: error:") == 1 and "bad.mp4" in err
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["a.anon.mp4", "b.anon.mp4"]
    _no_leftovers(out)
    serial = tmp_path / "serial"
    serial.mkdir()
    for name in ("a", "b"):  # what a serial run writes, frame for frame
        trt_anon.process(src / f"{name}.mp4", serial, backend="cpu", json_path=str(serial / f"{name}.json"))
        got = json.loads((js / f"{name}.anon.json").read_text())["frames"]
        assert got == json.loads((serial / f"{name}.json").read_text())["frames"] and len(got) == 20
        assert video_times(out / f"{name}.anon.mp4") == video_times(serial / f"{name}.anon.mp4")
    a_time = (out / "a.anon.mp4").stat().st_mtime_ns
    b_time = (out / "b.anon.mp4").stat().st_mtime_ns

    # resume: finished outputs are kept; a changed input is redone
    os.utime(src / "b.mp4", ns=(b_time + 10 ** 9, b_time + 10 ** 9))
    reports = trt_anon.process_many(sorted(src.iterdir()), out, skip_existing=True, backend="cpu", progress=False)
    assert [bool(r.error) for r in reports] == [False, False, True]  # a, b, bad
    assert (out / "a.anon.mp4").stat().st_mtime_ns == a_time and reports[0].frames == 20
    assert (out / "b.anon.mp4").stat().st_mtime_ns != b_time
    # changed options: redone too
    trt_anon.process_many([src / "a.mp4"], out, skip_existing=True, backend="cpu", mosaic_cell=30, progress=False)
    assert (out / "a.anon.mp4").stat().st_mtime_ns != a_time
    # without skip_existing an existing output is refused, alone
    (r,) = trt_anon.process_many([src / "a.mp4"], out, backend="cpu", progress=False)
    assert "exists" in r.error


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def test_ray_listens_on_loopback_only(cluster):
    ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    ours = _descendants(os.getpid()) | {os.getpid()}
    mine = [line for line in ss if any(f"pid={p}," in line for p in ours)]
    assert len(mine) >= 4, ss  # GCS, two raylets, workers
    for line in mine:
        local = line.split()[3]
        assert local.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"), line


def test_cli_local_instance_on_loopback_and_ctrl_c_leaves_nothing(long_clip, tmp_path):
    """``trt-anon --ray`` starts its own instance (in a subprocess: this process has the test cluster):
    everything it listens on is 127.0.0.1; Ctrl-C mid-job leaves no output, no piece, no Ray process."""
    import signal
    import sys
    import time

    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.Popen([sys.executable, "-m", "trt_anon", str(long_clip.path), "-o", str(out), "--ray",
                             "--workers", "1", "--segment-frames", "30", "--backend", "cpu", "-q"],
                            env=env, stderr=subprocess.PIPE, text=True,  # Ctrl-C as from a terminal (see test_cli)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 90
        while not list(out.glob(".trt_anon-segments-*/*.mp4")):  # a segment task is writing its piece
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.2)
        ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
        ours = _descendants(proc.pid) | {proc.pid}
        mine = [line for line in ss if any(f"pid={p}," in line for p in ours)]
        assert len(mine) >= 3, ss
        for line in mine:
            assert line.split()[3].rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"), line
        ray_pids = _descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted" in proc.stderr.read()
    # no output, no sidecar, no pieces: the folder made for the run is gone with them
    assert not out.exists(), [p.name for p in out.iterdir()]

    def running() -> list[int]:  # Ray's processes still alive (a zombie waiting for its parent is not)
        alive = []
        for pid in ray_pids:
            with contextlib.suppress(OSError):  # gone between the two reads
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(pid)
        return alive

    deadline = time.monotonic() + 30  # Ray's workers exit once their raylet is gone: allow them a moment
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running()
