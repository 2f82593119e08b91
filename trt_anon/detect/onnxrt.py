"""A model (CenterFace) on ONNX Runtime: the CPU detector (CI, laptops)."""
from __future__ import annotations

import os

import cv2
import numpy as np

from ..errors import BackendError, DetectorError
from . import centerface as cf
from . import load_model
from .detections import Detections
from .model import Model

TITLE = "ONNX Runtime"


def make(config, frame_hw=None) -> "OnnxRuntimeDetector":
    return OnnxRuntimeDetector(config.det_size, config.threshold_for(config.cpu_precision),
                               precision=config.cpu_precision, model=load_model(config.model))


class OnnxRuntimeDetector:
    name = "onnxruntime"

    def __init__(self, det_size: int, threshold: float, threads: int | None = None, precision: str = "fp32",
                 model: Model = cf.MODEL) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - it is a core dependency
            raise BackendError(f"onnxruntime is not importable: {exc}") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # no busy-waiting workers: the decoder and encoder threads need those cores (+6% end to end on 2 cores)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.model = model
        self.session = ort.InferenceSession(model.read(precision), opts,
                                            providers=["CPUExecutionProvider"])
        self.name = "onnxruntime" if precision == "fp32" else f"onnxruntime-{precision}"
        self.det_size, self.threshold = det_size, threshold

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The size a frame of ``height`` x ``width`` is scaled to for the network: frames can come that size
        (``__call__``'s ``shown``), made straight from the decoder's YUV in one step."""
        geom = cf.Geometry.fit(height, width, self.det_size)
        return geom.resized_h, geom.resized_w

    def preprocess(self, frames: np.ndarray, geom: cf.Geometry) -> np.ndarray:
        """RGB uint8 or uint16 (N,H,W,3) -> float32 (N,3,in_h,in_w), letterboxed, 0..255 as CenterFace expects."""
        blob = np.zeros((len(frames), 3, geom.in_h, geom.in_w), np.float32)
        for i, frame in enumerate(frames):
            small = frame if frame.shape[:2] == (geom.resized_h, geom.resized_w) else cv2.resize(
                frame, (geom.resized_w, geom.resized_h), interpolation=cv2.INTER_AREA)
            blob[i, :, :geom.resized_h, :geom.resized_w] = small.transpose(2, 0, 1)
        if frames.dtype == np.uint16:
            blob *= 255.0 / 65535.0
        return blob

    def __call__(self, frames: np.ndarray, shown: tuple[int, int] | None = None) -> list[Detections]:
        """One Detections per frame; ``shown``: the frames' (height, width), where they come already scaled to
        ``input_size`` (boxes are given at ``shown``'s scale)."""
        geom = cf.Geometry.fit(*(shown or frames.shape[1:3]), self.det_size)
        # One frame per run: on 2 CPU cores batching is ~25% slower (cache), unlike on a GPU. Each run's output
        # maps become boxes at once, so no batch of maps (1.5 MB a frame at 720p) is held.
        out: list[Detections] = []
        model = self.model
        for f in frames:
            try:
                maps = self.session.run(list(model.output_names), {model.input_name: self.preprocess(f[None], geom)})
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise DetectorError(f"ONNX Runtime failed on a batch: {exc}") from exc
            out += model.decode(maps, self.threshold, geom)
        return out
