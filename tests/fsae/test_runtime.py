"""fsae.runtime's float mode: subnormals flushed to zero on every torch thread once the flag is set."""

import subprocess
import sys

import pytest
import torch

from fsae.runtime import flush_denormals, place

SUBNORMAL = 1e-39  # below float32's smallest normal, 1.18e-38


def test_flush_denormals_zeroes_subnormal_inputs_and_results():
    x = torch.full((64,), SUBNORMAL)
    assert bool((x * 1.5 != 0).all())  # IEEE: 1.5e-39, still subnormal
    try:
        if not flush_denormals():  # x86 with SSE3 supports it (every machine the project runs on); others may not
            pytest.skip("this CPU cannot flush subnormals")
        assert bool((x * 1.5 == 0).all())  # a subnormal input reads as zero
        assert bool((torch.full((64,), 1e-20) * 1e-20 == 0).all())  # a subnormal result is written as zero
        assert torch.equal(torch.tensor([1.5, -2.0]) * 2, torch.tensor([3.0, -4.0]))
    finally:
        torch.set_flush_denormal(False)


def test_threads_started_after_the_flag_inherit_it():
    """The flag is per thread; torch's worker threads started after it copy it (so agents set it first)."""
    code = (
        "import torch\n"
        "from fsae.runtime import flush_denormals\n"
        "flush_denormals(); torch.set_num_threads(2)\n"
        "x = torch.full((4_000_000,), 1e-39)\n"  # large enough to split over both threads
        "print(int((x * 1.5 != 0).sum()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "0"


def test_place_puts_conv_weights_channels_last_on_a_cpu_with_the_same_values():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(5, 3, 8, 8)
    y0 = model(x)
    placed = place(model, "cpu")
    assert placed is model  # in place, as nn.Module.to
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last) and not model[0].weight.is_contiguous()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    torch.testing.assert_close(model(x), y0)  # the same network, to float rounding
