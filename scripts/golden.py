"""Record what trt_anon writes for a fixed set of inputs, and check later that a change kept it.

For refactoring without changing behaviour: record before, check after, on the same machine (x264's
output depends on its thread count, ONNX Runtime's INT8 kernels on the CPU's instruction set, so a
record is only comparable on the machine that made it).

    python scripts/golden.py record            # -> .golden/<machine>.json
    python scripts/golden.py check             # exit 1 and a line per difference

Inputs: the packaged demo clip and test clips made from real photos (tests/synth.py): faces moving,
a face coming in (back-fill), eyes target, each style, a portrait phone clip (display rotation),
a variable-frame-rate clip with audio, a photo, a 1440p clip (frames decoded twice for back-fill).
What is kept per input: the SHA-256 of every decoded output frame and of the copied audio packets,
every frame's timestamp, the JSON's per-frame boxes, and the report's counts, backends and warnings.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/synth.py: clips with real faces (test code, not in the wheel)

FACES = [((70, (60, 60), (3.0, 0.5)), {}), ((40, (450, 180), (-2.0, 0.0)), {"enter": 25, "flip": True})]

# name -> (clip maker's arguments, process() options)
CASES = {
    "faces": ({}, {}),
    "eyes": ({}, {"target": "eyes"}),
    "blur": ({}, {"style": "blur"}),
    "solid": ({}, {"style": "solid", "fill_color": "#ff8000"}),
    "portrait": ({"width": 360, "height": 640, "rotation": 90}, {}),
    "vfr": ({"vfr": True, "subtitles": True}, {}),
    "mkv": ({"suffix": ".mkv"}, {}),
    "1440p": ({"width": 2560, "height": 1440, "frames": 40, "audio": 0}, {}),
}


def machine() -> str:
    import os
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} x{os.cpu_count()}"


def fingerprint(out: Path, json_path: Path, report) -> dict:
    """What a run wrote, in a form two runs can be compared by."""
    import av

    frames, times, audio = [], [], hashlib.sha256()
    with av.open(str(out)) as c:
        if c.streams.video:
            for frame in c.decode(video=0):
                frames.append(hashlib.sha256(frame.to_ndarray().tobytes()).hexdigest()[:16])
                times.append(frame.pts)
    with av.open(str(out)) as c:
        streams = [s for s in c.streams if s.type == "audio"]
        for packet in c.demux(*streams) if streams else ():
            if packet.size:
                audio.update(bytes(packet))
                audio.update(f"{packet.pts},{packet.dts},{packet.duration}".encode())
    boxes = []
    if json_path.exists():
        boxes = [f["redacted"] for f in json.loads(json_path.read_text())["frames"]]
    r = report.to_dict()
    keep = ("frames", "faces", "frames_with_faces", "max_faces", "redacted_boxes", "decode_errors", "backends",
            "warnings")
    return {"frames": frames, "times": times, "audio": audio.hexdigest()[:16], "boxes": boxes,
            "report": {k: r.get(k) for k in keep}}


def run_all(work: Path) -> dict:
    from synth import Face, make_clip

    import trt_anon
    from trt_anon.cli import demo_clip

    results = {}
    inputs = {"demo": (Path(demo_clip()), {})}
    for name, (clip_args, opts) in CASES.items():
        args = dict(clip_args)
        suffix = args.pop("suffix", ".mp4")
        path = work / f"{name}{suffix}"
        make_clip(path, faces=[Face(*a, **k) for a, k in FACES], **{"frames": 60, **args})
        inputs[name] = (path, opts)
    photo = work / "photo.jpg"
    from PIL import Image
    from synth import face_source
    Image.fromarray(face_source("astronaut")[0]).save(photo, quality=92)
    inputs["photo"] = (photo, {})
    for name, (path, opts) in inputs.items():
        out = work / f"{name}.anon{path.suffix}"
        json_path = work / f"{name}.json"
        report = trt_anon.process(path, out, json_path=str(json_path), backend="cpu", **opts)
        results[name] = fingerprint(out, json_path, report)
        print(f"{name}: {report.frames} frames, {report.redacted_boxes} boxes", flush=True)
    return results


def differences(old: dict, new: dict) -> list[str]:
    lines = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            lines.append(f"{name}: only in the {'new run' if a is None else 'record'}")
            continue
        for key in a:
            if a[key] == b.get(key):
                continue
            if isinstance(a[key], list) and isinstance(b.get(key), list):
                first = next((i for i, (x, y) in enumerate(zip(a[key], b[key])) if x != y),
                             min(len(a[key]), len(b[key])))
                lines.append(f"{name}: {key} differ from frame {first} ({len(a[key])} vs {len(b[key])} entries)")
            else:
                lines.append(f"{name}: {key}: {a[key]!r} -> {b.get(key)!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("record", "check"))
    ap.add_argument("--file", help="the record (default .golden/<machine>.json in the repository)")
    args = ap.parse_args(argv)
    mach = machine()
    path = Path(args.file) if args.file else ROOT / ".golden" / (
        "".join(c if c.isalnum() else "-" for c in mach)[:60] + ".json")
    if args.what == "check" and not path.exists():
        print(f"no record at {path}: run `python scripts/golden.py record` before the change")
        return 1
    with tempfile.TemporaryDirectory(prefix="golden-") as work:
        results = run_all(Path(work))
    if args.what == "record":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"machine": mach, "results": results}))
        print(f"recorded {len(results)} inputs: {path}")
        return 0
    record = json.loads(path.read_text())
    if record["machine"] != mach:
        print(f"warning: recorded on {record['machine']}, checked on {mach}: x264 and INT8 may differ")
    lines = differences(record["results"], results)
    print("\n".join(lines) if lines else f"the same output for all {len(results)} inputs")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
