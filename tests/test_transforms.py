import math

import pytest
import torch
from torch.autograd import gradcheck

from pipeline.models.sprites.transforms import (
    ALIASES,
    TRANSFORMS,
    affine,
    apply_sequence,
    canonical_name,
    color,
    morphological,
    pixel_grid,
    position,
    projective,
    similarity,
    soft_clamp,
    tps,
    tps_on_grid,
    turn_eighths,
    warp,
)


def _rand(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype)


def _randn(*shape, seed=0, scale=1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=dtype)


def _grid(N, h, w, dtype=torch.float32):
    return pixel_grid(h, w, dtype=dtype).expand(N, h * w, 2)


def _smooth(N, C, h, w):
    """Low-frequency test image: bilinear resampling of it is accurate to ~1e-3."""
    g = _grid(1, h, w)[0]
    x, y = g[:, 0], g[:, 1]
    chans = [0.5 + 0.4 * torch.sin(math.pi * (x + (c + 1) * 0.3 * y) + c) for c in range(C)]
    return torch.stack(chans).view(1, C, h, w).expand(N, C, h, w).contiguous()


def _affine_displacement(A, t, g):
    """beta for tps moving the control points of a g x g grid by p -> A p + t."""
    c = pixel_grid(g, g, dtype=A.dtype)
    return (c @ A.T + t - c).reshape(1, -1)


class TestSoftClamp:
    def test_smoke(self):
        x = _rand(2, 3, 4, 5)
        assert torch.equal(soft_clamp(x), x)

    def test_values(self):
        x = torch.tensor([-1.0, 0.0, 0.5, 1.0, 3.0])
        expected = torch.tensor([-0.01, 0.0, 0.5, 1.0, 1.02])
        assert torch.allclose(soft_clamp(x), expected)
        assert torch.allclose(soft_clamp(x, alpha=0.1)[[0, 4]], torch.tensor([-0.1, 1.2]))

    def test_gradient_leaks(self):
        x = torch.tensor([-2.0, 0.5, 2.0], requires_grad=True)
        soft_clamp(x).sum().backward()
        assert torch.allclose(x.grad, torch.tensor([0.01, 1.0, 0.01]))

    def test_gradcheck(self):
        x = torch.tensor([-0.7, 0.2, 0.6, 1.4], dtype=torch.float64, requires_grad=True)
        assert gradcheck(soft_clamp, (x,))


class TestPixelGrid:
    def test_smoke(self):
        expected = torch.tensor([[-0.5, -2 / 3], [0.5, -2 / 3], [-0.5, 0.0], [0.5, 0.0],
                                 [-0.5, 2 / 3], [0.5, 2 / 3]])  # fmt: skip
        assert torch.allclose(pixel_grid(3, 2), expected)

    @pytest.mark.parametrize("h, w", [(1, 1), (4, 7), (16, 16)])
    def test_cardinality(self, h, w):
        g = pixel_grid(h, w, dtype=torch.float64)
        assert g.shape == (h * w, 2) and g.dtype == torch.float64
        assert g.abs().max() < 1

    def test_exception(self):
        with pytest.raises(ValueError):
            pixel_grid(0, 3)

    def test_warp_identity(self):
        x = _rand(2, 3, 7, 9)
        assert (warp(x, _grid(2, 7, 9), (7, 9)) - x).abs().max() < 1e-5


class TestWarp:
    def test_smoke(self):
        x = _rand(1, 1, 5, 6)
        assert (warp(x, _grid(1, 5, 6), (5, 6)) - x).abs().max() < 1e-5

    @pytest.mark.parametrize("N, C, hw, out", [(1, 1, (5, 6), (5, 6)), (3, 4, (8, 8), (4, 12))])
    def test_cardinality(self, N, C, hw, out):
        y = warp(_rand(N, C, *hw), _grid(N, *out), out)
        assert y.shape == (N, C, *out)

    def test_exception(self):
        with pytest.raises(ValueError, match=r"\(2, 30, 2\)"):
            warp(_rand(2, 1, 5, 6), _grid(2, 5, 5), (5, 6))
        with pytest.raises(ValueError):
            warp(_rand(1, 5, 6), _grid(1, 5, 6), (5, 6))

    def test_gradcheck(self):
        x = _rand(2, 2, 5, 6, dtype=torch.float64).requires_grad_()
        jitter = _randn(2, 30, 2, seed=1, scale=0.05, dtype=torch.float64)
        pts = (_grid(2, 5, 6, torch.float64) + jitter).requires_grad_()
        assert gradcheck(lambda x, p: warp(x, p, (5, 6), "border"), (x, pts))


class _PointMapContract:
    """Shared tests of a point map f(points (N, Q, 2), beta (N, P))."""

    fn = None
    P = 0
    scale = 0.1  # of the random beta

    def f(self, points, beta):
        return type(self).fn(points, beta)

    def beta(self, N, seed=1, dtype=torch.float32):
        return _randn(N, self.P, seed=seed, scale=self.scale, dtype=dtype)

    def test_smoke(self):
        pts = _randn(2, 11, 2)
        assert torch.equal(self.f(pts, torch.zeros(2, self.P)), pts)

    @pytest.mark.parametrize("N, Q", [(1, 1), (3, 20), (5, 64)])
    def test_cardinality(self, N, Q):
        assert self.f(_randn(N, Q, 2), self.beta(N)).shape == (N, Q, 2)

    def test_exception(self):
        with pytest.raises(ValueError, match=r"\(N, Q, 2\)"):
            self.f(_randn(2, 5, 3), self.beta(2))
        with pytest.raises(ValueError, match=rf"\(2, {self.P}\)"):
            self.f(_randn(2, 5, 2), self.beta(3))
        with pytest.raises(ValueError):
            self.f(_randn(2, 5, 2), torch.zeros(2, self.P + 1))

    def test_identity_image(self):
        x = _rand(3, 4, 6, 8)
        y = warp(x, self.f(_grid(3, 6, 8), torch.zeros(3, self.P)), (6, 8))
        assert (y - x).abs().max() < 1e-5

    def test_gradcheck(self):
        d = torch.float64
        pts = _randn(2, 7, 2, seed=3, scale=0.6, dtype=d).requires_grad_()
        for beta in (torch.zeros(2, self.P, dtype=d), self.beta(2, dtype=d)):
            assert gradcheck(self.f, (pts, beta.requires_grad_()))
        # through the image, w.r.t. x and beta (beta != 0 keeps samples off the bilinear kinks)
        x = _rand(2, 2, 5, 6, dtype=d).requires_grad_()
        grid = _grid(2, 5, 6, d)
        beta = self.beta(2, dtype=d).requires_grad_()
        assert gradcheck(lambda x, b: warp(x, self.f(grid, b), (5, 6)), (x, beta))
        # at beta = 0 the output is linear in x
        zero = torch.zeros(2, self.P, dtype=d)
        assert gradcheck(lambda x: warp(x, self.f(grid, zero), (5, 6)), (x,))


class TestPosition(_PointMapContract):
    fn = staticmethod(position)
    P = 3

    def test_translation_two_pixels(self):
        x = _rand(2, 3, 8, 10)
        beta = torch.tensor([[0.0, 4 / 10, 0.0], [0.0, 0.0, 4 / 8]])
        y = warp(x, position(_grid(2, 8, 10), beta), (8, 10))
        assert (y[0, :, :, 2:] - x[0, :, :, :-2]).abs().max() < 1e-5  # right by 2
        assert (y[1, :, 2:, :] - x[1, :, :-2, :]).abs().max() < 1e-5  # down by 2

    def test_init_scale_half(self):
        sprite = torch.ones(1, 1, 8, 8)
        pts = position(_grid(1, 8, 8), torch.zeros(1, 3), init_scale=0.5)
        y = warp(sprite, pts, (8, 8))
        expected = torch.zeros(1, 1, 8, 8)
        expected[..., 2:6, 2:6] = 1
        assert (y - expected).abs().max() < 1e-5

    def test_scale_and_centre(self):
        beta = torch.tensor([[math.log(2.0), 0.2, -0.3]])
        pts = torch.tensor([[[0.2, -0.3], [1.2, 0.7]]])  # sprite centre, and one unit further
        assert torch.allclose(
            position(pts, beta, init_scale=0.5), torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
        )


class TestSimilarity(_PointMapContract):
    fn = staticmethod(similarity)
    P = 4

    def test_equals_affine(self):
        a, b, tx, ty = self.beta(3).unbind(1)
        aff = torch.stack([a, -b, tx, b, a, ty], 1)
        pts = _randn(3, 9, 2)
        assert torch.allclose(similarity(pts, torch.stack([a, b, tx, ty], 1)), affine(pts, aff))

    def test_rotation(self):
        th = 0.3
        beta = torch.tensor([[math.cos(th) - 1, math.sin(th), 0.0, 0.0]])
        out = similarity(torch.tensor([[[1.0, 0.0]]]), beta)
        assert torch.allclose(out, torch.tensor([[[math.cos(th), math.sin(th)]]]))


class TestAffine(_PointMapContract):
    fn = staticmethod(affine)
    P = 6

    def test_matrix(self):
        beta = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
        theta = torch.eye(2, 3) + beta.view(2, 3)
        pts = _randn(1, 5, 2)
        expected = pts @ theta[:, :2].T + theta[:, 2]
        assert torch.allclose(affine(pts, beta), expected)

    def test_translation_two_pixels(self):
        x = _rand(1, 2, 6, 9)
        beta = torch.tensor([[0.0, 0.0, 4 / 9, 0.0, 0.0, 0.0]])  # sample 2 px right: shift left
        y = warp(x, affine(_grid(1, 6, 9), beta), (6, 9))
        assert (y[..., :-2] - x[..., 2:]).abs().max() < 1e-5


class TestProjective(_PointMapContract):
    fn = staticmethod(projective)
    P = 9
    scale = 0.05

    def test_affine_part_equals_affine(self):
        aff = _randn(4, 6, seed=5, scale=0.3)
        beta = torch.cat([aff, torch.zeros(4, 3)], 1)
        pts = _randn(4, 13, 2)
        assert torch.allclose(projective(pts, beta), affine(pts, aff), atol=1e-6)

    def test_homogeneous_divide(self):
        beta = torch.zeros(1, 9)
        beta[0, 8] = 1.0  # H = diag(1, 1, 2): halves every point
        pts = _randn(1, 6, 2)
        assert torch.allclose(projective(pts, beta), pts / 2)

    def test_denominator_guard(self):
        beta = torch.zeros(1, 9, requires_grad=True)
        with torch.no_grad():
            beta[0, 6] = -1.0  # w = 1 - x: zero at x = 1
        pts = torch.tensor([[[1.0, 0.5], [0.5, 0.5]]])
        out = projective(pts, beta)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(beta.grad).all()
        assert out[0, 0, 0] > 0  # w = +0 is floored at +eps, keeping the sign


class TestTps(_PointMapContract):
    fn = staticmethod(tps)
    P = 32

    @pytest.mark.parametrize("g", [2, 3, 5])
    def test_identity_grid_sizes(self, g):
        pts = _randn(2, 17, 2, scale=2.0)
        assert torch.equal(tps(pts, torch.zeros(2, 2 * g * g), grid_size=g), pts)

    @pytest.mark.parametrize("g", [3, 4])
    def test_affine_displacement(self, g):
        A = torch.tensor([[1.1, -0.2], [0.15, 0.9]], dtype=torch.float64)
        t = torch.tensor([0.1, -0.05], dtype=torch.float64)
        beta = _affine_displacement(A, t, g)
        pts = _randn(1, 50, 2, scale=1.5, dtype=torch.float64)  # inside and outside the frame
        assert torch.allclose(tps(pts, beta, grid_size=g), pts @ A.T + t, atol=1e-9)

    def test_interpolates_control_points(self):
        beta = self.beta(2)
        ctrl = pixel_grid(4, 4).expand(2, 16, 2)
        assert torch.allclose(tps(ctrl, beta), ctrl + beta.view(2, 16, 2), atol=1e-5)

    def test_grid_size_exception(self):
        with pytest.raises(ValueError, match="grid_size"):
            tps(_randn(1, 4, 2), torch.zeros(1, 2), grid_size=1)


class TestTpsOnGrid:
    def test_smoke(self):
        assert torch.equal(tps_on_grid(torch.zeros(2, 32), (5, 7)), _grid(2, 5, 7))

    @pytest.mark.parametrize("N, hw, g", [(1, (4, 4), 2), (3, (6, 9), 4)])
    def test_cardinality(self, N, hw, g):
        assert tps_on_grid(torch.zeros(N, 2 * g * g), hw, g).shape == (N, hw[0] * hw[1], 2)

    def test_exception(self):
        with pytest.raises(ValueError, match=r"\(N, 32\)"):
            tps_on_grid(torch.zeros(2, 18), (5, 5))

    def test_equals_tps(self):
        beta = _randn(3, 18, scale=0.1, dtype=torch.float64)
        expected = tps(_grid(3, 6, 7, torch.float64), beta, grid_size=3)
        assert torch.allclose(tps_on_grid(beta, (6, 7), grid_size=3), expected, atol=1e-12)

    def test_cache_built_in_inference_mode(self):
        with torch.inference_mode():
            tps_on_grid(torch.zeros(1, 50), (3, 11), grid_size=5)  # fills the cache
        beta = torch.zeros(1, 50, requires_grad=True)
        tps_on_grid(beta, (3, 11), grid_size=5).sum().backward()  # cached tensors usable
        assert beta.grad is not None

    def test_gradcheck(self):
        beta = _randn(2, 32, scale=0.1, dtype=torch.float64).requires_grad_()
        assert gradcheck(lambda b: tps_on_grid(b, (5, 6)), (beta,))


class TestColor:
    def test_smoke(self):
        x = _rand(2, 3, 5, 6)
        assert (color(x, torch.zeros(2, 6)) - x).abs().max() < 1e-5

    @pytest.mark.parametrize("N, C", [(1, 1), (4, 3), (2, 5)])
    def test_cardinality(self, N, C):
        assert color(_rand(N, C, 4, 4), torch.zeros(N, 2 * C)).shape == (N, C, 4, 4)

    def test_exception(self):
        with pytest.raises(ValueError, match=r"\(2, 2\)"):
            color(_rand(2, 1, 4, 4), torch.zeros(2, 6))  # grey image, RGB parameters
        with pytest.raises(ValueError):
            color(_rand(1, 4, 4), torch.zeros(1, 2))

    def test_grey(self):
        x = _rand(2, 1, 4, 4) * 0.5
        beta = torch.tensor([[0.5, 0.1], [-0.5, 0.0]])
        y = color(x, beta)
        assert torch.allclose(y[0], 1.5 * x[0] + 0.1) and torch.allclose(y[1], 0.5 * x[1])

    def test_rgb_per_channel(self):
        x = torch.full((1, 3, 2, 2), 0.5)
        beta = torch.tensor([[0.0, 0.2, 1.0, 0.0, -1.0, 0.3]])  # (a, b) for R, G, B
        y = color(x, beta)
        assert torch.allclose(y[0, :, 0, 0], torch.tensor([0.7, 1.0, 0.3]))

    def test_soft_clamped(self):
        y = color(torch.ones(1, 1, 2, 2), torch.tensor([[0.0, 1.0]]))
        assert torch.allclose(y, torch.full_like(y, 1.01))

    def test_gradcheck(self):
        x = (0.1 + 0.8 * _rand(2, 2, 5, 6, dtype=torch.float64)).requires_grad_()
        for beta in (
            torch.zeros(2, 4, dtype=torch.float64),
            _randn(2, 4, scale=0.05, dtype=torch.float64),
        ):
            assert gradcheck(color, (x, beta.requires_grad_()))


class TestMorphological:
    def test_smoke(self):
        x = _rand(2, 3, 6, 7)
        assert (morphological(x, torch.zeros(2, 10)) - x).abs().max() < 1e-5

    @pytest.mark.parametrize("N, C, k", [(1, 1, 1), (2, 3, 3), (3, 2, 5)])
    def test_cardinality(self, N, C, k):
        y = morphological(_rand(N, C, 6, 5), torch.zeros(N, k * k + 1), kernel_size=k)
        assert y.shape == (N, C, 6, 5)

    def test_exception(self):
        with pytest.raises(ValueError, match="odd"):
            morphological(_rand(1, 1, 4, 4), torch.zeros(1, 17), kernel_size=4)
        with pytest.raises(ValueError, match=r"\(1, 10\)"):
            morphological(_rand(1, 1, 4, 4), torch.zeros(1, 26))

    def _dot(self):
        x = torch.zeros(1, 1, 7, 7)
        x[0, 0, 3, 3] = 1
        return x

    def test_dilates(self):
        beta = torch.zeros(1, 10)
        beta[0, 0] = 20.0
        y = morphological(self._dot(), beta)
        assert y[0, 0, 2:5, 2:5].min() > 0.9
        y[0, 0, 2:5, 2:5] = 0
        assert y.abs().max() < 1e-6

    def test_erodes(self):
        beta = torch.zeros(1, 10)
        beta[0, 0] = -20.0
        y = morphological(self._dot(), beta)
        assert y[0, 0, 3, 3] < 0.1 and y.abs().max() < 0.1

    def test_constant_image_border(self):
        x = torch.full((2, 2, 5, 6), 0.7)
        y = morphological(x, _randn(2, 10, scale=2.0))
        assert torch.allclose(y, x, atol=1e-6)  # replicate padding: no dark border

    def test_gradient_at_zero(self):
        beta = torch.zeros(2, 10, requires_grad=True)
        (morphological(_rand(2, 3, 6, 6), beta) ** 2).sum().backward()
        assert beta.grad[:, 0].abs().min() > 0 and beta.grad[:, 1:].abs().max() > 0

    def test_gradcheck(self):
        x = _rand(2, 2, 5, 6, dtype=torch.float64).requires_grad_()
        for beta in (
            torch.zeros(2, 10, dtype=torch.float64),
            _randn(2, 10, scale=0.5, dtype=torch.float64),
        ):
            assert gradcheck(morphological, (x, beta.requires_grad_()), fast_mode=True)


class TestCanonicalName:
    @pytest.mark.parametrize("alias, name", list(ALIASES.items()))
    def test_aliases(self, alias, name):
        assert canonical_name(alias) == name and name in TRANSFORMS

    def test_canonical_and_case(self):
        for name in TRANSFORMS:
            assert canonical_name(name) == name
        assert canonical_name(" TPS ") == "tps"

    def test_exception(self):
        with pytest.raises(ValueError, match="projective") as err:
            canonical_name("projetive")
        assert "Did you mean 'projective'" in str(err.value) and "morphological" in str(err.value)
        with pytest.raises(ValueError):
            canonical_name("rotate")

    def test_registry(self):
        assert [TRANSFORMS[n].n_params(3, {}) for n in TRANSFORMS] == [0, 6, 3, 4, 6, 9, 32, 10]
        assert TRANSFORMS["color"].n_params(1, {}) == 2
        assert TRANSFORMS["tps"].n_params(1, {"grid_size": 3}) == 18
        assert TRANSFORMS["morphological"].n_params(1, {"kernel_size": 5}) == 26
        assert {t.kind for t in TRANSFORMS.values()} == {"point", "image"}


def _zeros_for(names, N, channels, options=None):
    return [
        torch.zeros(N, TRANSFORMS[canonical_name(n)].n_params(channels, options or {}))
        for n in names
    ]


class TestApplySequence:
    def test_smoke(self):
        names = [
            "identity",
            "color",
            "position",
            "similarity",
            "affine",
            "projective",
            "tps",
            "morphological",
        ]
        x = _rand(2, 4, 6, 7)  # RGB + mask
        y = apply_sequence(x, names, _zeros_for(names, 2, 3), (6, 7), channels=3)
        assert (y - x).abs().max() < 1e-5
        assert torch.equal(apply_sequence(x, ["id"], [None], (6, 7), 3), x)

    @pytest.mark.parametrize("names", [[], ["pos"], ["col", "aff"], ["tps", "morpho", "proj"]])
    def test_cardinality(self, names):
        x = _rand(3, 3, 5, 5)  # grey + mask + noise canvas
        y = apply_sequence(x, names, _zeros_for(names, 3, 1), (8, 6), channels=1)
        assert y.shape == (3, 3, 8, 6)

    def test_exception(self):
        x = _rand(2, 2, 5, 5)
        with pytest.raises(ValueError, match=r"\(2, 3\)"):
            apply_sequence(x, ["pos"], [torch.zeros(2, 4)], (5, 5), 1)
        with pytest.raises(ValueError, match="names"):
            apply_sequence(x, ["pos", "aff"], [torch.zeros(2, 3)], (5, 5), 1)
        with pytest.raises(ValueError, match="channels"):
            apply_sequence(x, [], [], (5, 5), 3)
        with pytest.raises(ValueError, match="position"):
            apply_sequence(x, ["positon"], [torch.zeros(2, 3)], (5, 5), 1)

    def test_resample_without_spatial_op(self):
        x = _rand(1, 2, 4, 4)
        y = apply_sequence(x, ["col"], [torch.zeros(1, 2)], (8, 8), 1, padding_mode="border")
        expected = torch.nn.functional.interpolate(x, (8, 8), mode="bilinear")
        assert torch.allclose(y, expected, atol=1e-6)

    def test_translations_compose(self):
        x = _rand(2, 2, 8, 10)
        t1 = torch.tensor([[0.0, 0.2, -0.25]]).expand(2, 3)
        t2 = torch.tensor([[0.0, 0.2, 0.5]]).expand(2, 3)
        y = apply_sequence(x, ["pos", "pos"], [t1, t2], (8, 10), 1)
        y2 = warp(x, position(_grid(2, 8, 10), t1 + t2), (8, 10))
        assert (y - y2).abs().max() < 1e-5
        assert (y[..., 1:, 2:] - x[..., :-1, :-2]).abs().max() < 1e-5  # 1+1 px right, -1+2 down

    def test_order_affine_then_translation(self):
        x = _smooth(2, 2, 32, 32)
        aff = torch.tensor([[0.1, -0.2, 0.05, 0.15, -0.1, -0.05]]).expand(2, 6)
        pos = torch.tensor([[0.0, 0.3, -0.2]]).expand(2, 3)
        y = apply_sequence(x, ["aff", "pos"], [aff, pos], (32, 32), 2, padding_mode="border")
        g = _grid(2, 32, 32)
        step1 = warp(x, affine(g, aff), (32, 32), "border")  # affine first ...
        step2 = warp(step1, position(g, pos), (32, 32), "border")  # ... then the translation
        rev = warp(
            warp(x, position(g, pos), (32, 32), "border"), affine(g, aff), (32, 32), "border"
        )
        inner = (..., slice(6, -6), slice(6, -6))
        assert (y - step2)[inner].abs().max() < 0.02
        assert (y - rev)[inner].abs().max() > 0.1  # the test can tell the order apart

    def test_affine_runs_compose_into_one_map(self):
        # consecutive position / similarity / affine maps are composed as matrices before they
        # touch the points: the same sampling points as applying each map in turn
        x = _smooth(2, 2, 12, 12)
        names = ["aff", "sim", "proj", "pos", "sim"]
        betas = [_randn(2, n, seed=i, scale=0.1) for i, n in enumerate([6, 4, 9, 3, 4])]
        opts = {"init_scale": 0.7}
        y = apply_sequence(x, names, betas, (12, 12), 1, options=opts)
        g = _grid(2, 12, 12)
        pts = affine(similarity(projective(position(similarity(g, betas[4]), betas[3], 0.7), betas[2]), betas[1]), betas[0])
        assert torch.allclose(y, warp(x, pts, (12, 12)), atol=1e-5)
        zeros = [torch.zeros_like(b) for b in betas]
        y0 = apply_sequence(x, names, zeros, (12, 12), 1)
        assert torch.equal(y0, warp(x, _grid(2, 12, 12), (12, 12)))   # zeros: exactly the identity

    def test_gradcheck_affine_run(self):
        d = torch.float64
        x = (0.1 + 0.8 * _rand(2, 2, 5, 6, dtype=d)).requires_grad_()
        betas = [_randn(2, n, seed=i, scale=0.05, dtype=d).requires_grad_() for i, n in enumerate([4, 6, 3])]

        def f(x, *betas):
            return apply_sequence(x, ["sim", "aff", "pos"], list(betas), (5, 6), 1, padding_mode="border",
                                  options={"init_scale": 0.8})

        assert gradcheck(f, (x, *betas), fast_mode=True)

    def test_image_op_flushes(self):
        x = _rand(2, 2, 6, 6)
        aff = _randn(2, 6, scale=0.1)
        col = _randn(2, 2, scale=0.3)
        y = apply_sequence(x, ["aff", "col"], [aff, col], (6, 6), 1)
        w = warp(x, affine(_grid(2, 6, 6), aff), (6, 6))
        expected = torch.cat([color(w[:, :1], col), w[:, 1:]], 1)
        assert torch.allclose(y, expected, atol=1e-6)

    def test_color_on_colour_channels_only(self):
        x = _rand(2, 3, 4, 4)  # grey + mask + canvas (the reference breaks on this layout)
        y = apply_sequence(x, ["col"], [torch.tensor([[0.0, 0.5]] * 2)], (4, 4), 1)
        assert torch.allclose(y[:, 0], soft_clamp(x[:, 0] + 0.5))
        assert torch.equal(y[:, 1:], x[:, 1:])

    def test_morphological_on_all_channels(self):
        x = _rand(2, 3, 5, 5)
        beta = _randn(2, 26, scale=0.5)
        y = apply_sequence(x, ["morpho"], [beta], (5, 5), 1, options={"kernel_size": 5})
        assert torch.allclose(y, morphological(x, beta, kernel_size=5))

    def test_tps_cached_and_general_paths(self):
        x = _smooth(2, 1, 9, 9)
        tb = _randn(2, 18, scale=0.1)
        aff = _randn(2, 6, scale=0.1)
        opts = {"grid_size": 3}
        y = apply_sequence(x, ["tps", "aff"], [tb, aff], (9, 9), 1, options=opts)  # general
        y2 = warp(x, tps(affine(_grid(2, 9, 9), aff), tb, 3), (9, 9))
        assert torch.allclose(y, y2, atol=1e-5)
        y = apply_sequence(x, ["aff", "tps"], [aff, tb], (9, 9), 1, options=opts)  # cached grid
        y2 = warp(x, affine(tps(_grid(2, 9, 9), tb, 3), aff), (9, 9))
        assert torch.allclose(y, y2, atol=1e-5)

    def test_init_scale_option(self):
        x = torch.ones(1, 2, 8, 8)
        y = apply_sequence(x, ["pos"], [torch.zeros(1, 3)], (8, 8), 1, options={"init_scale": 0.5})
        assert y[..., 2:6, 2:6].min() > 0.999 and y.sum() == pytest.approx(2 * 16)

    def test_gradcheck(self):
        d = torch.float64
        names = ["col", "aff", "tps", "morpho", "pos"]
        x = (0.1 + 0.8 * _rand(2, 2, 5, 6, dtype=d)).requires_grad_()
        betas = [
            _randn(2, n.shape[1], seed=i, scale=0.05, dtype=d).requires_grad_()
            for i, n in enumerate(_zeros_for(names, 2, 1))
        ]

        def f(x, *betas):
            return apply_sequence(x, names, list(betas), (5, 6), 1, padding_mode="border")

        assert gradcheck(f, (x, *betas), fast_mode=True)
        zeros = [z.to(d) for z in _zeros_for(names, 2, 1)]
        assert gradcheck(lambda x: f(x, *zeros), (x,), fast_mode=True)


class TestTurnEighths:
    def test_even_eighths_are_exact_quarter_turns(self):
        x = _rand(2, 3, 9, 9)
        for e in range(0, 16, 2):
            assert torch.equal(turn_eighths(x, e), torch.rot90(x, e // 2, dims=(-2, -1)))

    def test_two_eighths_make_a_quarter_turn(self):
        # counter-clockwise as rot90: twice 45° is 90° up to resampling a smooth image (inside the
        # inscribed disc, where the corners lost by the first turn do not matter)
        x = _smooth(1, 2, 32, 32)
        g = pixel_grid(32, 32).view(32, 32, 2)
        inside = (g.norm(dim=-1) < 0.6)
        twice = turn_eighths(turn_eighths(x, 1), 1)
        err = (twice - torch.rot90(x, 1, dims=(-2, -1))).abs()[..., inside]
        assert err.max() < 0.02
        other_way = (twice - torch.rot90(x, -1, dims=(-2, -1))).abs()[..., inside]
        assert other_way.mean() > 10 * err.mean()

    def test_gradient_reaches_the_sprite(self):
        x = _rand(1, 1, 8, 8, dtype=torch.float64).requires_grad_()
        assert gradcheck(lambda t: turn_eighths(t, 3), (x,))
