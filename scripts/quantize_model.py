"""Make the INT8 CenterFace that the CPU detector runs (trt_anon/models/centerface_int8.onnx).

Static QDQ quantization with ONNX Runtime: per-channel INT8 weights, UINT8 activations whose
ranges are calibrated on real-face frames made here (astronaut, Grace Hopper and LFW crops over
skimage backgrounds, faces 20-300 px, 720p and 1080p at the detector's input sizes). The LFW
crops are the ones scripts/eval.py does *not* use, so the eval stays a held-out measurement.
On a 2-core AVX-512 VNNI CPU it runs ~2x faster than FP32; scripts/eval.py gives its leak figures.

    pip install ".[test]" && python scripts/quantize_model.py      # needs onnx and scikit-image
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/synth.py: clips with real faces (test code, not in the wheel)

from synth import Face, render  # noqa: E402

from trt_anon.detect import centerface as cf  # noqa: E402
from trt_anon.detect.onnxrt import OnnxRuntimeDetector  # noqa: E402

DST = ROOT / "trt_anon" / "models" / "centerface_int8.onnx"


def calibration_blobs() -> list[np.ndarray]:
    """Detector inputs (1, 3, h, w) from frames unlike the eval set's, as the CPU path would feed them."""
    from skimage import data

    lfw = [f"lfw:{i}" for i in range(100) if i % 7]  # eval.py uses lfw:0, 7, 14, ...
    backgrounds = [data.coffee(), data.chelsea(), data.rocket()]
    blobs = []
    for k, (width, height) in enumerate([(1280, 720), (1920, 1080), (1280, 720), (1920, 1080)]):
        faces = [Face(size, (40 + 230 * j, 50 + 140 * (j % 3)), (9.0, 3.0), source=src, flip=bool(j % 2),
                      angle=10.0 * ((j + k) % 3 - 1), gain=(0.6, 1.0, 1.3)[(j + k) % 3])
                 for j, (size, src) in enumerate(zip((20, 36, 60, 110, 180, 300),
                                                     ["astronaut", "hopper", *lfw[6 * k:6 * k + 4]]))]
        for frame, _, _ in render(width, height, faces, 8, coffee=backgrounds[k % 3]):
            for det_size in ("auto", 640):
                geom = cf.Geometry.fit(height, width, det_size)
                blobs.append(OnnxRuntimeDetector.preprocess(None, frame[None], geom))
    return blobs


class Frames(CalibrationDataReader):
    def __init__(self, blobs: list[np.ndarray]) -> None:
        self.blobs = iter(blobs)

    def get_next(self) -> dict | None:
        blob = next(self.blobs, None)
        return None if blob is None else {cf.INPUT_NAME: blob}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        # opset 13 for per-channel DequantizeLinear; pre-processing folds BatchNorm into the convs
        onnx.save(version_converter.convert_version(onnx.load_from_string(cf.MODEL.read()), 13), fp32)
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(DST), Frames(calibration_blobs()), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    print(DST, DST.stat().st_size, hashlib.sha256(DST.read_bytes()).hexdigest())


if __name__ == "__main__":
    main()
