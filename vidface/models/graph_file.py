"""An exported network as a plain graph file: its ATen operations in JSON and its tensors in
safetensors, loaded back with torch.fx alone.

`torch.export.load` imports torch's export, dynamo and sympy stack and rebuilds its serialised
program through a generic schema, which is most of a ready model's load time. A ready model's
graph needs little of that: it holds placeholders, tensors, ATen operator calls, ``getitem`` and
an output, with arguments of a few plain kinds. This file keeps exactly that, and refuses
anything else at save time (the caller then runs without a ready model), so a load never meets a
node it cannot rebuild. Nothing in the file is executed: operators are looked up by name in
``torch.ops`` only.
"""

from __future__ import annotations

import json
import operator
from pathlib import Path

import torch
from torch import nn

__all__ = ["load_graph", "save_graph"]

_FORMAT = 1
_PYTHON_OPERATORS = {"getitem": operator.getitem}
_ENUMS = {"dtype": torch.dtype, "layout": torch.layout, "memory_format": torch.memory_format}


def save_graph(program: torch.export.ExportedProgram, path: Path) -> None:
    """Write `program` as `path` (the graph, JSON) and `path` with the suffix ``.safetensors``
    (its tensors): ``noise.json`` and ``noise.safetensors``.

    Raises ValueError for a node or argument kind the file cannot hold.
    """
    from safetensors.torch import save_file

    module = program.module()
    nodes, tensors, parameters, inputs = [], {}, [], []
    for node in module.graph.nodes:
        record = {"op": node.op, "name": node.name}
        if node.op == "placeholder":
            value = node.meta["val"]
            inputs.append({"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")})
        elif node.op == "get_attr":
            value = operator.attrgetter(node.target)(module)
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{node.target} is a {type(value).__name__}, not a tensor")
            tensors[node.target] = value.detach().contiguous()
            if isinstance(value, nn.Parameter):
                parameters.append(node.target)
            record["target"] = node.target
        elif node.op == "call_function":
            record["target"] = _target_name(node.target)
            record["args"], record["kwargs"] = _encode(node.args), _encode(node.kwargs)
        elif node.op == "call_module" and node.target == "_guards_fn":
            continue  # export's own input checks: `GraphNetwork` checks the inputs instead
        elif node.op == "output":
            record["args"] = _encode(node.args)
        else:
            raise ValueError(f"a {node.op} node ({node.target}) cannot be saved")
        nodes.append(record)
    path.write_text(json.dumps({"format": _FORMAT, "inputs": inputs, "parameters": parameters, "nodes": nodes}))
    save_file(tensors, str(path.with_suffix(".safetensors")))


def load_graph(path: Path, device: torch.device) -> GraphNetwork:
    """The network `save_graph` wrote at `path`, with its tensors and devices on `device`."""
    from safetensors.torch import load_file

    saved = json.loads(path.read_text())
    if saved.get("format") != _FORMAT:
        raise ValueError(f"graph format {saved.get('format')!r}, not {_FORMAT}")
    tensors: dict[str, torch.Tensor] = load_file(str(path.with_suffix(".safetensors")), device=str(device))
    for name in saved["parameters"]:
        tensors[name] = nn.Parameter(tensors[name], requires_grad=False)
    graph = torch.fx.Graph()
    values: dict[str, torch.fx.Node] = {}
    for record in saved["nodes"]:
        op, name = record["op"], record["name"]
        if op == "placeholder":
            values[name] = graph.placeholder(name)
        elif op == "get_attr":
            values[name] = graph.get_attr(record["target"])
        elif op == "call_function":
            values[name] = graph.call_function(_resolve(record["target"]),
                                               _decode(record["args"], values, device),
                                               _decode(record["kwargs"], values, device))
        elif op == "output":
            graph.output(*_decode(record["args"], values, device))
        else:
            raise ValueError(f"unknown node kind {op!r}")
    inputs = [(tuple(spec["shape"]), getattr(torch, spec["dtype"])) for spec in saved["inputs"]]
    return GraphNetwork(torch.fx.GraphModule(tensors, graph), inputs)


class GraphNetwork(nn.Module):
    """A loaded graph: takes exactly the inputs it was exported for (shape and dtype) and
    returns its one output."""

    def __init__(self, graph: torch.fx.GraphModule, inputs: list[tuple[tuple[int, ...], torch.dtype]]):
        super().__init__()
        self.graph = graph
        self.inputs = inputs

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        if [(tuple(t.shape), t.dtype) for t in tensors] != self.inputs:
            raise ValueError(f"inputs {[(tuple(t.shape), t.dtype) for t in tensors]} do not match the "
                             f"exported {self.inputs}")
        (output,) = self.graph(*tensors)
        return output


def _target_name(target) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}::{target._opname}.{target._overloadname}"
    for name, function in _PYTHON_OPERATORS.items():
        if target is function:
            return name
    raise ValueError(f"a call of {target} cannot be saved")


def _resolve(name: str):
    if name in _PYTHON_OPERATORS:
        return _PYTHON_OPERATORS[name]
    namespace, _, qualified = name.partition("::")
    operator_name, _, overload = qualified.rpartition(".")
    if not namespace or not operator_name:
        raise ValueError(f"unknown operator {name!r}")
    return getattr(getattr(getattr(torch.ops, namespace), operator_name), overload)


def _encode(value):
    """JSON for a node argument: plain values as they are, the rest tagged by kind."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.fx.Node):
        return {"node": value.name}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, tuple):
        return {"tuple": [_encode(item) for item in value]}
    if isinstance(value, dict):
        return {"dict": {key: _encode(item) for key, item in value.items()}}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    for kind, cls in _ENUMS.items():
        if isinstance(value, cls):
            return {kind: str(value).removeprefix("torch.")}
    raise ValueError(f"an argument of type {type(value).__name__} cannot be saved")


def _decode(value, nodes: dict[str, torch.fx.Node], device: torch.device):
    if not isinstance(value, (list, dict)):
        return value
    if isinstance(value, list):
        return [_decode(item, nodes, device) for item in value]
    (kind, content), = value.items()
    if kind == "node":
        return nodes[content]
    if kind == "tuple":
        return tuple(_decode(item, nodes, device) for item in content)
    if kind == "dict":
        return {key: _decode(item, nodes, device) for key, item in content.items()}
    if kind == "device":  # the device the graph was exported on: the one it is loaded on now
        return device
    if kind in _ENUMS:
        value = getattr(torch, content)
        if not isinstance(value, _ENUMS[kind]):
            raise ValueError(f"unknown {kind} {content!r}")
        return value
    raise ValueError(f"unknown argument kind {kind!r}")
