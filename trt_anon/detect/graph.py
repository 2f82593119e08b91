"""A model's graph read straight from its packaged ONNX file, for runtimes that are not ONNX Runtime: a
PyTorch module (no onnx2torch needed: CenterFace has six op types, ``OPS``) and an FP16 copy of the
model for TensorRT 11, which builds only strongly typed networks.

Needs the ``onnx`` package (in the [gpu] extra).
"""
from __future__ import annotations

import numpy as np

from . import centerface as cf
from .model import Model

OPS = {"Conv", "Relu", "Add", "ConvTranspose", "BatchNormalization", "Sigmoid"}


def onnx_graph(model: Model = cf.MODEL):
    import onnx
    return onnx.load_from_string(model.read())


def to_fp16(model):
    """FP16 weights and activations, FP32 at the graph's inputs and outputs (Cast nodes).

    TensorRT 11 removed BuilderFlag.FP16: precision comes from the network's own types.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    (inp,) = g.input
    cast_in = helper.make_node("Cast", [inp.name], [inp.name + "_fp16"], to=TensorProto.FLOAT16,
                               name="cast_input_fp16")
    for node in g.node:
        node.input[:] = [inp.name + "_fp16" if x == inp.name else x for x in node.input]
    casts = []
    for out in g.output:
        for node in g.node:
            node.output[:] = [out.name + "_fp16" if x == out.name else x for x in node.output]
        casts.append(helper.make_node("Cast", [out.name + "_fp16"], [out.name], to=TensorProto.FLOAT,
                                      name=f"cast_{out.name}_fp32"))
    nodes = [cast_in, *g.node, *casts]
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    return m


class TorchGraph:
    """A model's network as plain PyTorch ops (those in ``OPS``), weights taken from the ONNX initializers."""

    def __init__(self, device: str = "cuda", dtype=None, model: Model = cf.MODEL) -> None:
        import torch
        from onnx import numpy_helper

        name, model = model.name, onnx_graph(model)
        self.torch = torch
        self.dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        self.device = device
        self.weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()).to(device) for i in
                        model.graph.initializer}
        for k, v in self.weights.items():
            if v.is_floating_point():
                self.weights[k] = v.to(self.dtype)
        self.nodes = []
        for node in model.graph.node:
            if node.op_type not in OPS:
                raise ValueError(f"{name}: op {node.op_type} is not one TorchGraph runs ({', '.join(sorted(OPS))})")
            attrs = {a.name: _attr(a) for a in node.attribute}
            self.nodes.append((node.op_type, list(node.input), list(node.output), attrs))
        self.input = model.graph.input[0].name
        self.outputs = [o.name for o in model.graph.output]
        # each intermediate map is dropped after the last node that reads it: kept all to the end, a
        # batch of 32 1080p frames held ~37 GiB of activations on an H200, a few GiB this way
        last = {name: i for i, (_, ins, _, _) in enumerate(self.nodes) for name in ins if name not in self.weights}
        self.frees = [[] for _ in self.nodes]
        for name, i in last.items():
            if name not in self.outputs:
                self.frees[i].append(name)

    def __call__(self, x):
        """x: (N, 3, H, W) float tensor on the device -> the four output maps (float32)."""
        F = self.torch.nn.functional
        env = {self.input: x.to(self.dtype)}
        w = self.weights

        def get(name):
            return env[name] if name in env else w[name]

        with self.torch.inference_mode():
            for (op, ins, outs, a), done in zip(self.nodes, self.frees):
                if op == "Conv":
                    pads = a.get("pads", [0, 0, 0, 0])
                    y = F.conv2d(get(ins[0]), get(ins[1]), get(ins[2]) if len(ins) > 2 else None,
                                 stride=a.get("strides", [1, 1]), padding=pads[:2],
                                 dilation=a.get("dilations", [1, 1]), groups=a.get("group", 1))
                elif op == "ConvTranspose":
                    pads = a.get("pads", [0, 0, 0, 0])
                    y = F.conv_transpose2d(get(ins[0]), get(ins[1]), get(ins[2]) if len(ins) > 2 else None,
                                           stride=a.get("strides", [1, 1]), padding=pads[:2],
                                           output_padding=a.get("output_padding", [0, 0]),
                                           groups=a.get("group", 1), dilation=a.get("dilations", [1, 1]))
                elif op == "BatchNormalization":
                    y = F.batch_norm(get(ins[0]), get(ins[3]), get(ins[4]), get(ins[1]), get(ins[2]),
                                     training=False, eps=a.get("epsilon", 1e-5))
                elif op == "Relu":
                    y = F.relu(get(ins[0]))
                elif op == "Sigmoid":
                    y = self.torch.sigmoid(get(ins[0]))
                else:  # Add
                    y = get(ins[0]) + get(ins[1])
                env[outs[0]] = y
                for name in done:
                    del env[name]
            return [env[o].float() for o in self.outputs]


def _attr(a):
    from onnx import helper
    v = helper.get_attribute_value(a)
    return list(v) if isinstance(v, (list, tuple)) or hasattr(v, "__iter__") and not isinstance(v, (str, bytes)) else v
