"""Float regions: which nodes must stay out of ORT's quantizer for one activation tensor to stay float."""

from __future__ import annotations

import onnx
import torch
from torch import nn
from torch.nn import functional as F

from slimtorch.deploy.regions import activation_regions, float_region
from slimtorch.export.onnx import export_onnx, onnx_module_names

torch.set_num_threads(1)


class ResidualUserNet(nn.Module):
    """A user's residual block: ReLU6, a skip connection read by an add and by the next conv, a flatten."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.expand = nn.Conv2d(8, 16, 1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.project = nn.Conv2d(16, 8, 1)
        self.after = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x):
        s = self.stem(x)
        y = self.project(F.relu6(self.dw(F.relu6(self.expand(s)))))
        z = self.after(s + y)
        return self.head(torch.flatten(F.max_pool2d(z, 2), 1))


def _graph(tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(ResidualUserNet().eval(), torch.randn(2, 3, 8, 8), path, check=False)
    proto = onnx.load(str(path))
    mods = onnx_module_names(proto)
    by_module = {}
    for n in proto.graph.node:
        by_module.setdefault(mods.get(n.name, n.op_type), n)
    return proto, mods, by_module


def test_region_of_a_relu6_output_spans_producer_clip_and_consumer(tmp_path):
    proto, mods, by = _graph(tmp_path)
    region = float_region(proto, by["dw"].input[0])  # relu6(expand(s))
    ops = {n.name: n.op_type for n in proto.graph.node}
    assert {mods.get(n) for n in region if ops[n] == "Conv"} == {"expand", "dw"}
    assert [ops[n] for n in region].count("Clip") == 1


def test_region_of_a_skip_tensor_includes_every_consumer(tmp_path):
    proto, mods, by = _graph(tmp_path)
    region = float_region(proto, by["expand"].input[0])  # s: read by expand and by the add
    ops = {n.name: n.op_type for n in proto.graph.node}
    assert {mods.get(n) for n in region if ops[n] == "Conv"} == {"stem", "expand"}
    assert "Add" in {ops[n] for n in region}


def test_region_extends_through_value_preserving_ops(tmp_path):
    proto, mods, by = _graph(tmp_path)
    region = float_region(proto, by["head"].input[0])  # flatten(max_pool(z)): back to the conv computing z
    ops = {n.name: n.op_type for n in proto.graph.node}
    assert {"MaxPool", "Flatten"} <= {ops[n] for n in region} or {"MaxPool", "Reshape"} <= {ops[n] for n in region}
    assert {mods.get(n) for n in region if ops[n] in ("Conv", "Gemm")} == {"after", "head"}


def test_activation_regions_skip_single_layer_and_duplicate_regions(tmp_path):
    proto, mods, by = _graph(tmp_path)
    layers = [n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm")]
    regions = activation_regions(proto, layers)
    assert by["stem"].input[0] not in regions  # the graph input: only the stem reads it, same as the layer alone
    assert len({frozenset(r) for r in regions.values()}) == len(regions)
    assert all(len(r) > 1 for r in regions.values())


def test_quantizing_without_a_region_leaves_its_tensor_float(tmp_path):
    from onnxruntime import quantization as q

    proto, mods, by = _graph(tmp_path)
    tensor = by["dw"].input[0]
    region = float_region(proto, tensor)

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": torch.randn(2, 3, 8, 8).numpy()} for _ in range(4)])

        def get_next(self):
            return next(self.it, None)

    out = tmp_path / "q.onnx"
    q.quantize_static(
        str(tmp_path / "m.onnx"),
        str(out),
        Reader(),
        nodes_to_exclude=region,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
        per_channel=True,
    )
    graph = onnx.load(str(out)).graph
    quantized_inputs = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    assert tensor not in quantized_inputs
    assert by["project"].input[0] in quantized_inputs  # the rest of the model is still quantized
