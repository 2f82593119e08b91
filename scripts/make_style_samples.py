"""The README's picture of the redaction styles: one frame through the real pipeline, once per style.

    python scripts/make_style_samples.py            # -> trt_anon/data/styles.png (~60 KB, committed)

A 640x360 still with two real faces (scikit-image's astronaut, matplotlib's Grace Hopper) is
anonymized by ``trt_anon.process`` with each style (detector and margins as by default), and the
input and the three outputs are put side by side, labelled, in a 128-colour PNG to keep it small.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/synth.py: clips with real faces (test code, not in the wheel)

from synth import Face, render  # noqa: E402

import trt_anon  # noqa: E402


def main() -> int:
    frame, _, _ = next(render(640, 360, [Face(70, (70, 70), source="astronaut"),
                                         Face(110, (330, 60), source="hopper")], 1))
    panels = [("input", frame)]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.png"
        Image.fromarray(frame).save(src)
        for style in ("mosaic", "blur", "solid"):
            out = Path(tmp) / f"{style}.png"
            trt_anon.process(src, out, style=style)
            panels.append((f"--style {style}", np.asarray(Image.open(out).convert("RGB"))))
    tiles = []
    for label, img in panels:
        tile = np.ascontiguousarray(img[20:300, 20:600])        # the faces
        tile = cv2.resize(tile, (290, 140), interpolation=cv2.INTER_AREA)
        cv2.rectangle(tile, (0, 0), (8 + 9 * len(label), 18), (255, 255, 255), -1)
        cv2.putText(tile, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    strip = np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0)
    dst = ROOT / "trt_anon" / "data" / "styles.png"
    Image.fromarray(strip).quantize(128).save(dst, optimize=True)
    print(f"{dst} ({dst.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
