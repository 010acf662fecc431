"""Differentiable transformations of sprites (DTI-Sprites §4.2), as pure functions.

Every transformation is parameterised so that ``beta = 0`` is *exactly* the identity: the heads
that predict ``beta`` are zero-initialised, so prototypes are learned before anything moves them.
(The reference's ``position``, ``tps`` and ``morpho`` are not identities at zero; here they are.)

Two kinds of transformation:

* **point maps** ``f(points, beta) -> points`` (position, similarity, affine, projective, tps):
  written backwards, from output-frame points to where to sample in the input frame, which is what
  ``grid_sample`` needs. Consecutive point maps compose on points, and the image is resampled once.
* **image ops** ``g(x, beta) -> x`` (colour, morphological): act on pixel values.

Convention:
    images ``(N, C, H, W)`` float; ``points`` ``(N, Q, 2)`` in (x, y) order, normalised to
    [-1, 1] with ``align_corners=False``: pixel centres at ``(2i + 1) / W - 1``, listed row-major
    (x fastest) by :func:`pixel_grid`; ``beta`` ``(N, P)``. The image transformed by a point map is
    ``warp(x, f(pixel_grid(H, W), beta), (H, W))``. A sequence ``[T1, T2]`` means "apply T1 to the
    image, then T2"; as point maps, output points go through T2's map first, then T1's:
    ``x(f1(f2(p)))``.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "ALIASES", "TRANSFORMS", "TransformKind", "affine", "apply_sequence", "canonical_name",
    "color", "morphological", "pixel_grid", "position", "projective", "similarity", "soft_clamp",
    "tps", "tps_on_grid", "turn_eighths", "warp",
]  # fmt: skip

_PROJ_EPS = 1e-6  # |w| floor of the homogeneous divide
_MORPH_LOGIT = 5.0  # reference identity logits: +5 at the centre, -5 elsewhere


def _check(fn: str, name: str, t: torch.Tensor, ok: bool, expected: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not ok:
        raise ValueError(f"{fn}: expected {name} of shape {expected}, got {tuple(t.shape)}")


def _check_map(fn: str, points: torch.Tensor, beta: torch.Tensor, n_params: int) -> None:
    _check(fn, "points", points, points.ndim == 3 and points.shape[-1] == 2, "(N, Q, 2)")
    N = points.shape[0]
    _check(fn, "beta", beta, tuple(beta.shape) == (N, n_params), f"({N}, {n_params})")


def soft_clamp(x: torch.Tensor, alpha: float = 0.01) -> torch.Tensor:
    """Leaky clamp to [0, 1]: slope ``alpha`` outside, so gradients never vanish (§2.1).

    ``clamp(x, 0, 1) + alpha * min(x, 0) + alpha * max(x - 1, 0)``; the identity on [0, 1].
    """
    # x − clamp(x) = min(x, 0) + max(x − 1, 0), so one clamp and one lerp (fewer passes over x)
    return torch.lerp(x.clamp(0, 1), x, alpha)


def pixel_grid(
    h: int, w: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Normalised pixel centres of an ``h x w`` image, ``(h*w, 2)``, row-major, x fastest.

    Convention:
        ``(x, y) = ((2j + 1) / w - 1, (2i + 1) / h - 1)`` for row ``i``, column ``j``, so
        ``warp(x, pixel_grid(h, w)[None], (h, w))`` returns ``x`` (``align_corners=False``).

    Example:
        >>> pixel_grid(1, 2)
        tensor([[-0.5000,  0.0000],
                [ 0.5000,  0.0000]])
    """
    if h < 1 or w < 1:
        raise ValueError(f"pixel_grid: expected h, w >= 1, got ({h}, {w})")
    # float64 then cast: the centres land on pixel positions to within float32 rounding
    ys = (torch.arange(h, device=device, dtype=torch.float64) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=device, dtype=torch.float64) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1).reshape(h * w, 2).to(dtype or torch.get_default_dtype())


def warp(
    x: torch.Tensor, points: torch.Tensor, out_hw: tuple[int, int], padding_mode: str = "zeros"
) -> torch.Tensor:
    """Sample ``x`` at ``points`` (bilinear, ``align_corners=False``).

    Convention:
        ``x`` (N, C, h, w); ``points`` (N, H*W, 2) in the input frame, one per output pixel,
        ordered like :func:`pixel_grid` ``(H, W)``. Returns (N, C, H, W).
    """
    H, W = out_hw
    _check("warp", "x", x, x.ndim == 4, "(N, C, h, w)")
    N = x.shape[0]
    ok = tuple(points.shape) == (N, H * W, 2)
    _check("warp", "points", points, ok, f"({N}, {H * W}, 2)")
    grid = points.reshape(N, H, W, 2).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def _affine_points(points: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    # points (N, Q, 2), d (N, 2, 3) = theta - [I | 0]; "points + ..." keeps d = 0 exact
    return points + points @ d[:, :, :2].transpose(1, 2) + d[:, None, :, 2]


def _compose_deltas(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The map p -> outer(inner(p)) of two affine maps given as d = theta - [I | 0], (N, 2, 3):
    D = D1 + D2 + D1 D2, t = t1 + t2 + D1 t2 (zeros stay exactly zero)."""
    D1, t1, D2, t2 = outer[:, :, :2], outer[:, :, 2:], inner[:, :, :2], inner[:, :, 2:]
    return torch.cat([D1 + D2 + D1 @ D2, t1 + t2 + D1 @ t2], 2)


def _position_delta(beta: torch.Tensor, init_scale: float = 1.0) -> torch.Tensor:
    # input = (p - t) / s: theta = [I / s | -t / s]
    inv = 1 / (init_scale * beta[:, 0].exp())                       # (N,)
    zero = torch.zeros_like(inv)
    lin = inv - 1
    return torch.stack([torch.stack([lin, zero, -beta[:, 1] * inv], 1),
                        torch.stack([zero, lin, -beta[:, 2] * inv], 1)], 1)


def _similarity_delta(beta: torch.Tensor) -> torch.Tensor:
    a, b, tx, ty = beta.unbind(1)
    return torch.stack([torch.stack([a, -b, tx], 1), torch.stack([b, a, ty], 1)], 1)


def _affine_delta(beta: torch.Tensor) -> torch.Tensor:
    return beta.reshape(-1, 2, 3)


def position(points: torch.Tensor, beta: torch.Tensor, init_scale: float = 1.0) -> torch.Tensor:
    """Scale then translate: the input is drawn at scale ``init_scale * e^s``, centred at t.

    ``input = (points - t) / (init_scale * e^s)``, ``beta = (s, tx, ty)``, P = 3. With
    ``init_scale = 1`` this is the identity at zero. The model passes e.g.
    ``init_scale = 0.5`` (or sprite size / image size) so that sprites start small and centred,
    like the reference (whose θ = [[e^s + 1, 0, tx], [0, e^s + 1, ty]] draws at scale 1/2 at zero).

    Convention: ``points`` (N, Q, 2) output frame, ``beta`` (N, 3); returns (N, Q, 2) input frame.
    """
    _check_map("position", points, beta, 3)
    scale = init_scale * beta[:, 0].exp()  # (N,)
    return (points - beta[:, None, 1:3]) / scale[:, None, None]


def similarity(points: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Rotation-scale then translation: θ = [[1 + a, -b, tx], [b, 1 + a, ty]], P = 4.

    Convention: ``points`` (N, Q, 2) output frame, ``beta`` (N, 4) = (a, b, tx, ty); returns
    (N, Q, 2) input frame.
    """
    _check_map("similarity", points, beta, 4)
    return _affine_points(points, _similarity_delta(beta))


def affine(points: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """θ = [I | 0] + beta viewed as 2 x 3 (row-major), P = 6; ``input = θ [p; 1]``.

    Convention: ``points`` (N, Q, 2) output frame, ``beta`` (N, 6); returns (N, Q, 2) input frame.
    """
    _check_map("affine", points, beta, 6)
    return _affine_points(points, _affine_delta(beta))


def projective(points: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Homography H = I₃ + beta viewed as 3 x 3 (row-major), P = 9, then the homogeneous divide.

    The denominator is floored at ``1e-6`` in absolute value, keeping its sign (0 counts as +).
    H maps output to input, like kornia's ``homography_warp`` with normalised coordinates.

    Convention: ``points`` (N, Q, 2) output frame, ``beta`` (N, 9); returns (N, Q, 2) input frame.
    """
    _check_map("projective", points, beta, 9)
    Hd = beta.reshape(-1, 3, 3)
    uv = _affine_points(points, Hd[:, :2])  # (N, Q, 2)
    w = 1 + points @ Hd[:, 2:, :2].transpose(1, 2) + Hd[:, None, 2:, 2]  # (N, Q, 1)
    floor = torch.where(w >= 0, _PROJ_EPS, -_PROJ_EPS).to(w.dtype)
    w = torch.where(w.abs() < _PROJ_EPS, floor, w)
    return uv / w


# -- thin-plate spline ---------------------------------------------------------------------------
# Control points c_m (M = g*g) sit at the pixel centres of a g x g image, pixel_grid(g, g): inside
# the frame, symmetric, same order as beta. The map is p + u(p), where u is the TPS interpolant of
# the displacements beta as (M, 2) at c, with kernel U(d²) = d² log d² (= 2 r² log r; the factor
# is absorbed by the weights). u is linear in beta, so u(p) = [U(|p - c|²), 1, p] @ S @ delta with
# S = (rows of the inverse TPS system for the M data columns) fixed per g: beta = 0 is exact.


def _tps_kernel(d2: torch.Tensor) -> torch.Tensor:
    # U(0) = 0; the clamp only avoids log(0), whose factor d2 is then 0
    return d2 * d2.clamp_min(torch.finfo(d2.dtype).tiny).log()


def _tps_features(points: torch.Tensor, ctrl: torch.Tensor) -> torch.Tensor:
    # points (..., Q, 2), ctrl (M, 2) -> (..., Q, M + 3); |p|² + |c|² - 2 p·c avoids a (Q, M, 2)
    # temporary (N·Q·M·2 floats is hundreds of MB for a batch of 64 x 64 sprites)
    d2 = (points**2).sum(-1, keepdim=True) + (ctrl**2).sum(-1) - 2 * points @ ctrl.T
    ones = torch.ones_like(points[..., :1])
    return torch.cat([_tps_kernel(d2.clamp_min(0)), ones, points], -1)


@functools.lru_cache(maxsize=16)
def _tps_solver(g: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(ctrl (M, 2), S (M + 3, M)): solves [K P; Pᵀ 0][w; a] = [delta; 0] for any delta."""
    with torch.inference_mode(False), torch.no_grad():  # cached tensors must be usable in autograd
        c = pixel_grid(g, g, dtype=torch.float64)  # (M, 2)
        M = g * g
        L = torch.zeros(M + 3, M + 3, dtype=torch.float64)
        L[:M] = _tps_features(c, c)  # [K | 1 | c]
        L[M:, :M] = L[:M, M:].T  # Pᵀ
        S = torch.linalg.inv(L)[:, :M]  # (M + 3, M); the zero right-hand rows drop out
        return c.to(device, dtype), S.to(device, dtype)


@functools.lru_cache(maxsize=32)
def _tps_grid_basis(g: int, H: int, W: int, dtype: torch.dtype, device: torch.device):
    """(grid (H*W, 2), B (H*W, M)): displacement of the pixel grid = B @ delta."""
    with torch.inference_mode(False), torch.no_grad():
        ctrl, S = _tps_solver(g, torch.float64, torch.device("cpu"))
        grid = pixel_grid(H, W, dtype=torch.float64)
        B = _tps_features(grid, ctrl) @ S  # (H*W, M)
        return grid.to(device, dtype), B.to(device, dtype)


def _check_grid_size(fn: str, grid_size: int) -> None:
    if grid_size < 2:
        raise ValueError(f"{fn}: grid_size must be >= 2 (the TPS needs 3 non-collinear points)")


def tps(points: torch.Tensor, beta: torch.Tensor, grid_size: int = 4) -> torch.Tensor:
    """Thin-plate spline: ``p + u(p)``, u interpolating the control-point displacements beta.

    Convention:
        ``points`` (N, Q, 2) output frame, any positions; ``beta`` (N, 2 g²) viewed as (g², 2)
        displacements (dx, dy) of control points ``pixel_grid(g, g)`` (centres of a g x g grid, at
        ``±(1 - 1/g), ...``). Returns (N, Q, 2) input frame. An affine displacement of the control
        points gives exactly that affine map everywhere. For the pixel grid use :func:`tps_on_grid`.
    """
    _check_grid_size("tps", grid_size)
    M = grid_size**2
    _check_map("tps", points, beta, 2 * M)
    ctrl, S = _tps_solver(grid_size, points.dtype, points.device)
    coef = S @ beta.reshape(-1, M, 2)  # (N, M + 3, 2): kernel weights, then affine part
    return points + _tps_features(points, ctrl) @ coef


def tps_on_grid(beta: torch.Tensor, out_hw: tuple[int, int], grid_size: int = 4) -> torch.Tensor:
    """:func:`tps` applied to ``pixel_grid(*out_hw)``, with the kernel features cached per size.

    Convention: ``beta`` (N, 2 g²); returns (N, H*W, 2). One (H*W, g²) @ (N, g², 2) matmul.
    """
    _check_grid_size("tps_on_grid", grid_size)
    M = grid_size**2
    _check("tps_on_grid", "beta", beta, beta.ndim == 2 and beta.shape[1] == 2 * M, f"(N, {2 * M})")
    grid, B = _tps_grid_basis(grid_size, *out_hw, beta.dtype, beta.device)
    N = beta.shape[0]
    # one (H*W, M) @ (M, N*2) GEMM instead of N tiny batched products (~10× faster on a CPU)
    disp = B @ beta.reshape(N, M, 2).permute(1, 0, 2).reshape(M, N * 2)       # (H*W, N*2)
    return grid + disp.view(-1, N, 2).transpose(0, 1)


# -- image ops -----------------------------------------------------------------------------------


def color(x: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Per-channel affine colour change, then soft clamp: ``soft_clamp((1 + a_c) x_c + b_c)``.

    Convention:
        ``x`` (N, C, H, W), colour channels only (C = 1 grey, 3 RGB, any C); ``beta`` (N, 2C)
        viewed as (C, 2) = (a_c, b_c). The identity at zero on values in [0, 1].
    """
    _check("color", "x", x, x.ndim == 4, "(N, C, H, W)")
    N, C = x.shape[:2]
    _check("color", "beta", beta, tuple(beta.shape) == (N, 2 * C), f"({N}, {2 * C})")
    ab = beta.reshape(N, C, 2, 1, 1)
    return soft_clamp(torch.addcmul(ab[:, :, 1], x, 1 + ab[:, :, 0]))


def _soft_morph(x: torch.Tensor, alpha: torch.Tensor, logits: torch.Tensor, k: int):
    # Σ_i x_i w_i e^{α x_i} / Σ_i w_i e^{α x_i} over each k x k window, as a softmax for stability
    N, C, H, W = x.shape
    p = k // 2
    patches = F.unfold(F.pad(x, (p, p, p, p), mode="replicate"), k).view(N, C, k * k, H * W)
    logw = F.logsigmoid(logits)[:, None, :, None] + alpha[:, None, None, None] * patches
    return (patches * logw.softmax(2)).sum(2).view(N, C, H, W)


def morphological(x: torch.Tensor, beta: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """Soft dilation (α > 0) / erosion (α < 0) over a k x k window, exact identity at zero.

    ``out = x + M(x; α, base + l) - M(x; 0, base)`` with ``beta = (α, l_1 .. l_k²)``, P = k² + 1,
    M the reference soft morphology (weights sigmoid(logits), ``base`` +5 at the centre and -5
    elsewhere). The reference returns M itself, a 5 % blur at zero; subtracting ``M(x; 0, base)``
    makes zero exact while keeping M's gradient w.r.t. beta. The output is not clamped: near
    edges it may leave [0, 1] by a few % of the local contrast. Borders are replicate-padded,
    so a constant image stays constant (zero padding would darken the border).

    Convention: ``x`` (N, C, H, W), all channels filtered alike; ``beta`` (N, k² + 1); k odd.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"morphological: kernel_size must be odd and >= 1, got {kernel_size}")
    _check("morphological", "x", x, x.ndim == 4, "(N, C, H, W)")
    N, kk = x.shape[0], kernel_size**2
    _check("morphological", "beta", beta, tuple(beta.shape) == (N, kk + 1), f"({N}, {kk + 1})")
    base = torch.full((kk,), -_MORPH_LOGIT, dtype=beta.dtype, device=beta.device)
    base[kk // 2] = _MORPH_LOGIT
    # the two calls are the same ops on equal values at beta = 0, so their difference is exactly 0
    m0 = _soft_morph(x, torch.zeros_like(beta[:, 0]), base.expand(N, kk), kernel_size)
    return x + (_soft_morph(x, beta[:, 0], base + beta[:, 1:], kernel_size) - m0)


# -- registry and sequences ----------------------------------------------------------------------


@dataclass(frozen=True)
class TransformKind:
    """One transformation family: ``n_params(channels, options)``; ``fn(t, beta, **options)``;
    for affine point maps ``delta(beta, **options)`` (N, 2, 3) = θ − [I | 0], so that runs of them
    compose into one matrix before touching the points."""

    name: str
    kind: Literal["point", "image"]
    n_params: Callable[[int, dict], int]
    fn: Callable[..., torch.Tensor]
    options: tuple[str, ...] = ()  # keys of ``options`` forwarded to fn as keywords
    delta: Callable[..., torch.Tensor] | None = None


def _identity(t: torch.Tensor, beta: torch.Tensor | None = None) -> torch.Tensor:
    return t


def _tps_params(channels: int, options: dict) -> int:
    return 2 * options.get("grid_size", 4) ** 2


def _morph_params(channels: int, options: dict) -> int:
    return options.get("kernel_size", 3) ** 2 + 1


TRANSFORMS: dict[str, TransformKind] = {
    t.name: t
    for t in [
        TransformKind("identity", "point", lambda c, o: 0, _identity),
        TransformKind("color", "image", lambda c, o: 2 * c, color),
        TransformKind("position", "point", lambda c, o: 3, position, ("init_scale",), _position_delta),
        TransformKind("similarity", "point", lambda c, o: 4, similarity, (), _similarity_delta),
        TransformKind("affine", "point", lambda c, o: 6, affine, (), _affine_delta),
        TransformKind("projective", "point", lambda c, o: 9, projective),
        TransformKind("tps", "point", _tps_params, tps, ("grid_size",)),
        TransformKind("morphological", "image", _morph_params, morphological, ("kernel_size",)),
    ]
}
ALIASES: dict[str, str] = {
    "id": "identity", "col": "color", "pos": "position", "sim": "similarity", "aff": "affine",
    "proj": "projective", "homography": "projective", "thinplatespline": "tps",
    "morpho": "morphological",
}  # fmt: skip


def canonical_name(name: str) -> str:
    """Canonical transformation name for ``name`` or an alias (case-insensitive)."""
    key = str(name).strip().lower()
    if key in TRANSFORMS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    close = difflib.get_close_matches(key, [*TRANSFORMS, *ALIASES], n=1)
    hint = f" Did you mean {ALIASES.get(close[0], close[0])!r}?" if close else ""
    raise ValueError(
        f"unknown transformation {name!r}.{hint} Valid names: {', '.join(TRANSFORMS)}"
        f" (aliases: {', '.join(f'{a}={c}' for a, c in ALIASES.items())})"
    )


def apply_sequence(
    x: torch.Tensor,
    names: Sequence[str],
    betas: Sequence[torch.Tensor | None],
    out_hw: tuple[int, int],
    channels: int,
    padding_mode: str = "zeros",
    options: dict | None = None,
) -> torch.Tensor:
    """Apply transformations ``names[0]``, then ``names[1]``, ... to ``x``, resampling sparingly.

    Consecutive point maps are composed on points and the image sampled once; an image op first
    flushes pending point maps (one resampling to ``out_hw``), then acts at the current size. The
    result is always resampled to ``out_hw`` (an identity grid when there is no point map).

    Convention:
        ``x`` (N, C', h, w): channels ``[0, channels)`` are colour, the rest (mask, noise canvas)
        only move spatially; ``color`` acts on the colour channels, ``morphological`` on all.
        ``betas[i]`` (N, P_i), ``None`` allowed when P_i = 0 (identity). For [T1, T2] the output
        pixel p samples ``x`` at ``f1(f2(p))`` (image-wise: T1 first). ``options``: ``grid_size``
        (tps), ``kernel_size`` (morphological), ``init_scale`` (position). Returns (N, C', H, W).
    """
    fn = "apply_sequence"
    _check(fn, "x", x, x.ndim == 4, "(N, C', h, w)")
    N, Cx = x.shape[:2]
    if not 1 <= channels <= Cx:
        raise ValueError(f"{fn}: channels must be in [1, {Cx}] for x of shape {tuple(x.shape)}")
    if len(names) != len(betas):
        raise ValueError(f"{fn}: {len(names)} names but {len(betas)} betas")
    options = dict(options or {})
    H, W = out_hw
    pending: list[tuple[TransformKind, torch.Tensor, dict]] = []  # point maps, sequence order

    def flush(x: torch.Tensor, final: bool) -> torch.Tensor:
        if not pending and not (final and tuple(x.shape[-2:]) != (H, W)):
            return x
        pts = None  # None = the output pixel grid, materialised lazily (tps has a cached basis)
        delta = None  # a run of affine maps not yet applied to pts, composed: one pass over the points

        def moved(pts):
            if pts is None:
                pts = pixel_grid(H, W, x.device, x.dtype).expand(N, H * W, 2)
            if delta is None:
                return pts
            # input = theta [p; 1] in one pass: t + p (I + D)^T (exactly p at D = 0, t = 0)
            eye = torch.eye(2, dtype=delta.dtype, device=delta.device)
            return torch.baddbmm(delta[:, None, :, 2], pts, (eye + delta[:, :, :2]).transpose(1, 2))

        for kind, beta, opts in reversed(pending):  # last transformation sees output points first
            if kind.delta is not None:
                d = kind.delta(beta, **opts)
                delta = d if delta is None else _compose_deltas(d, delta)
                continue
            if pts is None and delta is None and kind.name == "tps":
                pts = tps_on_grid(beta, (H, W), **opts)
                continue
            pts, delta = kind.fn(moved(pts), beta, **opts), None
        pts = moved(pts)
        pending.clear()
        return warp(x, pts, (H, W), padding_mode)

    for name, beta in zip(names, betas):
        kind = TRANSFORMS[canonical_name(name)]
        P = kind.n_params(channels, options)
        if beta is None and P == 0:
            continue
        _check(fn, f"beta for {kind.name!r}", beta, tuple(beta.shape) == (N, P), f"({N}, {P})")
        if P == 0:
            continue
        opts = {k: options[k] for k in kind.options if k in options}
        if kind.kind == "point":
            pending.append((kind, beta, opts))
            continue
        x = flush(x, final=False)
        if kind.name == "color":
            x = torch.cat([color(x[:, :channels], beta), x[:, channels:]], 1)
        else:
            x = kind.fn(x, beta, **opts)
    return flush(x, final=True)


def turn_eighths(src: torch.Tensor, eighths: int) -> torch.Tensor:
    """(N, C, s, s) turned counter-clockwise by eighths · 45°: quarter-turns by exact rot90, an odd
    eighth by one bilinear resampling about the centre (corners leaving the square are dropped)."""
    out = torch.rot90(src, (eighths % 8) // 2, dims=(-2, -1))
    if eighths % 2 == 0:
        return out
    c = math.sqrt(0.5)
    theta = src.new_tensor([[c, -c, 0.0], [c, c, 0.0]]).expand(src.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(src.shape), align_corners=False)
    return F.grid_sample(out, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
