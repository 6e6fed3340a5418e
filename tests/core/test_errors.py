"""Bad input gives clear errors that name the bad value and the valid choices."""

from __future__ import annotations

import pytest
import torch

from autobin.errors import AutobinError
from autobin.nn import AdaBinConv2d, AdaBinLinear, BinaryConv2d, BinaryLinear, Maxout, method_spec
from autobin.quantizers import adabin_activation, adabin_weight, ede_schedule


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
@pytest.mark.parametrize(
    "make", [lambda **k: AdaBinConv2d(2, 2, 1, **k), lambda **k: AdaBinLinear(2, 2, **k)]
)
def test_non_positive_alpha_init(make, bad):
    with pytest.raises(ValueError) as err:
        make(act_alpha_init=bad)
    msg = str(err.value)
    assert "act_alpha_init" in msg and "> 0" in msg and str(bad) in msg


def test_unknown_weight_estimator():
    for make in (
        lambda: AdaBinConv2d(2, 2, 1, weight_estimator="sgd"),
        lambda: adabin_weight(torch.randn(2, 3), "sgd"),
    ):
        with pytest.raises(ValueError) as err:
            make()
        msg = str(err.value)
        assert "'sgd'" in msg and "'ste'" in msg and "'ede'" in msg


def test_unknown_act_form():
    for make in (
        lambda: AdaBinLinear(2, 2, act_form="paperish"),
        lambda: adabin_activation(torch.randn(3), torch.tensor(1.0), torch.tensor(0.0), "paperish"),
    ):
        with pytest.raises(ValueError) as err:
            make()
        msg = str(err.value)
        assert "'paperish'" in msg and "'paper'" in msg and "'code'" in msg


def test_unknown_method():
    with pytest.raises(ValueError) as err:
        method_spec("dorefa")
    msg = str(err.value)
    assert isinstance(err.value, AutobinError)
    assert "'dorefa'" in msg
    assert all(f"'{m}'" in msg for m in ("adabin", "sign", "xnor"))


def test_abstract_bases_refuse_construction():
    for make in (lambda: BinaryConv2d(2, 2, 1), lambda: BinaryLinear(2, 2)):
        with pytest.raises(TypeError, match=r"abstract base.*AdaBinConv2d"):
            make()


def test_method_class_takes_no_method_argument():
    with pytest.raises(TypeError, match="method"):
        AdaBinConv2d(2, 2, 1, method="sign")


def test_non_positive_eps():
    with pytest.raises(ValueError, match="eps must be > 0"):
        AdaBinConv2d(2, 2, 1, eps=0.0)


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4, 5)])
def test_maxout_wrong_rank(shape):
    with pytest.raises(ValueError) as err:
        Maxout(3)(torch.randn(shape))
    msg = str(err.value)
    assert f"{len(shape)}-D" in msg and "(N, C, H, W)" in msg and "(N, L, C)" in msg


def test_maxout_wrong_channel_count():
    with pytest.raises(ValueError) as err:
        Maxout(3)(torch.randn(2, 4, 5, 5))
    msg = str(err.value)
    assert "3 channels" in msg and "has 4" in msg and "channel_dim" in msg
    # a (N, C, L) tensor with auto dim reads C from the last dim -> error names the fix
    with pytest.raises(ValueError, match="channel_dim=1"):
        Maxout(3)(torch.randn(2, 3, 7))


def test_maxout_bad_constructor_args():
    with pytest.raises(ValueError, match="positive channel count"):
        Maxout(0)
    with pytest.raises(ValueError, match=r"channel_dim must be 1 \(NCHW\), -1"):
        Maxout(3, channel_dim=2)


def test_ede_schedule_bad_args():
    with pytest.raises(ValueError, match="epochs > 0"):
        ede_schedule(0, 0)
    with pytest.raises(ValueError, match="t_min <= t_max"):
        ede_schedule(0, 10, t_min=1.0, t_max=0.1)
    with pytest.raises(ValueError, match="outside"):
        ede_schedule(11, 10)
