"""A detector network as every runtime sees it: its packaged files, measured thresholds, tensor names, and how
its outputs become ``Detections``. A runtime (onnxrt, torch_cuda, tensorrt) runs any ``Model``; the networks
trt_anon ships are listed in ``detect.MODELS``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Mapping

from ..errors import DetectorError


@dataclass(frozen=True)
class Model:
    name: str
    finds: str                             # what its boxes are: a class in detections.CLASSES
    files: Mapping[str, tuple[str, str]]   # precision -> (file in trt_anon/models/, SHA-256); "fp32" is the
                                           # network the GPU runtimes build FP16 from
    thresholds: Mapping[str, float]        # precision -> the lowest score with no false alarm on the eval set
    input_name: str
    output_names: tuple[str, ...]
    decode: Callable                       # (output maps, threshold, Geometry, xp) -> one Detections per frame
    landmarks: bool = True                 # gives eye positions (needed by --target eyes)

    def path(self, precision: str = "fp32") -> Path:
        """The packaged ONNX file."""
        return Path(str(resources.files("trt_anon") / "models" / self.files[precision][0]))

    def sha256(self, precision: str = "fp32") -> str:
        return self.files[precision][1]

    def read(self, precision: str = "fp32", path: Path | None = None) -> bytes:
        """The model's bytes, refused if the packaged file is not the one shipped (tampered or truncated)."""
        path = path or self.path(precision)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DetectorError(f"cannot read the detector model {path}: {exc.strerror}") from None
        digest = hashlib.sha256(data).hexdigest()
        expected = {self.path(p): sha for p, (_, sha) in self.files.items()}.get(path)
        if expected is not None and digest != expected:
            raise DetectorError(f"packaged model {path} has SHA-256 {digest[:12]}..., "
                                f"expected {expected[:12]}...; reinstall trt_anon")
        return data
