"""Regenerate trt_anon/data/demo.mp4, the clip ``trt-anon --demo`` runs on (~0.5 MB).

Two real faces (skimage's astronaut portrait) over a real photo, one crossing the frame and
one entering later, with an AAC tone: 640x360, 30 fps, 4 s.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/synth.py: clips with real faces (test code, not in the wheel)

from synth import Face, make_clip  # noqa: E402

DST = ROOT / "trt_anon" / "data" / "demo.mp4"

if __name__ == "__main__":
    DST.parent.mkdir(parents=True, exist_ok=True)
    make_clip(DST, 640, 360, frames=120, fps=30, crf=26, faces=[
        Face(size=70, start=(40, 90), velocity=(3.0, 0.3)),
        Face(size=44, start=(600, 40), velocity=(-2.5, 0.5), enter=45, flip=True),
    ])
    print(DST, DST.stat().st_size, "bytes")
