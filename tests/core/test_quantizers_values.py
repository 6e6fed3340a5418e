"""Forward values of the binarizers against hand-computed formulas (ADABIN.md sections 1-3)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from autobin.quantizers import (
    ACT_FORMS,
    MIN_ALPHA,
    activation_center,
    adabin_activation,
    adabin_weight,
    adabin_weight_set,
    ede_schedule,
    effective_alpha,
    sgn,
    sign_activation,
    sign_bireal,
    sign_clipped_ste,
    sign_ede,
    sign_ste,
    sign_weight,
    xnor_weight,
    xnor_weight_set,
)

SIGNS = [sign_ste, sign_clipped_ste, sign_bireal, lambda u: sign_ede(u, 0.1, 10.0)]


def _hand_adabin_weight(w: torch.Tensor, eps: float = 1e-5):
    """Per-channel statistics written out literally from ADABIN.md section 2 (float64)."""
    w64 = w.double().reshape(w.shape[0], -1)
    n = w64.shape[1]
    beta = w64.sum(dim=1, keepdim=True) / n
    alpha = torch.sqrt(((w64 - beta) ** 2).sum(dim=1, keepdim=True) / n).clamp_min(eps)
    s = torch.where(w64 - beta >= 0, 1.0, -1.0).double()
    wb = alpha * s + beta
    return alpha.reshape(-1), beta.reshape(-1), wb.reshape(w.shape)


# ----------------------------------------------------------------------------- sgn
def test_sgn_zero_is_plus_one_and_keeps_dtype():
    for dt in (torch.float32, torch.float64, torch.bfloat16):
        x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, -1e-30, 3.0], dtype=dt)
        out = sgn(x)
        assert out.dtype == dt
        assert torch.equal(out, torch.tensor([-1.0, 1.0, 1.0, 1.0, -1.0, 1.0], dtype=dt))


@pytest.mark.parametrize("fn", SIGNS, ids=["ste", "clipped", "bireal", "ede"])
def test_every_sign_function_forwards_sgn(fn):
    u = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    assert torch.equal(fn(u), sgn(u))
    assert torch.equal(fn(u).unique(), torch.tensor([-1.0, 1.0]))


# ----------------------------------------------------------------------------- weights
def test_adabin_weight_set_matches_formula_on_small_tensor():
    # Two channels, n = 4 entries each; statistics by hand:
    # ch0 = [1, 2, 3, 6]: mean 3, squared deviations 4+1+0+9 = 14 -> var 3.5
    # ch1 = [-1, -1, 1, 1]: mean 0, var 1
    w = torch.tensor([[1.0, 2.0, 3.0, 6.0], [-1.0, -1.0, 1.0, 1.0]])
    eps = 1e-5
    alpha, beta = adabin_weight_set(w, eps)
    assert alpha.shape == beta.shape == (2, 1)
    assert torch.equal(beta.reshape(-1), torch.tensor([3.0, 0.0]))
    # sqrt(var) (eps is only a floor): float32 rounding of the reduction may differ in one ulp.
    expected_alpha = torch.tensor([math.sqrt(3.5), 1.0])
    torch.testing.assert_close(alpha.reshape(-1), expected_alpha, rtol=1e-6, atol=0)
    wb = adabin_weight(w, eps=eps)
    # Wb = alpha*sgn(W - beta) + beta; entry 3.0 equals beta exactly and maps to +alpha.
    a0, a1 = alpha.reshape(-1).tolist()
    expected = torch.tensor(
        [[3.0 - a0, 3.0 - a0, 3.0 + a0, 3.0 + a0], [-a1, -a1, a1, a1]], dtype=torch.float32
    )
    torch.testing.assert_close(wb, expected, rtol=1e-6, atol=0)


def test_alpha_w_is_the_population_std_exactly_on_trained_layer_scales():
    # ADABIN.md section 2: eps is a floor, never an added term. On weights with the variance of
    # trained layers (1e-3 to 6e-3) alpha_w must equal the population std; the former
    # sqrt(var + 1e-5) was off by up to 0.5 %, far outside this float64 tolerance.
    torch.manual_seed(3)
    for var in (1e-3, 6e-3):
        w = torch.randn(16, 64, 3, 3, dtype=torch.float64) * math.sqrt(var)
        alpha, _ = adabin_weight_set(w, 1e-5)
        std = w.reshape(16, -1).std(dim=1, correction=0)
        torch.testing.assert_close(alpha.reshape(-1), std, rtol=1e-14, atol=0)
        added = torch.sqrt(std.square() + 1e-5)
        assert ((added - std) / std).min() > 5e-4  # what the added term would have cost


def test_alpha_w_floor_only_for_degenerate_channels():
    w = torch.tensor([[0.5, 0.5, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0 + 1e-7], [0.0, 1.0, 0.0, 1.0]])
    alpha, _ = adabin_weight_set(w.double(), 1e-5)
    assert alpha.reshape(-1).tolist()[:2] == [1e-5, 1e-5]  # constant / near-constant rows
    assert alpha.reshape(-1).tolist()[2] == 0.5
    wb = adabin_weight(w.double(), eps=1e-5)
    # the all-equal channel binarizes to {beta + eps} everywhere (sgn(0) = +1)
    assert torch.equal(wb[0], torch.full((4,), 0.5 + 1e-5, dtype=torch.float64))


def test_adabin_weight_exact_against_same_arithmetic():
    # Exact: the reference uses the same statistics tensors, so sign and affine map are identical.
    torch.manual_seed(0)
    w = torch.randn(8, 3, 3, 3)
    alpha, beta = adabin_weight_set(w, 1e-5)
    expected = alpha * sgn((w - beta) / alpha) + beta
    for est in ("ste", "ede"):
        assert torch.equal(adabin_weight(w, est), expected)


def test_adabin_weight_population_std_float64_reference():
    # Different reduction order than torch.var, so compare with a float64 hand computation.
    torch.manual_seed(1)
    w = torch.randn(6, 4, 3, 3) * 0.3 + 0.1
    alpha, beta = adabin_weight_set(w)
    ha, hb, hwb = _hand_adabin_weight(w)
    torch.testing.assert_close(alpha.reshape(-1).double(), ha, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(beta.reshape(-1).double(), hb, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(adabin_weight(w).double(), hwb, rtol=1e-5, atol=1e-6)
    # The population (divisor n), not the sample, standard deviation:
    sample = w.reshape(6, -1).std(dim=1, correction=1)
    assert not torch.allclose(alpha.reshape(-1), sample)


def test_adabin_weight_two_values_per_channel_including_ties_with_beta():
    # Each channel contains an entry exactly equal to its mean: it must binarize to +alpha.
    w = torch.tensor(
        [[[[0.0, 0.0, 0.0]]], [[[-1.0, 0.0, 1.0]]], [[[2.0, 4.0, 6.0]]], [[[5.0, 5.0, 5.0]]]]
    )
    alpha, beta = adabin_weight_set(w)
    wb = adabin_weight(w)
    for o in range(w.shape[0]):
        values = wb[o].unique()
        hi = (beta[o] + alpha[o]).reshape(())
        lo = (beta[o] - alpha[o]).reshape(())
        assert set(values.tolist()) <= {hi.item(), lo.item()}
    # middle entries equal beta -> +alpha side
    assert wb[1, 0, 0, 1] == (beta[1] + alpha[1]).reshape(())
    assert wb[2, 0, 0, 1] == (beta[2] + alpha[2]).reshape(())
    # constant channels: every entry equals beta -> all +alpha (alpha = the eps floor > 0)
    assert torch.equal(wb[0].unique(), (beta[0] + alpha[0]).reshape(1))
    assert torch.equal(wb[3].unique(), (beta[3] + alpha[3]).reshape(1))
    assert alpha[0].item() == pytest.approx(1e-5, rel=1e-6)


def test_adabin_weight_random_has_exactly_two_values_per_channel():
    torch.manual_seed(2)
    w = torch.randn(16, 8, 3, 3)
    wb = adabin_weight(w)
    for o in range(16):
        assert wb[o].unique().numel() == 2


def test_sign_weight_values():
    w = torch.tensor([[-0.5, 0.0, 0.25], [2.0, -3.0, -0.0]])
    assert torch.equal(sign_weight(w), torch.tensor([[-1.0, 1.0, 1.0], [1.0, -1.0, 1.0]]))


def test_xnor_weight_values():
    w = torch.tensor([[-1.0, 0.0, 2.0, 1.0], [0.5, -0.5, 0.25, -0.25]])
    alpha, beta = xnor_weight_set(w)
    assert torch.equal(alpha.reshape(-1), torch.tensor([1.0, 0.375]))
    assert torch.equal(beta, torch.zeros_like(alpha))
    expected = torch.tensor([[-1.0, 1.0, 1.0, 1.0], [0.375, -0.375, 0.375, -0.375]])
    assert torch.equal(xnor_weight(w), expected)


# ----------------------------------------------------------------------------- activations
def test_adabin_activation_paper_form_by_hand():
    alpha, beta = torch.tensor(0.5), torch.tensor(0.25)
    x = torch.tensor([-1.0, 0.0, 0.2, 0.25, 0.3, 2.0])
    # u = (x - 0.25)/0.5 -> sgn = [-, -, -, + (tie), +, +]; values beta -+ alpha = -0.25 / 0.75
    expected = torch.tensor([-0.25, -0.25, -0.25, 0.75, 0.75, 0.75])
    assert torch.equal(adabin_activation(x, alpha, beta, "paper"), expected)
    assert torch.equal(adabin_activation(x, alpha, beta), expected)  # paper is the default


def test_adabin_activation_code_form_by_hand():
    alpha, beta = torch.tensor(0.5), torch.tensor(0.25)
    x = torch.tensor([-1.0, 0.0, 0.2, 0.25, 0.3, 2.0])
    # alpha*(sgn(u) + beta): 0.5*(-1 + 0.25) = -0.375, 0.5*(1 + 0.25) = 0.625 (all exact)
    expected = torch.tensor([-0.375, -0.375, -0.375, 0.625, 0.625, 0.625])
    assert torch.equal(adabin_activation(x, alpha, beta, "code"), expected)


@pytest.mark.parametrize("form", ACT_FORMS)
def test_adabin_activation_matches_formula_random(form):
    torch.manual_seed(3)
    x = torch.randn(4, 3, 5, 5)
    alpha, beta = torch.tensor(0.7), torch.tensor(-0.3)
    u = (x - beta) / alpha
    s = sgn(u)
    if form == "paper":
        # alpha*s + beta with s = +-1 is the same IEEE arithmetic as the fused c +- a.
        expected = alpha * s + beta
    else:
        # The fused kernel computes alpha*beta +- alpha; alpha*(s + beta) rounds differently.
        expected = alpha * (s + beta)
    out = adabin_activation(x, alpha, beta, form)
    if form == "paper":
        assert torch.equal(out, expected)
    else:
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    assert out.unique().numel() == 2


def test_activation_forms_differ_exactly_as_specified():
    torch.manual_seed(4)
    x = torch.randn(1000)
    alpha, beta = torch.tensor(0.5), torch.tensor(0.75)  # powers of two: all arithmetic exact
    paper = adabin_activation(x, alpha, beta, "paper")
    code = adabin_activation(x, alpha, beta, "code")
    # Same sign pattern, different center: beta vs alpha*beta.
    assert torch.equal(paper - beta, code - alpha * beta)
    assert set(paper.unique().tolist()) == {0.25, 1.25}
    assert set(code.unique().tolist()) == {-0.125, 0.875}
    assert activation_center(alpha, beta, "paper") == beta
    assert activation_center(alpha, beta, "code") == alpha * beta


def test_activation_input_equal_to_beta_maps_to_plus_alpha():
    for form in ACT_FORMS:
        beta = torch.tensor(0.1)
        alpha = torch.tensor(2.0)
        x = torch.full((5,), 0.1)
        out = adabin_activation(x, alpha, beta, form)
        hi = activation_center(alpha, beta, form) + alpha
        assert torch.equal(out, hi.expand(5))


def test_activation_alpha_clamped_to_min_alpha():
    x = torch.tensor([-1.0, 1.0])
    out = adabin_activation(x, torch.tensor(-3.0), torch.tensor(0.0))
    assert torch.equal(out, torch.tensor([-MIN_ALPHA, MIN_ALPHA], dtype=torch.float32))
    assert effective_alpha(torch.tensor(-3.0)) == torch.tensor(MIN_ALPHA)


def test_sign_activation_values():
    x = torch.tensor([-2.0, -0.1, 0.0, 0.1, 2.0])
    assert torch.equal(sign_activation(x), torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0]))


# ----------------------------------------------------------------------------- ede schedule
def _schedule_ref(e, epochs, t_min, t_max):
    t = 10 ** (math.log10(t_min) + (math.log10(t_max) - math.log10(t_min)) * e / epochs)
    return t, (1 / t if t < 1 else 1.0)


@pytest.mark.parametrize("t_min,t_max", [(1e-3, 10.0), (1e-4, 5.0), (2e-3, 7.5), (0.3, 3.3)])
def test_ede_schedule_formula_and_exact_endpoints(t_min, t_max):
    epochs = 40
    assert ede_schedule(0, epochs, t_min, t_max) == (t_min, 1 / t_min if t_min < 1 else 1.0)
    assert ede_schedule(epochs, epochs, t_min, t_max) == (t_max, 1 / t_max if t_max < 1 else 1.0)
    for e in (1, 7, 13.5, 20, 39):
        t, k = ede_schedule(e, epochs, t_min, t_max)
        rt, rk = _schedule_ref(e, epochs, t_min, t_max)
        assert t == pytest.approx(rt, rel=1e-12)
        assert k == pytest.approx(rk, rel=1e-12)
        assert k == (1 / t if t < 1 else 1.0)


def test_ede_schedule_defaults_and_k_switch():
    assert ede_schedule(0, 4) == (1e-3, 1e3)
    assert ede_schedule(4, 4) == (10.0, 1.0)
    # 1e-3 -> 10 over 4 decades: t(3) = 1, where k switches to 1.
    t, k = ede_schedule(3, 4)
    assert t == pytest.approx(1.0, rel=1e-12) and k == pytest.approx(1.0, rel=1e-12)
    t, k = ede_schedule(2, 4)
    assert t == pytest.approx(0.1, rel=1e-12) and k == pytest.approx(10.0, rel=1e-12)
    # monotone in e
    ts = [ede_schedule(e, 100)[0] for e in range(101)]
    assert all(a < b for a, b in itertools.pairwise(ts))
