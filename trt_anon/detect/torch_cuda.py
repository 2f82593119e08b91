"""A model (CenterFace) in PyTorch FP16 on CUDA: the GPU detector when TensorRT is not installed.

The network is built directly from the ONNX initializers (graph.py): six op types, no
onnx2torch. Frames stay on the device: CuPy preprocessing -> DLPack -> PyTorch -> DLPack ->
CuPy decoding; only candidate boxes are copied to the host.

CuPy and PyTorch share one stream (PyTorch runs on it as an ``ExternalStream``): DLPack's
``__dlpack__(stream=...)`` orders the consumer's stream after the producer's only when they differ
(CuPy's ndarray.__dlpack__, torch's Tensor.__dlpack__), so here no event and no host sync is needed.
"""
from __future__ import annotations

from ..cuda import on_stream
from ..errors import BackendError
from . import centerface as cf
from . import load_model
from .gpu_pre import preprocess
from .model import Model

TITLE = "PyTorch CUDA FP16"


def make(config, frame_hw=None) -> "TorchCudaDetector":
    return TorchCudaDetector(config.det_size_for(gpu=True), config.threshold_for("fp32"),
                             model=load_model(config.model))


class TorchCudaDetector:
    name = "torch-cuda-fp16"

    def __init__(self, det_size, threshold: float, max_batch: int = 32, model: Model = cf.MODEL) -> None:
        try:
            import cupy
            import torch
        except ImportError as exc:
            raise BackendError(f"PyTorch CUDA detector needs torch and cupy: {exc}") from None
        if not torch.cuda.is_available():
            raise BackendError("PyTorch sees no CUDA GPU")
        from .graph import TorchGraph

        self.cp, self.torch = cupy, torch
        self.net = TorchGraph("cuda", torch.float16, model)
        self.model = model
        self.det_size, self.threshold, self.max_batch = det_size, threshold, max_batch
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.torch_stream = torch.cuda.ExternalStream(self.stream.ptr)

    def __call__(self, frames):
        cp, torch = self.cp, self.torch
        geom = cf.Geometry.fit(frames.shape[1], frames.shape[2], self.det_size)
        outs = []
        with on_stream(self.stream), torch.cuda.stream(self.torch_stream):
            for s in range(0, len(frames), self.max_batch):
                blob = torch.from_dlpack(preprocess(frames[s:s + self.max_batch], geom))
                outs.append([cp.from_dlpack(m.contiguous()) for m in self.net(blob)])
            maps = outs[0] if len(outs) == 1 else [cp.concatenate(m) for m in zip(*outs)]  # no copy of one chunk
            return self.model.decode(maps, self.threshold, geom, xp=cp)  # the one host wait: candidates
