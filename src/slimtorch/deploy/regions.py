"""Float regions of an ONNX graph: the nodes that must stay float for one activation tensor to stay float.

ONNX Runtime's QDQ quantizer puts a QuantizeLinear / DequantizeLinear pair on the
inputs *and outputs* of every node it quantizes. Excluding one conv therefore
does not keep its input in float: the producer still quantizes its own output.
On MobileNetV2 the costly tensors are activations, not weights (the image and the
inputs of the first two depthwise convs: ``bench/int8.py``
``mobilenet_activation_floor``), so the fallback also needs units of the form
"this tensor stays float", which means: its producer, every consumer, and the
value-preserving ops in between (Clip / Relu / Reshape …, which ORT quantizes
with their neighbours' parameters) all stay out of the quantizer.

Written here because ORT offers no "keep this tensor float" option
(``nodes_to_exclude`` works on nodes; ``TensorQuantOverrides`` only changes
how a tensor is quantized).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

# ops that carry a tensor's values (or a subset of them) unchanged in scale: ORT quantizes them
# in the same domain as their input, so a float tensor must extend through them
PASSTHROUGH = frozenset(
    {
        "Relu",
        "Clip",
        "Reshape",
        "Flatten",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "MaxPool",
        "Slice",
        "Split",
        "Resize",
        "Pad",
        "Expand",
        "Gather",
        "LeakyRelu",
    }
)


def _graph(proto: Any):
    producer = {o: n for n in proto.graph.node for o in n.output}
    consumers: dict[str, list] = defaultdict(list)
    for n in proto.graph.node:
        for i in n.input:
            consumers[i].append(n)
    return producer, consumers


def float_region(proto: Any, tensor: str) -> list[str]:
    """Names of the nodes to exclude from quantization so that ``tensor`` is never quantized.

    Walks back from ``tensor`` through value-preserving producers to the op that computes it
    (included), and forward to every consumer (through value-preserving consumers to theirs).
    Tensors the walk crosses are treated the same way, so the region is closed.
    """
    producer, consumers = _graph(proto)
    inits = {i.name for i in proto.graph.initializer}
    region: dict[str, None] = {}  # ordered set: reports list the producer first
    todo, seen = [tensor], set()
    while todo:
        t = todo.pop()
        if t in seen or t in inits:
            continue
        seen.add(t)
        p = producer.get(t)
        if p is not None and p.name not in region:
            region[p.name] = None
            if p.op_type in PASSTHROUGH:
                todo.extend(i for i in p.input[:1])  # the data input; Clip's min/max are constants
        for c in consumers.get(t, []):
            if c.name not in region:
                region[c.name] = None
                if c.op_type in PASSTHROUGH:
                    todo.extend(c.output)
    return list(region)


def activation_regions(proto: Any, layers: list[str]) -> dict[str, list[str]]:
    """For the data input of each node in ``layers``: ``"<tensor>" -> float_region``.

    Regions equal to a single layer (nothing gained over excluding the layer alone) are left out,
    and so are duplicates (two layers reading the same tensor share one region).
    """
    by_name = {n.name: n for n in proto.graph.node}
    out: dict[str, list[str]] = {}
    seen: set[frozenset[str]] = set()
    for name in layers:
        node = by_name.get(name)
        if node is None or not node.input:
            continue
        region = float_region(proto, node.input[0])
        key = frozenset(region)
        if len(region) > 1 and key not in seen:
            seen.add(key)
            out[node.input[0]] = region
    return out
