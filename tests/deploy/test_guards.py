"""Deployed models refuse what they cannot do in one line (issue 20): casts and moves, tracing
and scripting, NaN input, malformed input; the casts they allow keep them exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import autobin
from autobin import AutobinError
from autobin.deploy import DeployError, PackedConv2d
from autobin.deploy.errors import DeployInputError
from autobin.nn import AdaBinConv2d, Maxout


def _bnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        Maxout(16),
        AdaBinConv2d(16, 24, 3, padding=1),
        nn.BatchNorm2d(24),
        Maxout(24),
        AdaBinConv2d(24, 24, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(24, 4),
    ).eval()
    with torch.no_grad():
        model[3].act_beta.fill_(0.05)
        model[6].act_beta.fill_(-0.03)
    return model


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "cast",
    [
        lambda m: m.float(),
        lambda m: m.to(torch.float32),
        lambda m: m.cpu(),
        lambda m: m.to("cpu", torch.float32),
        lambda m: m.to(memory_format=torch.channels_last),
        lambda m: m.share_memory(),
    ],
    ids=["float", "to_float32", "cpu", "to_cpu_float32", "channels_last", "share_memory"],
)
def test_float32_cpu_casts_leave_the_deployed_model_exact(cast):
    fast = autobin.deploy(_bnn())
    before = fast(X)
    assert torch.isfinite(before).all()
    assert cast(fast) is fast
    packed = fast.model[3]
    assert packed.coefficients.dtype == torch.float64 and packed.wbits.is_contiguous()
    assert torch.equal(fast(X), before)
    assert torch.equal(packed.to(torch.float32)(torch.ones(1, 16, 4, 4)),
                       autobin.deploy(_bnn()).model[3](torch.ones(1, 16, 4, 4)))  # fmt: skip


@pytest.mark.parametrize(
    "cast",
    [
        lambda m: m.double(),
        lambda m: m.half(),
        lambda m: m.bfloat16(),
        lambda m: m.to(torch.float64),
        lambda m: m.to("meta"),
    ],
    ids=["double", "half", "bfloat16", "to_float64", "meta"],
)
def test_other_casts_and_moves_are_refused_and_change_nothing(cast):
    fast = autobin.deploy(_bnn())
    before = fast(X)
    with pytest.raises(DeployError, match="float32 on the CPU") as info:
        cast(fast)
    assert "\n" not in str(info.value) and isinstance(info.value, AutobinError)
    with pytest.raises(DeployError, match="float32 on the CPU"):
        cast(fast.model[3])  # a packed layer on its own refuses too
    assert torch.equal(fast(X), before)


def test_a_moved_device_without_it_is_refused_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: .cuda() is a real move, refused by the dtype test")
    fast = autobin.deploy(_bnn())
    with pytest.raises(DeployError, match="cannot be moved or cast"):
        fast.cuda()


def test_buffers_replaced_by_another_dtype_are_refused():
    fast = autobin.deploy(_bnn())
    state = {
        k: (v.float() if v.dtype == torch.float64 else v) for k, v in fast.state_dict().items()
    }
    before = fast(X)
    fast.load_state_dict(state)  # copies into the float64 buffers: fine
    assert torch.equal(fast(X), before)
    fast.load_state_dict(state, assign=True)  # replaces them by float32 tensors
    with pytest.raises(DeployError, match=r"coefficients is a torch\.float32"):
        fast(X)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch deprecates jit itself
def test_tracing_and_scripting_are_refused_in_one_line():
    fast = autobin.deploy(_bnn())
    with pytest.raises(DeployError, match="cannot be traced or exported"):
        torch.jit.trace(fast, X)
    with pytest.raises(DeployError, match="cannot be traced or exported"):
        torch.jit.trace(fast.model[3], torch.randn(1, 16, 4, 4))
    with pytest.raises(DeployError, match="cannot be traced or exported"):
        torch.export.export(fast, (X,))
    with pytest.raises(DeployError, match="cannot be scripted"):
        torch.jit.script(fast)
    with pytest.raises(DeployError, match="cannot be scripted"):
        torch.jit.script(fast.model[3])
    assert torch.isfinite(fast(X)).all()  # still runs


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_input_is_refused_naming_where(value):
    fast = autobin.deploy(_bnn())
    x = X.clone()
    x[1, 2, 3, 4] = value
    with pytest.raises(DeployInputError, match=r"1 NaN or infinite values \(first at index "
                       r"\(1, 2, 3, 4\)\)"):  # fmt: skip
        fast(x)


def test_malformed_inputs_end_in_one_clear_line():
    fast = autobin.deploy(_bnn())
    cases = {
        "3-channel": torch.randn(2, 4, 8, 8),
        "unsqueeze": torch.randn(3, 8, 8),
        "x.float": torch.randint(0, 255, (2, 3, 8, 8)),
        "x.float\\(\\).cpu": X.double(),
        "x.float\\(\\).cpu\\(\\)": X.half(),
        "3-channel images": torch.randn(2, 3, 8),
    }
    for hint, x in cases.items():
        with pytest.raises(DeployInputError, match=hint) as info:
            fast(x)
        assert "\n" not in str(info.value) and isinstance(info.value, ValueError)
    assert fast.input_channels == 3


def test_packed_layer_shape_errors_are_deploy_input_errors():
    packed = PackedConv2d(_bnn()[3])
    with pytest.raises(DeployInputError, match=r"expects input \(N, 16, H, W\)"):
        packed(torch.randn(1, 7, 5, 5))
