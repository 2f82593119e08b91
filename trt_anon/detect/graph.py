"""A model's graph read straight from its packaged ONNX file, for runtimes that are not ONNX Runtime: a
PyTorch module (no onnx2torch needed: CenterFace has six op types, ``OPS``), BatchNorm folded into the
convolutions and NHWC on CUDA, and an FP16 copy of the model for TensorRT 11, which builds only strongly
typed networks.

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
    """A model's network as plain PyTorch ops (those in ``OPS``), weights taken from the ONNX initializers.

    ``fold_bn``: each BatchNormalization that only follows a convolution is folded into that convolution's
    weights and bias (one pass over the activations fewer; CenterFace has three, after its ConvTransposes).
    ``channels_last``: weights, and inputs that are not already, in NHWC memory order, the layout cuDNN's FP16
    tensor-core kernels read without a transpose (default: on CUDA).
    """

    def __init__(self, device: str = "cuda", dtype=None, model: Model = cf.MODEL, *, fold_bn: bool = True,
                 channels_last: bool | None = None) -> None:
        import torch
        from onnx import numpy_helper

        name, model = model.name, onnx_graph(model)
        self.torch = torch
        self.dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        self.device = device
        self.channels_last = device.startswith("cuda") if channels_last is None else channels_last
        weights = {i.name: numpy_helper.to_array(i).copy() for i in model.graph.initializer}
        self.nodes = []
        for node in model.graph.node:
            if node.op_type not in OPS:
                raise ValueError(f"{name}: op {node.op_type} is not one TorchGraph runs ({', '.join(sorted(OPS))})")
            attrs = {a.name: _attr(a) for a in node.attribute}
            self.nodes.append((node.op_type, list(node.input), list(node.output), attrs))
        self.input = model.graph.input[0].name
        self.outputs = [o.name for o in model.graph.output]
        if fold_bn:
            self.nodes = fold_batch_norms(self.nodes, weights, self.outputs)
        self.weights = {}
        read = {name for _, ins, _, _ in self.nodes for name in ins}  # not those folding replaced
        for k, v in weights.items():
            if k not in read:
                continue
            t = torch.from_numpy(v).to(device)
            if t.is_floating_point():
                t = t.to(self.dtype)
            if self.channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            self.weights[k] = t
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
        x = x.to(self.dtype)
        if self.channels_last:  # a no-op for the FP16 NHWC buffer the detector fills (gpu_pre "nhwc-fp16")
            x = x.contiguous(memory_format=self.torch.channels_last)
        env = {self.input: x}
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


def fold_batch_norms(nodes: list, weights: dict, outputs: list[str]) -> list:
    """The graph with each BatchNormalization whose input is a Conv or ConvTranspose output read by nothing
    else folded into that convolution: y = (conv(x) - mean) * s + beta with s = gamma / sqrt(var + eps) is
    conv'(x) with its output channels' weights scaled by s and bias (b - mean) * s + beta. Folded weights
    are new entries of ``weights`` (computed in float64, stored as float32); others are left alone."""
    readers: dict[str, int] = {}
    for _, ins, _, _ in nodes:
        for name in ins:
            readers[name] = readers.get(name, 0) + 1
    made = {outs[0]: i for i, (_, _, outs, _) in enumerate(nodes)}
    out, dropped = list(nodes), set()
    for i, (op, ins, outs, a) in enumerate(nodes):
        j = made.get(ins[0])
        if op != "BatchNormalization" or j is None or nodes[j][0] not in ("Conv", "ConvTranspose") \
                or readers[ins[0]] != 1 or ins[0] in outputs:
            continue
        conv_op, conv_ins, _, conv_a = nodes[j]
        gamma, beta, mean, var = (weights[n].astype(np.float64) for n in ins[1:5])
        s = gamma / np.sqrt(var + a.get("epsilon", 1e-5))
        w = weights[conv_ins[1]].astype(np.float64)
        if conv_op == "Conv":  # (Cout, Cin / g, kh, kw)
            w = w * s[:, None, None, None]
        else:                  # ConvTranspose: (Cin, Cout / g, kh, kw), output channel = group * Cout / g + j
            g = conv_a.get("group", 1)
            w = (w.reshape(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
                 * s.reshape(g, 1, -1, 1, 1)).reshape(w.shape)
        b = weights[conv_ins[2]].astype(np.float64) if len(conv_ins) > 2 else np.zeros_like(s)
        wname, bname = f"{conv_ins[1]}/bn_folded", f"{outs[0]}/bn_folded_bias"
        weights[wname], weights[bname] = w.astype(np.float32), ((b - mean) * s + beta).astype(np.float32)
        out[j] = (conv_op, [conv_ins[0], wname, bname], list(outs), conv_a)
        dropped.add(i)
    return [n for i, n in enumerate(out) if i not in dropped]


def _attr(a):
    from onnx import helper
    v = helper.get_attribute_value(a)
    return list(v) if isinstance(v, (list, tuple)) or hasattr(v, "__iter__") and not isinstance(v, (str, bytes)) else v
