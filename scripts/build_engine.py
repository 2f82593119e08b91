"""Build the FP16 TensorRT engine for this GPU and cache it ($TRT_ANON_ENGINE_DIR, else engines/).

    python scripts/build_engine.py                       # for 1920x1080 video at --det-size auto
    python scripts/build_engine.py --size 1280x720 --det-size 640
    python scripts/build_engine.py --list                # what is cached, and whether it fits here

The engine name encodes GPU, compute capability, TensorRT version, model hash, precision and
input shape (trt_anon/detect/engine_cache.py), so a stale or foreign engine is never used:
trt_anon refuses it with a message and builds (or asks you to build) the right one.
TensorRT comes from NVIDIA's package index: pip install '.[trt]' (README).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trt_anon import cuda  # noqa: E402
from trt_anon.detect import centerface as cf  # noqa: E402
from trt_anon.detect import engine_cache  # noqa: E402
from trt_anon.errors import AnonError  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1920x1080", help="video frame size WxH (default 1920x1080)")
    ap.add_argument("--det-size", default="auto", help="detection long side, or auto (default)")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--out", help="engine folder (default: $TRT_ANON_ENGINE_DIR, else engines/)")
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        det = "auto-gpu" if args.det_size == "auto" else int(args.det_size)  # what "auto" is on a GPU
        folder = engine_cache.cache_dir(args.out)
        if args.list:
            for p in sorted(folder.glob("*.engine")):
                print(p.name)
            return 0
        if not cuda.available():
            print("build_engine: error: no CUDA GPU usable here", file=sys.stderr)
            return 1
        import tensorrt as trt

        from trt_anon.detect.tensorrt import build
        geom = cf.Geometry.fit(h, w, det)
        dev = cuda.device()
        key = engine_cache.key_for(dev["name"], dev["cc"], trt.__version__, geom, args.max_batch)
        path = folder / key.filename
        if path.exists() and not args.force:
            engine_cache.check(path, key)
            print(f"{path} (cached)")
            return 0
        build(key, path)
        print(path)
        return 0
    except ImportError as exc:
        print(f"build_engine: error: TensorRT is not installed ({exc}); pip install '.[trt]'", file=sys.stderr)
        return 1
    except (AnonError, ValueError) as exc:
        print(f"build_engine: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
