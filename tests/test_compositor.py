import math

import pytest
import torch

from pipeline.models.sprites.compositor import (
    composite,
    fixed_occlusion,
    harden_occlusion,
    instance_labels,
    nearest_layer_labels,
    layer_weights,
    occlusion_from_logits,
    visibility,
)


def _rand(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype)


def _order_occlusion(orders):
    """Hard occlusion from one ranking per image: larger rank[b][l] = layer l more in front."""
    ranks = torch.as_tensor(orders, dtype=torch.float32)  # (B, L)
    return (ranks[:, :, None] > ranks[:, None, :]).float().permute(1, 2, 0)  # (L, L, B)


def _over(layers, alphas, background):
    """Sequential back-to-front "over" compositing, the textbook definition."""
    out = background
    for c, a in zip(layers, alphas):
        out = a * c + (1 - a) * out
    return out


class TestFixedOcclusion:
    def test_cardinality(self):
        assert fixed_occlusion(4, 3).shape == (4, 4, 3)

    def test_values(self):
        occ = fixed_occlusion(3, 2)
        for j in range(3):
            for l in range(3):
                assert torch.all(occ[j, l] == float(j > l))

    def test_dtype(self):
        assert fixed_occlusion(2, 1, dtype=torch.float64).dtype == torch.float64

    def test_exception(self):
        with pytest.raises(ValueError):
            fixed_occlusion(0, 1)


class TestOcclusionFromLogits:
    def test_cardinality(self):
        assert occlusion_from_logits(torch.zeros(5, 6), 4).shape == (4, 4, 5)
        assert occlusion_from_logits(torch.zeros(2, 0), 1).shape == (1, 1, 2)

    def test_exception(self):
        with pytest.raises(ValueError):
            occlusion_from_logits(torch.zeros(2, 4), 3)

    def test_antisymmetric_zero_diagonal(self):
        occ = occlusion_from_logits(
            torch.randn(3, 10, generator=torch.Generator().manual_seed(1)), 5
        )
        off = 1 - torch.eye(5)[:, :, None]
        assert torch.allclose((occ + occ.transpose(0, 1)) * off, off)
        assert torch.all(torch.diagonal(occ, dim1=0, dim2=1) == 0)

    def test_zero_logits_half(self):
        occ = occlusion_from_logits(torch.zeros(2, 3), 3)
        off = 1 - torch.eye(3)[:, :, None]
        assert torch.allclose(occ, 0.5 * off.expand(3, 3, 2))

    def test_fill_order(self):
        # pairs (1, 0), (2, 0), (2, 1): only the second logit is large
        occ = occlusion_from_logits(torch.tensor([[-20.0, 20.0, -20.0]]), 3)[..., 0]
        assert occ[2, 0] > 0.99 and occ[1, 0] < 0.01 and occ[2, 1] < 0.01

    def test_large_logits_give_fixed_order(self):
        occ = occlusion_from_logits(torch.full((2, 6), 30.0), 4)
        assert torch.allclose(occ, fixed_occlusion(4, 2))

    def test_hard(self):
        logits = torch.tensor([[0.3, -0.2, 0.0]])
        occ = occlusion_from_logits(logits, 3, hard=True)[..., 0]
        # logit 0 ties go to the fixed order (later layer in front)
        assert occ.tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
        assert torch.equal(harden_occlusion(occlusion_from_logits(logits, 3)), occ[..., None])


class TestComposite:
    def test_smoke_and_cardinality(self):
        out = composite(_rand(3, 2, 4, 5, 6), _rand(3, 2, 1, 5, 6), None, _rand(2, 4, 5, 6))
        assert out.shape == (2, 4, 5, 6)

    def test_exception(self):
        with pytest.raises(ValueError):
            composite(_rand(3, 2, 4, 5, 6), _rand(3, 2, 4, 5, 6))  # alpha with C channels
        with pytest.raises(ValueError):
            composite(_rand(3, 2, 4, 5, 6), _rand(3, 2, 1, 5, 6), torch.zeros(3, 3, 1))
        with pytest.raises(ValueError):
            composite(_rand(3, 2, 4, 5, 6), _rand(3, 2, 1, 5, 6), None, _rand(2, 3, 5, 6))

    def test_hand_computed(self):
        # one channel, 1×2 pixels; bg 0.2, layer 0 colour 0.8, layer 1 colour 0.4
        layers = torch.tensor([0.8, 0.4]).view(2, 1, 1, 1, 1).expand(2, 1, 1, 1, 2)
        alphas = torch.tensor([[0.5, 1.0], [0.25, 0.0]]).view(2, 1, 1, 1, 2)
        bg = torch.full((1, 1, 1, 2), 0.2)
        # fixed order, layer 1 in front:
        #   0.25·0.4 + 0.75·0.5·0.8 + 0.75·0.5·0.2 = 0.1 + 0.3 + 0.075 = 0.475
        #   second pixel: α0 = 1, α1 = 0 → 0.8
        out = composite(layers, alphas, None, bg)
        assert torch.allclose(out.flatten(), torch.tensor([0.475, 0.8]))
        # layer 0 in front: 0.5·0.8 + 0.5·0.25·0.4 + 0.5·0.75·0.2 = 0.4 + 0.05 + 0.075 = 0.525
        out = composite(layers, alphas, occlusion_from_logits(torch.tensor([[-50.0]]), 2), bg)
        assert torch.allclose(out.flatten(), torch.tensor([0.525, 0.8]))
        # soft: occ[1, 0] = σ(ln 3) = 0.75, occ[0, 1] = 0.25
        #   layer 0: 0.5·(1 − 0.75·0.25)·0.8 = 0.40625·0.8 = 0.325
        #   layer 1: 0.25·(1 − 0.25·0.5)·0.4 = 0.21875·0.4 = 0.0875
        #   background: (1 − 0.5)(1 − 0.25)·0.2 = 0.075            → 0.4875
        occ = occlusion_from_logits(torch.tensor([[math.log(3.0)]]), 2)
        out = composite(layers, alphas, occ, bg)
        assert torch.allclose(out.flatten(), torch.tensor([0.4875, 0.8]))
        w = layer_weights(alphas, occ).flatten(1)
        assert torch.allclose(w[:, 0], torch.tensor([0.375, 0.40625, 0.21875]))

    @pytest.mark.parametrize("L", [1, 2, 4])
    def test_fixed_order_is_over(self, L):
        layers, alphas, bg = (
            _rand(L, 3, 3, 4, 5, seed=1),
            _rand(L, 3, 1, 4, 5, seed=2),
            _rand(3, 3, 4, 5, seed=3),
        )
        expected = _over(layers, alphas, bg)
        assert torch.allclose(composite(layers, alphas, None, bg), expected, atol=1e-6)
        assert torch.allclose(
            composite(layers, alphas, fixed_occlusion(L, 3), bg), expected, atol=1e-6
        )

    def test_permuted_hard_order_is_over_in_that_order(self):
        L, B = 3, 2
        layers, alphas, bg = (
            _rand(L, B, 3, 4, 4, seed=4),
            _rand(L, B, 1, 4, 4, seed=5),
            _rand(B, 3, 4, 4, seed=6),
        )
        ranks = [[2, 0, 1], [1, 2, 0]]  # image 0: back-to-front 1, 2, 0; image 1: 2, 0, 1
        out = composite(layers, alphas, _order_occlusion(ranks), bg)
        for b, r in enumerate(ranks):
            back_to_front = sorted(range(L), key=lambda l: r[l])
            expected = _over(layers[back_to_front, b], alphas[back_to_front, b], bg[b])
            assert torch.allclose(out[b], expected, atol=1e-6)

    def test_swapping_occlusion_swaps_front_layer(self):
        layers = torch.stack([torch.full((1, 3, 2, 2), 0.1), torch.full((1, 3, 2, 2), 0.9)])
        alphas = torch.ones(2, 1, 1, 2, 2)
        occ = occlusion_from_logits(torch.tensor([[5.0]]), 2, hard=True)  # layer 1 in front
        assert torch.allclose(composite(layers, alphas, occ), layers[1])
        assert torch.allclose(composite(layers, alphas, occ.transpose(0, 1)), layers[0])

    def test_zero_alpha_gives_background(self):
        layers, bg = _rand(3, 2, 3, 4, 4, seed=7), _rand(2, 3, 4, 4, seed=8)
        alphas = torch.zeros(3, 2, 1, 4, 4)
        occ = occlusion_from_logits(torch.randn(2, 3), 3)
        assert torch.equal(composite(layers, alphas, None, bg), bg)
        assert torch.equal(composite(layers, alphas, occ, bg), bg)
        assert torch.equal(composite(layers, alphas), torch.zeros_like(bg))

    def test_opaque_front_layer_wins(self):
        layers, bg = _rand(3, 2, 3, 4, 4, seed=9), _rand(2, 3, 4, 4, seed=10)
        alphas = _rand(3, 2, 1, 4, 4, seed=11)
        alphas[2] = 1
        assert torch.allclose(composite(layers, alphas, None, bg), layers[2])

    def test_gradients_reach_alphas_and_logits(self):
        L, B = 3, 2
        layers = _rand(L, B, 2, 2, 2, seed=12, dtype=torch.float64).requires_grad_()
        alphas = (0.1 + 0.8 * _rand(L, B, 1, 2, 2, seed=13, dtype=torch.float64)).requires_grad_()
        logits = torch.randn(B, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(14))
        logits.requires_grad_()
        bg = _rand(B, 2, 2, 2, seed=15, dtype=torch.float64).requires_grad_()

        def f(c, a, z, g):
            return composite(c, a, occlusion_from_logits(z, L), g)

        assert torch.autograd.gradcheck(f, (layers, alphas, logits, bg))
        f(layers, alphas, logits, bg).sum().backward()
        assert alphas.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0


class TestLayerWeights:
    def test_cardinality(self):
        assert layer_weights(_rand(3, 2, 1, 4, 5)).shape == (4, 2, 1, 4, 5)
        assert visibility(_rand(3, 2, 1, 4, 5)).shape == (3, 2, 1, 4, 5)

    @pytest.mark.parametrize("L", [2, 3, 7, 10])
    def test_pairwise_visibility_is_the_product_of_its_factors(self, L):
        # Eq. 2's T_l = Π_j (1 − occ[j, l] α_j) for a soft predicted order, with its gradient
        # (written out by hand in the compositor: checked against autograd through `prod`)
        alphas = _rand(L, 2, 1, 3, 4, seed=L, dtype=torch.float64)
        alphas[0, 1, 0, 2, 3] = 1.0  # an opaque pixel: the gradient must not divide by 1 − α
        alphas.requires_grad_(True)
        logits = _rand(2, L * (L - 1) // 2, seed=L + 1, dtype=torch.float64) * 6 - 3
        logits[1] = 40 * torch.where(logits[1] > 0, 1.0, -1.0)  # a hard order: occ exactly 0 or 1
        logits[1, 0] = -40.0  # pair (1, 0): layer 0 in front of layer 1
        logits.requires_grad_(True)
        occ = occlusion_from_logits(logits, L)
        assert torch.any(occ[0, :, 1] == 1)  # so one factor 1 − occ α_0 is exactly 0
        reference = (1 - occ[:, :, :, None, None, None] * alphas[:, None]).prod(dim=0)
        got = visibility(alphas, occ)
        assert torch.allclose(got, reference, atol=1e-14)
        w = torch.arange(1.0, L + 1, dtype=torch.float64)[:, None, None, None, None]
        g_ref = torch.autograd.grad((w * reference).sum(), (alphas, logits))
        g_got = torch.autograd.grad((w * visibility(alphas, occlusion_from_logits(logits, L))).sum(), (alphas, logits))
        assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(g_got, g_ref))

    @pytest.mark.parametrize("L", [1, 2, 3, 10])
    def test_fixed_order_running_product_matches_pairwise_form(self, L):
        # None takes the running product; the explicit matrix the pairwise product (Eq. 2)
        alphas = _rand(L, 3, 1, 4, 5, seed=L, dtype=torch.float64)
        alphas[0, 0, 0, 0, 0] = 1.0  # an opaque pixel: no division anywhere
        alphas.requires_grad_(True)
        weights = torch.arange(1.0, L + 1, dtype=torch.float64)[:, None, None, None, None]
        fast = visibility(alphas)
        pairwise = visibility(alphas, fixed_occlusion(L, 3, dtype=torch.float64))
        assert torch.allclose(fast, pairwise, atol=1e-12)
        if L > 1:
            (g_fast,) = torch.autograd.grad((weights * fast).sum(), alphas)
            (g_pair,) = torch.autograd.grad((weights * pairwise).sum(), alphas)
            assert torch.allclose(g_fast, g_pair, atol=1e-12)

    def test_composite_uses_weights(self):
        layers, alphas, bg = (
            _rand(3, 2, 3, 4, 4, seed=16),
            _rand(3, 2, 1, 4, 4, seed=17),
            _rand(2, 3, 4, 4, seed=18),
        )
        occ = occlusion_from_logits(
            torch.randn(2, 3, generator=torch.Generator().manual_seed(19)), 3
        )
        w = layer_weights(alphas, occ)
        expected = w[0] * bg + (w[1:] * layers).sum(0)
        assert torch.allclose(composite(layers, alphas, occ, bg), expected, atol=1e-6)

    def test_sum_to_one_fixed_order_any_alpha(self):
        w = layer_weights(_rand(4, 3, 1, 5, 5, seed=20))
        assert torch.allclose(w.sum(0), torch.ones(3, 1, 5, 5), atol=1e-6)

    def test_sum_to_one_binary_alphas(self):
        alphas = (_rand(3, 2, 1, 6, 6, seed=21) > 0.5).float()
        for occ in (None, _order_occlusion([[2, 0, 1], [0, 1, 2]])):
            w = layer_weights(alphas, occ)
            assert torch.equal(w.sum(0), torch.ones(2, 1, 6, 6))
            assert set(w.unique().tolist()) <= {0.0, 1.0}


class TestInstanceLabels:
    def test_labels(self):
        # 1×3 pixels: nothing / layer 0 only / both layers
        alphas = torch.tensor([[0.1, 0.9, 0.8], [0.2, 0.3, 0.7]]).view(2, 1, 1, 1, 3)
        assert instance_labels(alphas).tolist() == [[[0, 1, 2]]]
        occ = occlusion_from_logits(torch.tensor([[-1.0]]), 2)  # soft, layer 0 in front
        assert instance_labels(alphas, occ).tolist() == [[[0, 1, 1]]]

    def test_background_pixels_go_to_the_layer_of_closest_colour(self):
        # 1×4 pixels, image red, green, blue, red; layer 0 red everywhere, layer 1 green
        x = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]]).view(1, 3, 1, 4)
        layers = torch.stack([torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, 1, 4),
                              torch.tensor([0.0, 1, 0]).view(3, 1, 1).expand(3, 1, 4)])[:, None]  # (2, 1, 3, 1, 4)
        labels = torch.tensor([[[0, 0, 0, 2]]])
        both = torch.tensor([[True, True]])
        assert nearest_layer_labels(labels, layers, x, both).tolist() == [[[1, 2, 1, 2]]]  # blue: a tie, first layer
        only_second = torch.tensor([[False, True]])
        assert nearest_layer_labels(labels, layers, x, only_second).tolist() == [[[2, 2, 2, 2]]]
        assert nearest_layer_labels(labels, layers, x, torch.tensor([[False, False]])).tolist() == [[[0, 0, 0, 2]]]
