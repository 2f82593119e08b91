"""A model (CenterFace) in PyTorch FP16 on CUDA: the GPU detector when TensorRT is not installed.

The network is built directly from the ONNX initializers (graph.py): six op types, no onnx2torch,
BatchNorm folded into the convolutions, NHWC (``channels_last``) FP16 as cuDNN's tensor cores read it.
Frames stay on the device: the CuPy preprocessing kernel writes FP16 NHWC straight into the detector's
input buffer -> DLPack -> PyTorch -> DLPack -> CuPy decoding; only candidate boxes reach the host.

A look is cheap when no call meets cuDNN cold: every call runs at one of a few batch sizes (``buckets``:
a call of 11 frames runs as 16, the padding rows ignored), and each is run once when the detector is made
for its frame size (``warm_up``), with cuDNN's autotuner on, so the first batches of a file pay nothing.
Optionally (``graphs``; ``TRT_ANON_CUDA_GRAPHS=1``) each bucket's network is captured once as a CUDA graph
and replayed, one launch instead of ~120; off until the nightly measures that it pays (docs/gpu.md).

CuPy and PyTorch share one stream (PyTorch runs on it as an ``ExternalStream``): DLPack's
``__dlpack__(stream=...)`` orders the consumer's stream after the producer's only when they differ
(CuPy's ndarray.__dlpack__, torch's Tensor.__dlpack__), so here no event and no host sync is needed.
"""
from __future__ import annotations

import os

from ..cuda import on_stream
from ..errors import BackendError
from . import centerface as cf
from . import load_model
from .gpu_pre import preprocess
from .model import Model

TITLE = "PyTorch CUDA FP16"
GRAPHS_ENV = "TRT_ANON_CUDA_GRAPHS"   # "1": replay each batch size's network as a CUDA graph


def make(config, frame_hw=None) -> "TorchCudaDetector":
    return TorchCudaDetector(config.det_size_for(gpu=True), config.threshold_for("fp32"),
                             model=load_model(config.model), frame_hw=frame_hw,
                             graphs=os.environ.get(GRAPHS_ENV) == "1")


def buckets(max_batch: int) -> list[int]:
    """The batch sizes the network runs at, up to ``max_batch``: 1 (a live stream's frame), 4, 8, then steps
    of 8 (``detect_every="auto"`` looks at 8, 16, 24 or 32 frames of a 32-frame batch), and ``max_batch``."""
    return sorted({n for n in (1, 4, 8, *range(16, max_batch, 8)) if n < max_batch} | {max_batch})


class TorchCudaDetector:
    name = "torch-cuda-fp16"

    def __init__(self, det_size, threshold: float, max_batch: int = 32, model: Model = cf.MODEL,
                 frame_hw: tuple[int, int] | None = None, graphs: bool = False) -> None:
        """``frame_hw``: the (height, width) of the frames it will see; every bucket is warmed up for them."""
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
        self.buckets = buckets(max_batch)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.torch_stream = torch.cuda.ExternalStream(self.stream.ptr)
        self.inputs: dict[tuple[int, int], tuple] = {}   # input size -> (CuPy buffer, the same as a torch tensor)
        self.graphs: dict | None = {} if graphs else None  # (input size, bucket) -> (replay, its output maps)
        self.pool = None                                   # one memory pool for every graph: they never overlap
        # cuDNN times its algorithms for each new shape and keeps the fastest: with fixed buckets that is a
        # few shapes, each met first in warm_up (this is PyTorch's process-wide setting)
        torch.backends.cudnn.benchmark = True
        if frame_hw is not None:
            self.warm_up(cf.Geometry.fit(*frame_hw, det_size))

    def bucket(self, n: int) -> int:
        """The batch size a call of ``n`` frames (1..max_batch) runs at."""
        return next(b for b in self.buckets if b >= n)

    def warm_up(self, geom: cf.Geometry) -> None:
        """Run (or capture) the network once at every bucket for this input size: cuDNN's algorithm search
        and PyTorch's allocations happen here, at set-up, not in the first batches. Nothing to tune off CUDA."""
        if not str(self.net.device).startswith("cuda"):
            return
        with on_stream(self.stream), self.torch.cuda.stream(self.torch_stream):
            self._input(geom)
            for b in self.buckets:
                self._network(geom, b)
        self.stream.synchronize()

    def _input(self, geom: cf.Geometry):
        """The fixed FP16 NHWC input buffer for this input size (max_batch frames), and the same memory as an
        NCHW tensor with channels-last strides; made once, on the detector's stream."""
        hw = (geom.in_h, geom.in_w)
        if hw not in self.inputs:
            buf = self.cp.zeros((self.max_batch, *hw, 3), self.cp.float16)
            self.inputs[hw] = (buf, self.torch.from_dlpack(buf).permute(0, 3, 1, 2))
        return self.inputs[hw]

    def _network(self, geom: cf.Geometry, b: int):
        """The four output maps for the first ``b`` frames of the input buffer: eager, or a graph replayed."""
        blob = self._input(geom)[1][:b]
        if self.graphs is None:
            return self.net(blob)
        key = (geom.in_h, geom.in_w, b)
        if key not in self.graphs:
            self.graphs[key] = self._capture(blob)
        replay, maps = self.graphs[key]
        replay()
        return maps

    def _capture(self, blob):
        """The network on ``blob`` captured as a CUDA graph (after one eager run, which settles cuDNN's choices).
        The graphs share one memory pool: each output is read before the next replay (``__call__``), so one
        graph's intermediates may reuse another's memory. ``thread_local``: the decode and encode threads'
        CUDA calls during a capture are theirs, not the capture's."""
        torch = self.torch
        self.net(blob)
        graph = torch.cuda.CUDAGraph()
        self.pool = self.pool or torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self.pool, stream=self.torch_stream, capture_error_mode="thread_local"):
            maps = self.net(blob)
        return graph.replay, maps

    def __call__(self, frames):
        cp, torch = self.cp, self.torch
        geom = cf.Geometry.fit(frames.shape[1], frames.shape[2], self.det_size)
        outs = []
        with on_stream(self.stream), torch.cuda.stream(self.torch_stream):
            buf = self._input(geom)[0]
            for s in range(0, len(frames), self.max_batch):
                chunk = frames[s:s + self.max_batch]
                n = len(chunk)
                preprocess(chunk, geom, out=buf[:n], layout="nhwc-fp16")  # rows n.. of the bucket: ignored
                # a graph's outputs are rewritten by its next replay: those are copied, eager ones only made dense
                outs.append([cp.from_dlpack(m[:n].clone(memory_format=torch.contiguous_format)
                                            if self.graphs is not None else m[:n].contiguous())
                             for m in self._network(geom, self.bucket(n))])
            maps = outs[0] if len(outs) == 1 else [cp.concatenate(m) for m in zip(*outs)]  # no copy of one chunk
            return self.model.decode(maps, self.threshold, geom, xp=cp)  # the one host wait: candidates
