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
    later layers in front; see :mod:`pipeline.models.sprites.compositor`); penalty (K,) or None (zeros);
    choice (B, L) long, ``choice[b, l]`` = sprite index in layer l; cost (B,).
    ``empty=True`` adds candidate K to every layer, the empty sprite (α = 0), without
    materialising it (the penalty then has K + 1 entries); the greedy search scores it from the
    slot terms alone, the exhaustive one appends it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pipeline.models.sprites.compositor import fixed_occlusion, visibility

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_COMBINATIONS",
    "exhaustive_select",
    "gather_choice",
    "greedy_select",
    "layer_runner_up",
    "one_hot_choice",
    "select",
]

# auto mode searches exhaustively up to this many combinations K**L: every single-layer model
# (K ≤ 1024) and e.g. K ≤ 32 with two layers or K ≤ 10 with three; beyond it the greedy search
# (iterations · L · K cheap candidate evaluations) takes over. Lower it to trade exactness for
# speed.
DEFAULT_MAX_COMBINATIONS = 1024
# Exhaustive search renders combinations in chunks sized to keep temporaries under this many bytes.
# Measured on 2 CPU threads (B=32, 35×35, L=3, K=8): chunks of ≤ 64 MiB run about 3× faster than
# 256 MiB ones (cache and page-fault bound); on a GPU 64 MiB is already enough to fill the device.
DEFAULT_CHUNK_BYTES = 64 * 2**20


def _check(
    x: torch.Tensor,
    layers: torch.Tensor,
    alphas: torch.Tensor,
    background: torch.Tensor | None,
    occlusion: torch.Tensor | None,
    penalty: torch.Tensor | Sequence[float] | None,
    empty: bool = False,
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
    K += int(empty)
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


# ----------------------------------------------------------------------------- one slot at a time


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
    """MSE of the K candidates of one slot: (K, B, C, H, W), (K, B, 1, H, W) → (K, B).

    Leading dimensions broadcast: the exhaustive search passes candidates (K, 1, B, ...) and
    terms (n, B, ...) for n prefixes at once and gets (K, n, B).
    """
    S, U, T = terms
    # α (c T − U) + (S − x), squared, in one buffer: fresh K-sized temporaries cost page faults
    resid = cand_layers * T  # (K, B, C, H, W)
    resid.sub_(U).mul_(cand_alphas).add_(S - x)
    return resid.square_().mean(dim=(-3, -2, -1))


# ----------------------------------------------------------------------------- exhaustive


def _digits(idx: torch.Tensor, K: int, L: int) -> torch.Tensor:
    """Combination indices (n,) → (n, L) digits base K, layer 0 most significant, so that
    combinations come in ``itertools.product(range(K), repeat=L)`` order."""
    powers = K ** torch.arange(L - 1, -1, -1, device=idx.device)  # (L,)
    return (idx[:, None] // powers) % K


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
) -> tuple[torch.Tensor, ...]:
    """Evaluate all K**L assignments and keep the cheapest per image.

    The K**(L−1) choices of layers 0 … L−2 ("prefixes") are enumerated in chunks; for each
    prefix the K choices of the front slot are scored at once with the slot decomposition of
    ``_slot_terms`` (exact, not an approximation). Memory never grows with K**L: a chunk holds
    about ``chunk`` combinations (default: as many as fit in ``DEFAULT_CHUNK_BYTES`` of
    temporaries). Ties go to the first combination in ``itertools.product`` order (layer 0 most
    significant).

    Args:
        chunk: combinations per chunk, rounded down to a multiple of K (at least K), or None for
            the memory-based default.
        return_second: also return the cost of the second-cheapest assignment (inf if K**L = 1);
            for L = 1 this is the second-best sprite, for a "margin" confidence score.

    Returns:
        ``(choice (B, L), cost (B,))``, plus ``second (B,)`` when ``return_second``.
    """
    occlusion, penalty = _check(x, layers, alphas, background, occlusion, penalty)
    L, K, B, C, H, W = layers.shape
    if chunk is None:
        # per prefix: gathered stack, L² occlusion factors, contributions, S/U/T, and the
        # K candidate composites with their errors
        per_prefix = B * H * W * (L * (2 * C + L + 3) + 2 * C + 1 + 2 * K * C) * x.element_size()
        n_prefix = max(1, DEFAULT_CHUNK_BYTES // per_prefix)
    elif chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    else:
        n_prefix = max(1, chunk // K)

    inf = torch.full((B,), float("inf"), dtype=x.dtype, device=x.device)
    best, second = inf.clone(), inf.clone()
    best_idx = torch.zeros(B, dtype=torch.long, device=x.device)
    front_layers = layers[L - 1][:, None]  # (K, 1, B, C, H, W), broadcast over prefixes
    front_alphas = alphas[L - 1][:, None]  # (K, 1, B, 1, H, W)
    l_idx = torch.arange(L - 1, device=x.device)[:, None]  # (L-1, 1)
    n_total = K ** (L - 1)
    for start in range(0, n_total, n_prefix):
        prefix = _digits(
            torch.arange(start, min(start + n_prefix, n_total), device=x.device), K, L - 1
        )
        n = prefix.shape[0]  # prefix: (n, L-1)
        # current stack, front slot left empty: (L, n*B, ., H, W)
        lay = torch.cat([layers[l_idx, prefix.t()], layers.new_zeros(1, n, B, C, H, W)])
        alp = torch.cat([alphas[l_idx, prefix.t()], alphas.new_zeros(1, n, B, 1, H, W)])
        occ = occlusion[:, :, None].expand(L, L, n, B).reshape(L, L, n * B)
        bg = None if background is None else background.expand(n, B, C, H, W).reshape(-1, C, H, W)
        terms = _slot_terms(
            lay.view(L, n * B, C, H, W), alp.view(L, n * B, 1, H, W), occ, bg, L - 1
        )
        terms = tuple(t.view(n, B, *t.shape[1:]) for t in terms)
        err = _slot_costs(x, front_layers, front_alphas, terms)  # (K, n, B)
        pen = penalty[prefix].sum(dim=1)[None, :] + penalty[:, None]  # (K, n)
        # (n*K, B) with row i*K + k = combination (start + i)*K + k, in product order
        cost = (err + pen[..., None]).transpose(0, 1).reshape(n * K, B)

        c1, i1 = cost.min(dim=0)  # (B,), first minimum on ties
        if return_second:
            c2 = cost.scatter(0, i1[None], float("inf")).min(dim=0).values if n * K > 1 else inf
            # second smallest of the union {best ≤ second} ∪ {c1 ≤ c2}
            second = torch.minimum(torch.minimum(second, c2), torch.maximum(best, c1))
        better = c1 < best  # strict: earlier chunks win ties
        best_idx = torch.where(better, i1 + start * K, best_idx)
        best = torch.where(better, c1, best)

    choice = _digits(best_idx, K, L)
    return (choice, best, second) if return_second else (choice, best)


# ----------------------------------------------------------------------------- greedy


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
    empty: bool = False,
) -> tuple[torch.Tensor, ...]:
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
        ``(choice (B, L), cost (B,))``, plus ``second (B,)`` when ``return_second``.
    """
    occlusion, penalty = _check(x, layers, alphas, background, occlusion, penalty, empty)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    L, K, B, C, H, W = layers.shape
    b_idx = torch.arange(B, device=x.device)
    cur_layers = layers.new_zeros(L, B, C, H, W)
    cur_alphas = alphas.new_zeros(L, B, 1, H, W)
    choice = torch.zeros(B, L, dtype=torch.long, device=x.device)
    mse = x.new_zeros(B)

    def costs(l: int, terms) -> torch.Tensor:  # (K [+1 empty], B)
        err = _slot_costs(x, layers[l], alphas[l], terms)
        return torch.cat([err, _mse(x, terms[0])[None]]) if empty else err

    def place(l: int, k: torch.Tensor) -> None:
        real = k.clamp(max=K - 1)
        cur_layers[l] = layers[l, real, b_idx]
        cur_alphas[l] = alphas[l, real, b_idx]
        if empty:
            cur_alphas[l].mul_((k < K).to(alphas.dtype)[:, None, None, None])

    for _ in range(iterations):
        for l in range(L):
            err = costs(l, _slot_terms(cur_layers, cur_alphas, occlusion, background, l))
            k = (err + penalty[:, None]).argmin(dim=0)  # (B,), first minimum on ties
            choice[:, l] = k
            mse = err[k, b_idx]
            place(l, k)
    cost = mse + penalty[choice].sum(dim=1)
    if not return_second:
        return choice, cost

    pen = penalty[choice]  # (B, L)
    second = torch.full((B,), float("inf"), dtype=x.dtype, device=x.device)
    for l in range(L):
        others = pen.clone()
        others[:, l] = 0  # masked, not subtracted: inf − inf would be NaN
        err = costs(l, _slot_terms(cur_layers, cur_alphas, occlusion, background, l)) + penalty[:, None]
        err[choice[:, l], b_idx] = float("inf")  # the current assignment is not a runner-up
        second = torch.minimum(second, err.min(dim=0).values + others.sum(dim=1))
    return choice, cost, second


@torch.no_grad()
def layer_runner_up(
    x: torch.Tensor,
    layers: torch.Tensor,
    alphas: torch.Tensor,
    background: torch.Tensor | None,
    occlusion: torch.Tensor | None,
    penalty: torch.Tensor | Sequence[float] | None,
    choice: torch.Tensor,
    empty: bool = False,
    group: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each layer, the best *other* candidate of that slot with the other slots kept at
    ``choice``, and the cost of the assignment it gives (one slot evaluation per layer; for L = 1
    this is the second-best sprite).

    Candidates come in groups of ``group`` (the turns of one sprite): the runner-up is another
    group, scored by its best member. With ``empty`` the empty sprite (candidate K) is a group of
    its own, numbered K // group.

    Returns:
        runner_up (B, L) long group index, cost (B, L) (inf where there is no other group).
    """
    occlusion, penalty = _check(x, layers, alphas, background, occlusion, penalty, empty)
    L, K, B = layers.shape[:3]
    if K % group:
        raise ValueError(f"{K} candidates do not come in groups of {group}")
    G = K // group
    b_idx = torch.arange(B, device=x.device)
    l_idx = torch.arange(L, device=x.device)[:, None]
    real = choice.t().clamp(max=K - 1)                                            # (L, B)
    cur_layers = layers[l_idx, real, b_idx[None]]                                 # (L, B, C, H, W)
    cur_alphas = alphas[l_idx, real, b_idx[None]] * (choice.t() < K).to(alphas.dtype)[..., None, None, None]
    pen = penalty[choice]                                                         # (B, L)
    chosen = torch.where(choice >= K, G, choice // group)                         # (B, L) group of the choice
    best = torch.full((B, L), -1, dtype=torch.long, device=x.device)
    cost = torch.full((B, L), float("inf"), dtype=x.dtype, device=x.device)
    for l in range(L):
        terms = _slot_terms(cur_layers, cur_alphas, occlusion, background, l)
        err = _slot_costs(x, layers[l], alphas[l], terms) + penalty[:K, None]   # (K, B)
        err = err.view(G, group, B).amin(dim=1)                                   # (G, B) best turn
        if empty:
            err = torch.cat([err, _mse(x, terms[0])[None] + penalty[K]])
        others = pen.clone()
        others[:, l] = 0  # masked, not subtracted: inf − inf would be NaN
        err = err + others.sum(dim=1)[None]
        err[chosen[:, l], b_idx] = float("inf")
        c, k = err.min(dim=0)
        cost[:, l] = c
        best[:, l] = torch.where(torch.isfinite(c), k, -1)
    return best, cost


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
    empty: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Dispatch to :func:`exhaustive_select` or :func:`greedy_select`; ``empty`` as in the
    module's convention.

    ``mode="auto"`` searches exhaustively when ``K**L <= max_combinations`` (exact, and with
    L = 1 no slower than greedy), greedily otherwise. ``iterations`` is used by the greedy search
    only, ``chunk`` by the exhaustive one.

    Example:
        >>> x = torch.zeros(2, 3, 8, 8)
        >>> layers, alphas = torch.rand(2, 4, 2, 3, 8, 8), torch.rand(2, 4, 2, 1, 8, 8)
        >>> choice, cost = select(x, layers, alphas, penalty=torch.tensor([0.0, 1e-4, 1e-4, 1e-4]))
        >>> choice.shape, cost.shape
        (torch.Size([2, 2]), torch.Size([2]))
    """
    if mode not in ("auto", "exhaustive", "greedy"):
        raise ValueError(f"mode must be 'auto', 'exhaustive' or 'greedy', got {mode!r}")
    if layers.dim() != 6:
        raise ValueError(f"layers must be (L, K, B, C, H, W), got {tuple(layers.shape)}")
    L, K = layers.shape[:2]
    if mode == "exhaustive" or (mode == "auto" and (K + int(empty)) ** L <= max_combinations):
        if empty:
            layers = torch.cat([layers, layers.new_zeros(L, 1, *layers.shape[2:])], dim=1)
            alphas = torch.cat([alphas, alphas.new_zeros(L, 1, *alphas.shape[2:])], dim=1)
        return exhaustive_select(
            x,
            layers,
            alphas,
            background,
            occlusion,
            penalty,
            chunk=chunk,
            return_second=return_second,
        )
    return greedy_select(
        x,
        layers,
        alphas,
        background,
        occlusion,
        penalty,
        iterations=iterations,
        return_second=return_second,
        empty=empty,
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
        :func:`pipeline.models.sprites.compositor.composite`.
    """
    if layers.dim() != 6 or alphas.dim() != 6:
        raise ValueError(
            f"layers and alphas must be (L, K, B, ., H, W), got {tuple(layers.shape)}, "
            f"{tuple(alphas.shape)}"
        )
    L, _, B = layers.shape[:3]
    if choice.shape != (B, L):
        raise ValueError(f"choice must be {(B, L)}, got {tuple(choice.shape)}")
    l_idx = torch.arange(L, device=choice.device)[:, None]  # (L, 1)
    b_idx = torch.arange(B, device=choice.device)[None, :]  # (1, B)
    k_idx = choice.t()  # (L, B)
    return layers[l_idx, k_idx, b_idx], alphas[l_idx, k_idx, b_idx]
