"""train.losses.nt_xent against a slow loop-based reference and closed-form cases."""

from __future__ import annotations

import math

import pytest
import torch

from train.losses import nt_xent


def nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """Per anchor i of the 2B: -log(exp(s_ip / T) / sum_{k != i} exp(s_ik / T)), then the mean."""
    z = torch.cat([z1, z2]).double()
    z = [row / row.norm() for row in z]
    n = len(z)
    b = n // 2
    total = 0.0
    for i in range(n):
        pos = (i + b) % n
        denom = 0.0
        for k in range(n):
            if k != i:
                denom += math.exp(float(z[i] @ z[k]) / temperature)
        total += -math.log(math.exp(float(z[i] @ z[pos]) / temperature) / denom)
    return total / n


@pytest.mark.parametrize(("b", "d", "temperature", "seed"),
                         [(2, 3, 0.2, 0), (5, 8, 0.5, 1), (8, 16, 0.1, 2), (3, 2, 1.0, 3)])
def test_matches_loop_reference(b, d, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    got = nt_xent(z1, z2, temperature)
    assert got.ndim == 0
    assert got.item() == pytest.approx(nt_xent_reference(z1, z2, temperature), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_single_pair_has_no_negatives_so_loss_is_zero(seed):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(1, 4, generator=g), torch.randn(1, 4, generator=g)
    assert nt_xent(z1, z2).item() == pytest.approx(0.0, abs=1e-6)
    assert nt_xent(z1, z1.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_closed_form_identical_views_of_orthogonal_images():
    t = 0.2
    e = torch.eye(2)
    # Each anchor: positive at similarity 1, two negatives at similarity 0.
    expected = math.log(1 + 2 * math.exp(-1 / t))
    assert nt_xent(e, e.clone(), t).item() == pytest.approx(expected, rel=1e-5)


def test_closed_form_all_orthogonal_is_log_three():
    e = torch.eye(4)
    # B = 2, all four embeddings orthogonal: softmax over three equal logits.
    assert nt_xent(e[:2], e[2:], 0.3).item() == pytest.approx(math.log(3), rel=1e-6)


def test_closed_form_opposite_images():
    t = 0.5
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    # Positive at similarity 1, two negatives at -1.
    expected = math.log(1 + 2 * math.exp(-2 / t))
    assert nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-5)


def test_invariant_to_embedding_scale():
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    base = nt_xent(z1, z2)
    scale = torch.rand(6, 1, generator=g) * 10 + 0.1
    assert nt_xent(z1 * scale, z2 * 3.0).item() == pytest.approx(base.item(), rel=1e-5)


def test_symmetric_in_views_and_invariant_to_batch_order():
    g = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g)
    base = nt_xent(z1, z2).item()
    assert nt_xent(z2, z1).item() == pytest.approx(base, rel=1e-5)
    perm = torch.randperm(7, generator=g)
    assert nt_xent(z1[perm], z2[perm]).item() == pytest.approx(base, rel=1e-5)


def test_lower_when_positives_agree():
    g = torch.Generator().manual_seed(6)
    z1 = torch.randn(8, 16, generator=g)
    close = nt_xent(z1, z1 + 0.01 * torch.randn(8, 16, generator=g))
    far = nt_xent(z1, torch.randn(8, 16, generator=g))
    assert close < far


def test_gradient_is_finite_and_nonzero():
    g = torch.Generator().manual_seed(7)
    z1 = torch.randn(4, 8, generator=g, requires_grad=True)
    z2 = torch.randn(4, 8, generator=g, requires_grad=True)
    nt_xent(z1, z2).backward()
    for grad in (z1.grad, z2.grad):
        assert grad is not None
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


def test_half_precision_inputs_are_computed_in_float32():
    g = torch.Generator().manual_seed(8)
    z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    got = nt_xent(z1.half(), z2.half())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(nt_xent(z1, z2).item(), rel=1e-2)


@pytest.mark.parametrize(("s1", "s2"), [((4, 8), (4, 7)), ((4, 8), (3, 8)), ((8,), (8,)),
                                        ((2, 4, 8), (2, 4, 8))])
def test_shape_errors_raise_value_error(s1, s2):
    with pytest.raises(ValueError, match="expected two"):
        nt_xent(torch.randn(*s1), torch.randn(*s2))
