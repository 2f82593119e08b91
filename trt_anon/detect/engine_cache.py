"""TensorRT engine cache: names and checks, kept apart from TensorRT so CI exercises them.

An engine only runs on the GPU model and TensorRT version that built it, for the input shape
range of its optimisation profile. The file name encodes all of that; a JSON sidecar repeats it,
and an engine whose sidecar does not match this machine and this model is refused, never used.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import BackendError
from . import centerface as cf
from .model import Model

ROOT = Path(__file__).resolve().parents[2] / "engines"


@dataclass(frozen=True)
class EngineKey:
    gpu: str             # device name, e.g. "NVIDIA H100 80GB HBM3"
    cc: str              # compute capability, e.g. "90"
    trt: str             # TensorRT version, e.g. "10.13.0"
    model: str           # SHA-256 of the ONNX model
    precision: str       # "fp16"
    in_h: int            # network input height and width (multiples of 32)
    in_w: int
    max_batch: int
    name: str = "centerface"  # the model's name (detect.MODELS)

    @property
    def filename(self) -> str:
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu.lower()).strip("-")
        return (f"{self.name}-{self.model[:12]}-{self.precision}-{self.in_w}x{self.in_h}-b{self.max_batch}"
                f"-{gpu}-sm{self.cc}-trt{self.trt}.engine")


def cache_dir(folder: str | Path | None = None) -> Path:
    """``folder``, else ``$TRT_ANON_ENGINE_DIR`` (a volume in Docker, so engines outlive the
    container), else ``engines/`` beside the package in a checkout, else ~/.cache/trt_anon/engines."""
    folder = folder or os.environ.get("TRT_ANON_ENGINE_DIR")
    if folder:
        return Path(folder)
    if ROOT.is_dir():
        return ROOT
    return Path.home() / ".cache" / "trt_anon" / "engines"


def key_for(gpu: str, cc: str, trt_version: str, geom: cf.Geometry, max_batch: int = 32,
            model: Model = cf.MODEL) -> EngineKey:
    return EngineKey(gpu, cc, trt_version, model.sha256(), "fp16", geom.in_h, geom.in_w, max_batch, model.name)


def write_sidecar(engine_path: Path, key: EngineKey) -> None:
    engine_path.with_suffix(".json").write_text(json.dumps(asdict(key), indent=1))


def check(engine_path: Path, key: EngineKey) -> None:
    """Refuse an engine built elsewhere, for another model, shape or TensorRT: say why."""
    side = engine_path.with_suffix(".json")
    if not engine_path.is_file():
        raise BackendError(f"TensorRT engine {engine_path} does not exist")
    if not side.is_file():
        raise BackendError(f"TensorRT engine {engine_path} has no {side.name}; rebuild it with scripts/build_engine.py")
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        raise BackendError(f"{side} is unreadable; rebuild the engine with scripts/build_engine.py") from None
    want = asdict(key)
    diffs = [f"{k} {meta.get(k)!r} != {v!r}" for k, v in want.items() if meta.get(k) != v and k != "max_batch"]
    if meta.get("max_batch", 0) < key.max_batch:
        diffs.append(f"max_batch {meta.get('max_batch')} < {key.max_batch}")
    if diffs:
        raise BackendError(f"TensorRT engine {engine_path.name} does not fit here ({'; '.join(diffs)}); "
                           "rebuild it with scripts/build_engine.py")
