"""Which sprite fills each layer: exhaustive and greedy (coordinate-descent) selection.

DTI-Sprites renders, for every layer l and sprite k, the transformed sprite ``(c_lk, α_lk)``; the
selection picks one sprite per layer so that the composite best reconstructs the image:

    cost(k_0 … k_{L−1}) = mean_{C,H,W} (x − composite)²  +  Σ_l penalty[k_l]

``penalty`` is λ for real sprites and 0 for the empty sprite (all-zero alpha), a selection bias
only (it never enters the differentiable loss); ``+inf`` excludes a candidate (the empty sprite
while sprites are frozen). Selection runs without gradient; :func:`gather_choice` then picks the
chosen tensors *with* gradient for the training loss.

Shared Convention (all functions below):
    x (B, C, H, W) targets; layers (L, K, B, C, H, W) and alphas (L, K, B, 1, H, W) candidates;
    background (B, C, H, W) or None (black, opaque); occlusion (L, L, B) or None (fixed order,
    later layers in front; see :mod:`pipeline.compositor`); penalty (K,) or None (zeros);
    choice (B, L) long, ``choice[b, l]`` = sprite index in layer l; cost (B,).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from pipeline.compositor import composite, fixed_occlusion, visibility

__all__ = [
    "Selection",
    "exhaustive_select",
    "greedy_select",
    "select",
    "one_hot_choice",
    "gather_choice",
    "DEFAULT_MAX_COMBINATIONS",
    "DEFAULT_CHUNK_BYTES",
]

# auto mode searches exhaustively up to this many combinations K**L: every single-layer model
# (K ≤ 1024) and e.g. K ≤ 32 with two layers or K ≤ 10 with three; beyond it the greedy search
# (iterations · L · K cheap candidate evaluations) takes over. Lower it to trade exactness for speed.
DEFAULT_MAX_COMBINATIONS = 1024
# Exhaustive search renders chunks of combinations sized to stay under this many bytes of temporaries.
DEFAULT_CHUNK_BYTES = 256 * 2**20


class Selection(NamedTuple):
    """Result of a selection: ``choice`` (B, L) long, ``cost`` (B,), and ``second`` (B,), the
    cost of the runner-up assignment (see each function), or None when not requested."""

    choice: torch.Tensor
    cost: torch.Tensor
    second: torch.Tensor | None = None


def _check(
    x: torch.Tensor,
    layers: torch.Tensor,
    alphas: torch.Tensor,
    background: torch.Tensor | None,
    occlusion: torch.Tensor | None,
    penalty: torch.Tensor | Sequence[float] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate shapes; return the occlusion (fixed order if None) and the penalty as tensors."""
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
    B, C, H, W = x.shape
    if layers.dim() != 6 or layers.shape[2:] != (B, C, H, W):
        raise ValueError(f"layers must be (L, K, {B}, {C}, {H}, {W}), got {tuple(layers.shape)}")
    L, K = layers.shape[:2]
    if alphas.shape != (L, K, B, 1, H, W):
        raise ValueError(f"alphas must be {(L, K, B, 1, H, W)}, got {tuple(alphas.shape)}")
    if background is not None and background.shape != (B, C, H, W):
        raise ValueError(f"background must be {(B, C, H, W)}, got {tuple(background.shape)}")
    if occlusion is None:
        occlusion = fixed_occlusion(L, B, x.device, x.dtype)
    elif occlusion.shape != (L, L, B):
        raise ValueError(f"occlusion must be {(L, L, B)}, got {tuple(occlusion.shape)}")
    if penalty is None:
        penalty = x.new_zeros(K)
    penalty = torch.as_tensor(penalty, dtype=x.dtype, device=x.device)
    if penalty.shape != (K,):
        raise ValueError(f"penalty must be ({K},), got {tuple(penalty.shape)}")
    if torch.isnan(penalty).any() or (penalty == float("-inf")).any():
        raise ValueError("penalty must not contain NaN or -inf (+inf excludes a candidate)")
    return occlusion, penalty


def _mse(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-image mean over (C, H, W) of the squared error; recon (..., B, C, H, W) → (..., B)."""
    return (recon - x).square_().mean(dim=(-3, -2, -1))


# ----------------------------------------------------------------------------- exhaustive


def _combinations(start: int, stop: int, K: int, L: int, device: torch.device) -> torch.Tensor:
    """Combinations start..stop−1 as digits base K, layer 0 most significant: (n, L) long."""
    idx = torch.arange(start, stop, device=device)
    powers = K ** torch.arange(L - 1, -1, -1, device=device)  # (L,)
    return (idx[:, None] // powers) % K  # (n, L), the order of itertools.product


@torch.no_grad()
def exhaustive_select(
    x: torch.Tensor,
    layers: torch.Tensor,
    alphas: torch.Tensor,
    background: torch.Tensor | None = None,
    occlusion: torch.Tensor | None = None,
    penalty: torch.Tensor | Sequence[float] | None = None,
    chunk: int | None = None,
    return_second: bool = False,
) -> Selection:
    """Evaluate all K**L assignments and keep the cheapest per image.

    Combinations are rendered ``chunk`` at a time (default: as many as fit in
    ``DEFAULT_CHUNK_BYTES`` of temporaries), so memory never grows with K**L. Ties go to the first
    combination in ``itertools.product`` order (layer 0 most significant).

    Args:
        chunk: combinations per chunk, or None for the memory-based default.
        return_second: also return the cost of the second-cheapest assignment (inf if K**L = 1);
            for L = 1 this is the second-best sprite, for a "margin" confidence score.

    Returns:
        :class:`Selection` ``(choice (B, L), cost (B,), second (B,) or None)``.
    """
    occlusion, penalty = _check(x, layers, alphas, background, occlusion, penalty)
    L, K, B, C, H, W = layers.shape
    N = K**L
    if chunk is None:
        # per combination: gathered layers and alphas, L² occlusion factors, weighted layers,
        # composite and error (see compositor.composite)
        per_combo = B * H * W * (2 * L * C + L * L + 2 * L + 3 * C) * x.element_size()
        chunk = max(1, DEFAULT_CHUNK_BYTES // per_combo)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")

    inf = torch.full((B,), float("inf"), dtype=x.dtype, device=x.device)
    best, second = inf.clone(), inf.clone()
    best_idx = torch.zeros(B, dtype=torch.long, device=x.device)
    l_idx = torch.arange(L, device=x.device)[:, None]  # (L, 1)
    for start in range(0, N, chunk):
        combos = _combinations(start, min(start + chunk, N), K, L, x.device)  # (n, L)
        n = combos.shape[0]
        lay = layers[l_idx, combos.t()]  # (L, n, B, C, H, W)
        alp = alphas[l_idx, combos.t()]  # (L, n, B, 1, H, W)
        occ = occlusion[:, :, None].expand(L, L, n, B).reshape(L, L, n * B)
        bg = None if background is None else background.expand(n, B, C, H, W).reshape(n * B, C, H, W)
        recon = composite(lay.reshape(L, n * B, C, H, W), alp.reshape(L, n * B, 1, H, W), occ, bg)
        cost = _mse(x, recon.view(n, B, C, H, W)) + penalty[combos].sum(dim=1)[:, None]  # (n, B)

        c1, i1 = cost.min(dim=0)  # (B,), first minimum on ties
        if return_second:
            c2 = cost.scatter(0, i1[None], float("inf")).min(dim=0).values if n > 1 else inf
            # second smallest of the union {best ≤ second} ∪ {c1 ≤ c2}
            second = torch.minimum(torch.minimum(second, c2), torch.maximum(best, c1))
        better = c1 < best  # strict: earlier chunks win ties
        best_idx = torch.where(better, i1 + start, best_idx)
        best = torch.where(better, c1, best)

    choice = _combinations(0, N, K, L, x.device)[best_idx] if N <= 2**20 else _digits(best_idx, K, L)
    return Selection(choice, best, second if return_second else None)


def _digits(idx: torch.Tensor, K: int, L: int) -> torch.Tensor:
    """Combination indices (B,) → (B, L) digits base K, layer 0 most significant."""
    powers = K ** torch.arange(L - 1, -1, -1, device=idx.device)
    return (idx[:, None] // powers) % K


# ----------------------------------------------------------------------------- greedy


def _slot_terms(
    cur_layers: torch.Tensor,
    cur_alphas: torch.Tensor,
    occlusion: torch.Tensor,
    background: torch.Tensor | None,
    l: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the composite into what does and does not depend on slot l.

    Eq. 2 is affine in the content ``(α, c)`` of one slot when the others are fixed:

        x̂(α, c) = S − α · U + α · c · T

    with S the composite with slot l empty, U what slot l covers where it is opaque (the
    background and every layer m it occludes, weighted by ``occ[l, m]``), and T the visibility
    of slot l. So K candidates cost one (K, B, C, H, W) multiply-add instead of K composites.

    Returns:
        S (B, C, H, W), U (B, C, H, W), T (B, 1, H, W).
    """
    a = cur_alphas.clone()  # (L, B, 1, H, W)
    a[l] = 0
    vis = visibility(a, occlusion)  # (L, B, 1, H, W); vis[l] does not depend on a[l]
    R = a * vis * cur_layers  # (L, B, C, H, W): each layer's contribution, R[l] = 0
    occ_l = occlusion[l][:, :, None, None, None]  # (L, B, 1, 1, 1): occ[l, m], slot l over m
    S = R.sum(dim=0)
    U = (occ_l * R).sum(dim=0)
    if background is not None:
        R_bg = (1 - a).prod(dim=0) * background  # (B, C, H, W); every layer occludes it
        S = S + R_bg
        U = U + R_bg
    return S, U, vis[l]


def _slot_costs(
    x: torch.Tensor,
    cand_layers: torch.Tensor,
    cand_alphas: torch.Tensor,
    terms: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """MSE of the K candidates of one slot: (K, B, C, H, W), (K, B, 1, H, W) → (K, B)."""
    S, U, T = terms
    recon = cand_layers * T  # (K, B, C, H, W)
    recon.sub_(U).mul_(cand_alphas).add_(S)  # S + α (c T − U)
    return _mse(x, recon)


@torch.no_grad()
def greedy_select(
    x: torch.Tensor,
    layers: torch.Tensor,
    alphas: torch.Tensor,
    background: torch.Tensor | None = None,
    occlusion: torch.Tensor | None = None,
    penalty: torch.Tensor | Sequence[float] | None = None,
    iterations: int = 1,
    return_second: bool = False,
) -> Selection:
    """Coordinate descent over the layers (the paper's greedy search).

    Start with every layer empty (α = 0) over the background; each sweep visits l = 0 … L−1
    (back to front) and sets slot l to the argmin over the K candidates of MSE + penalty with the
    other slots fixed. Vectorised over K and B (see ``_slot_terms``); the loops run over sweeps and
    layers only. Each update can only lower the cost, so more iterations never increase it; one
    sweep is exact when L = 1 or when the layers do not overlap.

    Args:
        iterations: number of sweeps (reference configs: 1 to 3).
        return_second: also return the cost of the best assignment that differs from the result
            in exactly one slot (one more evaluation pass). For L = 1 this is the second-best
            sprite. It can be below ``cost`` when the descent has not converged.

    Returns:
        :class:`Selection` ``(choice (B, L), cost (B,), second (B,) or None)``.
    """
    occlusion, penalty = _check(x, layers, alphas, background, occlusion, penalty)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    L, K, B, C, H, W = layers.shape
    b_idx = torch.arange(B, device=x.device)
    cur_layers = layers.new_zeros(L, B, C, H, W)
    cur_alphas = alphas.new_zeros(L, B, 1, H, W)
    choice = torch.zeros(B, L, dtype=torch.long, device=x.device)
    mse = x.new_zeros(B)
    for _ in range(iterations):
        for l in range(L):
            terms = _slot_terms(cur_layers, cur_alphas, occlusion, background, l)
            err = _slot_costs(x, layers[l], alphas[l], terms)  # (K, B)
            k = (err + penalty[:, None]).argmin(dim=0)  # (B,), first minimum on ties
            choice[:, l] = k
            mse = err[k, b_idx]
            cur_layers[l] = layers[l, k, b_idx]
            cur_alphas[l] = alphas[l, k, b_idx]
    cost = mse + penalty[choice].sum(dim=1)

    second = None
    if return_second:
        pen = penalty[choice]  # (B, L)
        second = torch.full((B,), float("inf"), dtype=x.dtype, device=x.device)
        for l in range(L):
            others = pen.clone()
            others[:, l] = 0  # masked, not subtracted: inf − inf would be NaN
            terms = _slot_terms(cur_layers, cur_alphas, occlusion, background, l)
            err = _slot_costs(x, layers[l], alphas[l], terms) + penalty[:, None]  # (K, B)
            err[choice[:, l], b_idx] = float("inf")  # the current assignment is not a runner-up
            second = torch.minimum(second, err.min(dim=0).values + others.sum(dim=1))
    return Selection(choice, cost, second)


# ----------------------------------------------------------------------------- dispatch and helpers


def select(
    x: torch.Tensor,
    layers: torch.Tensor,
    alphas: torch.Tensor,
    background: torch.Tensor | None = None,
    occlusion: torch.Tensor | None = None,
    penalty: torch.Tensor | Sequence[float] | None = None,
    mode: str = "auto",
    max_combinations: int = DEFAULT_MAX_COMBINATIONS,
    iterations: int = 1,
    chunk: int | None = None,
    return_second: bool = False,
) -> Selection:
    """Dispatch to :func:`exhaustive_select` or :func:`greedy_select`.

    ``mode="auto"`` searches exhaustively when ``K**L <= max_combinations`` (exact, and with
    L = 1 no slower than greedy), greedily otherwise. ``iterations`` is used by the greedy search
    only, ``chunk`` by the exhaustive one.
    """
    if mode not in ("auto", "exhaustive", "greedy"):
        raise ValueError(f"mode must be 'auto', 'exhaustive' or 'greedy', got {mode!r}")
    if layers.dim() != 6:
        raise ValueError(f"layers must be (L, K, B, C, H, W), got {tuple(layers.shape)}")
    L, K = layers.shape[:2]
    if mode == "exhaustive" or (mode == "auto" and K**L <= max_combinations):
        return exhaustive_select(
            x, layers, alphas, background, occlusion, penalty, chunk=chunk, return_second=return_second
        )
    return greedy_select(
        x, layers, alphas, background, occlusion, penalty, iterations=iterations,
        return_second=return_second,
    )


def one_hot_choice(choice: torch.Tensor, K: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Hard responsibilities of a choice: (B, L) long → (L, K, B) float, one 1 per (l, b).

    Example:
        >>> one_hot_choice(torch.tensor([[2, 0]]), 3)[..., 0]
        tensor([[0., 0., 1.],
                [1., 0., 0.]])
    """
    if choice.dim() != 2:
        raise ValueError(f"choice must be (B, L), got {tuple(choice.shape)}")
    onehot = torch.nn.functional.one_hot(choice, K)  # (B, L, K)
    return onehot.permute(1, 2, 0).to(dtype or torch.get_default_dtype())


def gather_choice(
    layers: torch.Tensor, alphas: torch.Tensor, choice: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the chosen sprite of every layer, keeping the graph so gradient reaches it.

    Convention:
        layers (L, K, B, C, H, W), alphas (L, K, B, 1, H, W), choice (B, L) long.

    Returns:
        layers (L, B, C, H, W), alphas (L, B, 1, H, W), ready for
        :func:`pipeline.compositor.composite`.
    """
    if layers.dim() != 6 or alphas.dim() != 6:
        raise ValueError(
            f"layers and alphas must be (L, K, B, ., H, W), got {tuple(layers.shape)}, "
            f"{tuple(alphas.shape)}"
        )
    L, K, B = layers.shape[:3]
    if choice.shape != (B, L):
        raise ValueError(f"choice must be {(B, L)}, got {tuple(choice.shape)}")
    l_idx = torch.arange(L, device=choice.device)[:, None]  # (L, 1)
    b_idx = torch.arange(B, device=choice.device)[None, :]  # (1, B)
    k_idx = choice.t()  # (L, B)
    return layers[l_idx, k_idx, b_idx], alphas[l_idx, k_idx, b_idx]
