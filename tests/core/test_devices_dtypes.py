"""CPU / CUDA and float32 / bfloat16: outputs and gradients keep their dtype and device."""

from __future__ import annotations

import pytest
import torch

from autobin.nn import AdaBinConv2d, AdaBinLinear, Maxout
from autobin.quantizers import adabin_activation, adabin_weight

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ],
    ),
]
DTYPES = [torch.float32, torch.bfloat16]


def _check_grads(params, dtypes):
    for p, dt in zip(params, dtypes):
        assert p.grad is not None and p.grad.dtype == dt and torch.isfinite(p.grad.float()).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["paper", "code"])
def test_activation_binarizer_dtype_device(device, dtype, form):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4, device=device).to(dtype).requires_grad_()
    alpha = torch.tensor(0.75, device=device, requires_grad=True)
    beta = torch.tensor(0.125, device=device, requires_grad=True)
    out = adabin_activation(x, alpha, beta, form)
    assert out.dtype == dtype and out.device == x.device
    c = 0.125 if form == "paper" else 0.75 * 0.125  # exact in bf16 and float32
    hand = torch.where(x.detach() >= 0.125, c + 0.75, c - 0.75).to(dtype)
    assert torch.equal(out, hand)
    out.float().square().sum().backward()
    assert x.grad.dtype == dtype and x.grad.device == x.device
    _check_grads([alpha, beta], [torch.float32, torch.float32])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ["ste", "ede"])
def test_conv_dtype_device(device, dtype, estimator):
    torch.manual_seed(1)
    layer = AdaBinConv2d(4, 6, 3, padding=1, groups=2, device=device, dtype=dtype,
                         weight_estimator=estimator)  # fmt: skip
    assert layer.act_alpha.device == layer.weight.device
    x = torch.randn(2, 4, 6, 6, device=device, dtype=dtype, requires_grad=True)
    out = layer(x)
    assert out.dtype == dtype and out.device.type == torch.device(device).type
    out.float().square().mean().backward()
    assert x.grad.dtype == dtype
    _check_grads(
        [layer.weight, layer.bias, layer.act_alpha, layer.act_beta],
        [dtype, dtype, torch.float32, torch.float32],
    )
    # the binary weight still has two values per channel in low precision
    wb = adabin_weight(layer.weight.detach())
    assert wb.dtype == dtype
    assert all(wb[o].unique().numel() <= 2 for o in range(6))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_dtype_device(device, dtype):
    torch.manual_seed(2)
    layer = AdaBinLinear(8, 3, device=device, dtype=dtype)
    x = torch.randn(4, 5, 8, device=device, dtype=dtype, requires_grad=True)
    out = layer(x)
    assert out.dtype == dtype and out.shape == (4, 5, 3)
    out.float().sum().backward()
    assert x.grad.dtype == dtype
    _check_grads([layer.weight, layer.act_alpha], [dtype, torch.float32])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 4, 3, 3), (2, 5, 4)])
def test_maxout_dtype_device(device, dtype, shape):
    torch.manual_seed(3)
    c = shape[1] if len(shape) == 4 else shape[-1]
    m = Maxout(c, device=device)
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    out = m(x)
    assert out.dtype == dtype
    out.float().sum().backward()
    assert x.grad.dtype == dtype
    _check_grads([m.gamma_pos, m.gamma_neg], [torch.float32, torch.float32])
    # gamma_pos init 1 and gamma_neg 0.25 are exact in bf16
    ref = torch.where(x.detach() >= 0, x.detach(), x.detach() * 0.25)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("device", DEVICES)
def test_from_float_and_freeze_keep_device(device):
    torch.manual_seed(4)
    src = torch.nn.Conv2d(3, 4, 3, padding=1).to(device)
    layer = AdaBinConv2d.from_float(src)
    assert layer.weight.device == src.weight.device
    assert layer.act_alpha.device == src.weight.device
    x = torch.randn(1, 3, 5, 5, device=device)
    before = layer(x)
    layer.freeze()
    assert torch.equal(layer(x), before)
    assert layer.frozen_alpha_w.device == src.weight.device


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(5)
    cpu = AdaBinConv2d(4, 6, 3, padding=1)
    with torch.no_grad():
        cpu.act_beta.fill_(0.125)
    gpu = AdaBinConv2d.from_float(torch.nn.Conv2d(4, 6, 3, padding=1)).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(2, 4, 7, 7)
    # binarized input and weight are exact on both devices; the conv sums may differ slightly
    assert torch.equal(gpu.binarize_input(x.cuda()).cpu(), cpu.binarize_input(x))
    torch.testing.assert_close(gpu.binary_weight().detach().cpu(), cpu.binary_weight().detach())
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 would round Wb
        torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-4, atol=1e-4)
