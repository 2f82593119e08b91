"""Serial process() vs process_many on a local Ray instance: a folder of clips, and one long clip in
segments. Prints wall times, fps and each Ray worker's peak RSS; writes nothing but temporary files.

    python scripts/bench_ray.py [--workers N] [--clips 4] [--frames 150] [--long 600] [--size 640x360]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/synth.py: clips with real faces (test code, not in the wheel)

from synth import Face, make_clip  # noqa: E402

import trt_anon  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--long", type=int, default=600, help="frames of the long clip (keyframe every 60)")
    ap.add_argument("--size", default="640x360")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        face = [Face(w / 8, (w * 0.1, h * 0.2), (w / 300, 0.2))]
        clips = [make_clip(d / f"c{i}.mp4", w, h, frames=args.frames, faces=face).path for i in range(args.clips)]
        long = make_clip(d / "long.mp4", w, h, frames=args.long, keyint=60, faces=face).path
        rows = []
        t = time.perf_counter()
        (d / "serial").mkdir()
        for c in clips:
            trt_anon.process(c, d / "serial", backend="cpu")
        rows.append(("folder", "serial", args.clips * args.frames, time.perf_counter() - t, None))
        t = time.perf_counter()
        trt_anon.process(long, d / "serial" / "long.mp4", backend="cpu")
        rows.append(("long clip", "serial", args.long, time.perf_counter() - t, None))

        from trt_anon import scale
        t0 = time.perf_counter()
        scale.connect(None, args.workers)
        start_up = time.perf_counter() - t0
        t = time.perf_counter()
        reps = trt_anon.process_many(clips, d / "ray", workers=args.workers, backend="cpu", progress=False)
        rows.append(("folder", f"ray x{args.workers}", sum(r.frames for r in reps), time.perf_counter() - t, reps))
        t = time.perf_counter()
        reps = trt_anon.process_many([long], d / "ray", workers=args.workers, backend="cpu", progress=False,
                                     segment_frames=args.long // (2 * args.workers))
        rows.append(("long clip", f"ray x{args.workers}, {len(reps[0].placement)} segments", reps[0].frames,
                     time.perf_counter() - t, reps))
        import ray
        ray.shutdown()
    print(f"{w}x{h}, {os.cpu_count()} cores; Ray start-up {start_up:.1f} s (not in the times below)")
    for what, how, frames, wall, reps in rows:
        peaks = ""
        if reps:
            per = {}
            for r in reps:
                for p in r.placement:
                    per[p["pid"]] = max(per.get(p["pid"], 0), p["peak_rss_mib"])
            peaks = ", worker peak RSS " + "/".join(f"{v}" for v in sorted(per.values())) + " MiB"
        print(f"{what:10} {how:28} {frames:5d} frames {wall:6.1f} s {frames / wall:6.1f} fps{peaks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
