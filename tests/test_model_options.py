"""Model run options: device and dtype resolution, batch size, the shared CLI flags."""

from __future__ import annotations

import argparse

import pytest
import torch

from vidface.commands.options import add_option_flags, options_from_flags
from vidface.errors import InputError
from vidface.models.options import ModelOptions, auto_batch_size, resolve_device, resolve_dtype, torch_dtype


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="'tpu'"):
        resolve_device("tpu")
    with pytest.raises(InputError, match="'mps'"):
        resolve_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda:0")


@pytest.mark.parametrize("bf16_instructions, auto", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_on_a_cpu_is_bf16_where_it_has_bf16_instructions(monkeypatch, bf16_instructions, auto):
    import vidface.machine

    def cpu_has(feature: str) -> bool:
        assert feature == "AVX512BF16"
        return bf16_instructions

    monkeypatch.setattr(vidface.machine, "cpu_has", cpu_has)
    assert resolve_dtype("auto", torch.device("cpu")) == auto
    assert resolve_dtype("fp32", torch.device("cpu")) == torch.float32


@pytest.mark.parametrize("device, dtype, compiled, nhwc", [
    ("cuda", torch.bfloat16, False, False),  # eager on a GPU: NCHW (its GroupNorms are slower in NHWC)
    ("cuda", torch.bfloat16, True, True),
    ("cuda", torch.float16, True, True),
    ("cpu", torch.bfloat16, False, True),  # oneDNN's bf16 kernels
    ("cpu", torch.bfloat16, True, True),
    ("cpu", torch.float32, False, False),
    ("cpu", torch.float32, True, False),
])
def test_the_layout_is_nhwc_only_where_it_is_faster(device, dtype, compiled, nhwc):
    from vidface.models.loading import uses_channels_last

    options = ModelOptions(compile=compiled)
    assert uses_channels_last(options, torch.device(device), dtype) is nhwc
    assert uses_channels_last(ModelOptions(compile=compiled, channels_last=False), torch.device(device), dtype) is False


def test_dtype_and_batch_size():
    cpu = torch.device("cpu")
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype("fp16", cpu) == torch.float16
    assert auto_batch_size(cpu, torch.float32) == 1
    with pytest.raises(InputError, match="fp8"):
        ModelOptions(dtype="fp8")
    with pytest.raises(InputError, match="-2"):
        ModelOptions(batch_size=-2)


def test_model_flags_build_model_options():
    parser = argparse.ArgumentParser()
    add_option_flags(parser, ModelOptions)
    args = parser.parse_args(["--weights", "w", "--base", "b", "--device", "cpu", "--dtype", "bf16",
                              "--batch-size", "8", "--compile", "--no-channels-last", "--trust-pickle"])
    assert options_from_flags(args, ModelOptions) == ModelOptions(weights="w", base="b", weights_repo=None, trust_pickle=True,
                                               device="cpu", dtype="bf16", batch_size=8, channels_last=False,
                                               compile=True)
    assert options_from_flags(parser.parse_args(["--batch-size", "auto"]), ModelOptions).batch_size == 0
    for bad in ("-1", "many"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--batch-size", bad])


@pytest.mark.parametrize("free_gib, dtype, batch", [(80, "bf16", 32), (24, "bf16", 16), (12, "bf16", 8), (4, "bf16", 2),
                                                    (1, "bf16", 1), (24, "fp32", 8)])
def test_auto_batch_is_a_power_of_two_that_fits(monkeypatch, free_gib, dtype, batch):
    """What a GPU with this much free memory gets: the model's weights set aside, 700 MiB a face in
    16-bit (twice in fp32), a power of two at most 32, so nearby amounts give the same batch."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free_gib * 2**30, 80 * 2**30))
    assert auto_batch_size(torch.device("cuda"), torch_dtype(dtype)) == batch
