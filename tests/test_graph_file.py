"""Graph files (vidface.models.graph_file): an exported network saved as its ATen graph and
tensors, loaded back with torch.fx alone, computes exactly what the exported program computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from vidface.models.graph_file import GraphNetwork, load_graph, save_graph


class _Mixed(nn.Module):
    """A network with the argument kinds a graph file holds: a device (arange), dtypes (casts),
    a list of outputs taken apart with getitem (chunk), floats, bools, a buffer and parameters."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8, eps=1e-5)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 8).view(1, 8, 1, 1))

    def forward(self, images: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        features = torch.nn.functional.silu(self.norm(self.conv(images))) * self.scale
        first, second = features.chunk(2, dim=1)
        steps = torch.arange(first.shape[-1], device=images.device, dtype=torch.float32)
        mixed = first * torch.sin(steps) + second.to(torch.float64).exp().to(images.dtype)
        return mixed + prompt.mean(dim=1, keepdim=True)[..., None]


def _exported(module: nn.Module, *inputs: torch.Tensor) -> torch.export.ExportedProgram:
    return torch.export.export(module.eval(), inputs)


def test_a_saved_graph_computes_the_exported_programs_output(tmp_path: Path):
    torch.manual_seed(0)
    images, prompt = torch.randn(2, 3, 6, 6), torch.randn(2, 5, 6)
    program = _exported(_Mixed(), images, prompt)
    save_graph(program, tmp_path / "mixed.json")
    network = load_graph(tmp_path / "mixed.json", torch.device("cpu"))
    assert isinstance(network, GraphNetwork)
    expected = program.module()(images, prompt)
    assert torch.equal(network(images, prompt), expected)
    other_images, other_prompt = torch.randn(2, 3, 6, 6), torch.randn(2, 5, 6)
    assert torch.equal(network(other_images, other_prompt), program.module()(other_images, other_prompt))
    parameters = dict(network.named_parameters())
    assert len(parameters) == 4 and not any(p.requires_grad for p in parameters.values())  # conv, norm
    assert len(dict(network.named_buffers())) == 1  # scale


def test_a_saved_graph_refuses_other_inputs(tmp_path: Path):
    images, prompt = torch.randn(2, 3, 6, 6), torch.randn(2, 5, 6)
    save_graph(_exported(_Mixed(), images, prompt), tmp_path / "mixed.json")
    network = load_graph(tmp_path / "mixed.json", torch.device("cpu"))
    with pytest.raises(ValueError, match="do not match the exported"):
        network(torch.randn(3, 3, 6, 6), prompt)
    with pytest.raises(ValueError, match="do not match the exported"):
        network(images.double(), prompt)


def test_a_graph_with_control_flow_is_refused_at_save(tmp_path: Path):
    class Branching(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cond(x.sum() > 0, lambda v: v + 1, lambda v: v - 1, (x,))

    program = _exported(Branching(), torch.randn(4))
    with pytest.raises(ValueError, match="cannot be saved|not a tensor"):
        save_graph(program, tmp_path / "branching.json")


def test_a_graph_file_names_only_operators(tmp_path: Path):
    """A load looks operators up in torch.ops; a name outside it is an error, not a call."""
    images, prompt = torch.randn(2, 3, 6, 6), torch.randn(2, 5, 6)
    save_graph(_exported(_Mixed(), images, prompt), tmp_path / "mixed.json")
    saved = json.loads((tmp_path / "mixed.json").read_text())
    calls = [node for node in saved["nodes"] if node["op"] == "call_function"]
    assert {node["target"].split("::")[0] for node in calls} <= {"aten", "getitem"}
    calls[0]["target"] = "os.system"
    (tmp_path / "mixed.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="unknown operator"):
        load_graph(tmp_path / "mixed.json", torch.device("cpu"))
