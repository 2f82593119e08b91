"""Nightly GPU throughput test: correctness first, then speed against a committed baseline.

    python scripts/nightly_gpu.py                 # exit 0 = good; 1 = regression or failure
    python scripts/nightly_gpu.py --update        # accept today's figures as the new baseline

1. runs tests/gpu (frame counts, GPU vs CPU reference, mosaic exactness, no host copies);
2. runs the fixed workload: a 1080p30 H.264 clip of 600 frames with real faces, GPU backend,
   checking frame count, audio packets and that every ground-truth face is mosaicked;
3. compares decode+detect+redact fps and end-to-end fps with scripts/baselines/<gpu>.json and
   fails on a drop of more than 20%.

Schedule it on a GPU runner, e.g. cron: `0 3 * * * cd /srv/trt_anon && git pull -q &&
python scripts/nightly_gpu.py >> nightly.log 2>&1`, or a CI job with `runs-on: [self-hosted, gpu]`.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
BASELINES = ROOT / "scripts" / "baselines"
TOLERANCE = 0.20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--update", action="store_true", help="write today's figures as the baseline")
    ap.add_argument("--frames", type=int, default=600)
    args = ap.parse_args()

    from trt_anon import cuda
    if not cuda.available():
        print("nightly: error: no CUDA GPU here", file=sys.stderr)
        return 1
    gpu = cuda.device()["name"]
    print(f"nightly on {gpu}", flush=True)

    r = subprocess.run([sys.executable, "-m", "pytest", "-q", str(ROOT / "tests" / "gpu")], cwd=ROOT)
    if r.returncode != 0:
        print("nightly: FAIL: tests/gpu", file=sys.stderr)
        return 1

    from helpers import audio_packets, check_redacted, video_times

    import trt_anon
    from trt_anon.synth import Face, make_clip

    work = Path(tempfile.mkdtemp(prefix="nightly-"))
    clip = make_clip(work / "job.mp4", 1920, 1080, frames=args.frames, crf=20, faces=[
        Face(160, (100, 200), (3.0, 0.5)), Face(90, (1500, 300), (-2.0, 0.2), flip=True),
        Face(48, (900, 100), (0.5, 0.5), enter=100)])
    out = work / "job.anon.mp4"
    report = trt_anon.process(clip.path, out, backend="gpu")
    try:
        assert report.frames == args.frames, f"frames {report.frames} != {args.frames}"
        assert video_times(out) == video_times(clip.path), "timestamps changed"
        assert audio_packets(out) == audio_packets(clip.path), "audio changed"
        check_redacted(clip, clip.path, out, max_bg=4.0)
    except AssertionError as exc:
        print(f"nightly: FAIL: correctness: {exc}", file=sys.stderr)
        return 1
    s = report.seconds
    figures = {
        "ddr_fps": report.frames / max(s["decode"] + s["detect"] + s["redact"], 1e-9),
        "e2e_fps": report.fps,
        "backends": report.backends,
    }
    print(json.dumps(figures))
    BASELINES.mkdir(parents=True, exist_ok=True)
    base_path = BASELINES / (re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-") + ".json")
    if args.update or not base_path.exists():
        base_path.write_text(json.dumps(figures, indent=1))
        print(f"baseline written: {base_path}")
        return 0
    base = json.loads(base_path.read_text())
    failed = False
    for k in ("ddr_fps", "e2e_fps"):
        drop = 1 - figures[k] / base[k]
        print(f"{k}: {figures[k]:.0f} vs baseline {base[k]:.0f} ({-drop:+.0%})")
        failed |= drop > TOLERANCE
    if failed:
        print(f"nightly: FAIL: more than {TOLERANCE:.0%} slower than {base_path.name}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
