import itertools

import pytest
import torch

from pipeline.models.sprites import selection
from pipeline.models.sprites.compositor import composite, occlusion_from_logits
from pipeline.models.sprites.selection import (
    exhaustive_select,
    gather_choice,
    greedy_select,
    layer_runner_up,
    one_hot_choice,
    select,
)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _random_case(B=3, L=2, K=3, C=3, H=4, W=5, seed=0, soft_occlusion=True):
    """Overlapping random candidates, soft occlusion, random background, random target."""
    g = _gen(seed)
    x = torch.rand(B, C, H, W, generator=g)
    layers = torch.rand(L, K, B, C, H, W, generator=g)
    alphas = torch.rand(L, K, B, 1, H, W, generator=g)
    alphas[:, 0] = 0  # sprite 0 is the empty sprite
    bg = torch.rand(B, C, H, W, generator=g)
    occ = None
    if soft_occlusion and L > 1:
        occ = occlusion_from_logits(torch.randn(B, L * (L - 1) // 2, generator=g), L)
    penalty = torch.tensor([0.0] + [0.01] * (K - 1))
    return x, layers, alphas, bg, occ, penalty


def _brute_force_costs(x, layers, alphas, bg, occ, penalty):
    """cost[b][combo] for every combination, one composite at a time (Python loops)."""
    L, K, B = layers.shape[:3]
    costs = []
    for b in range(B):
        row = {}
        for combo in itertools.product(range(K), repeat=L):
            lay = torch.stack([layers[l, k, b] for l, k in enumerate(combo)])[:, None]
            alp = torch.stack([alphas[l, k, b] for l, k in enumerate(combo)])[:, None]
            o = None if occ is None else occ[:, :, b : b + 1]
            recon = composite(lay, alp, o, None if bg is None else bg[b : b + 1])[0]
            row[combo] = ((recon - x[b]) ** 2).mean().item() + sum(penalty[k].item() for k in combo)
        costs.append(row)
    return costs


def _cost_of(choice, x, layers, alphas, bg, occ, penalty):
    lay, alp = gather_choice(layers, alphas, choice)
    recon = composite(lay, alp, occ, bg)
    return ((recon - x) ** 2).mean(dim=(1, 2, 3)) + penalty[choice].sum(1)


def _planted_case(B=5, L=3, K=4, C=3, seed=0, noise=0.01):
    """Layers in disjoint column bands, so each layer's choice is independent of the others."""
    g = _gen(seed)
    H, W = 6, 3 * L
    colours = torch.rand(K, C, generator=g)
    masks = (torch.rand(K, H, 3, generator=g) > 0.4).float()
    masks[0] = 0  # the empty sprite
    layers = torch.zeros(L, K, B, C, H, W)
    alphas = torch.zeros(L, K, B, 1, H, W)
    for l in range(L):
        band = slice(3 * l, 3 * l + 3)
        layers[l, :, :, :, :, band] = colours[:, None, :, None, None]
        alphas[l, :, :, 0, :, band] = masks[:, None]
    bg = torch.rand(B, C, H, W, generator=g)
    planted = torch.randint(0, K, (B, L), generator=g)
    lay, alp = gather_choice(layers, alphas, planted)
    x = composite(lay, alp, None, bg) + noise * torch.randn(B, C, H, W, generator=g)
    penalty = torch.tensor([0.0] + [1e-4] * (K - 1))
    return x, layers, alphas, bg, penalty, planted


class TestExhaustiveSelect:
    def test_cardinality(self):
        x, layers, alphas, bg, occ, penalty = _random_case()
        choice, cost = exhaustive_select(x, layers, alphas, bg, occ, penalty)
        assert choice.shape == (3, 2) and choice.dtype == torch.long and cost.shape == (3,)
        assert len(exhaustive_select(x, layers, alphas, bg, occ, penalty, return_second=True)) == 3

    def test_exception(self):
        x, layers, alphas, bg, occ, penalty = _random_case()
        with pytest.raises(ValueError):
            exhaustive_select(x, layers, alphas[:, :2], bg, occ, penalty)
        with pytest.raises(ValueError):
            exhaustive_select(x, layers, alphas, bg, occ, penalty[:2])
        with pytest.raises(ValueError):
            exhaustive_select(x, layers, alphas, bg, occ, torch.tensor([0.0, float("nan"), 0.0]))
        with pytest.raises(ValueError):
            exhaustive_select(x, layers, alphas, bg, occ.transpose(1, 2), penalty)

    @pytest.mark.parametrize("soft", [True, False])
    def test_matches_brute_force(self, soft):
        x, layers, alphas, bg, occ, penalty = _random_case(
            B=3, L=2, K=3, seed=1, soft_occlusion=soft
        )
        choice, cost, second = exhaustive_select(
            x, layers, alphas, bg, occ, penalty, return_second=True
        )
        for b, row in enumerate(_brute_force_costs(x, layers, alphas, bg, occ, penalty)):
            ranked = sorted(row, key=row.get)
            assert tuple(choice[b].tolist()) == ranked[0]
            assert cost[b].item() == pytest.approx(row[ranked[0]], abs=1e-6)
            assert second[b].item() == pytest.approx(row[ranked[1]], abs=1e-6)

    def test_chunking_is_invisible(self):
        x, layers, alphas, bg, occ, penalty = _random_case(B=4, L=3, K=3, seed=2)
        ref = exhaustive_select(x, layers, alphas, bg, occ, penalty, return_second=True)
        for chunk in (1, 4, 27, 1000):
            out = exhaustive_select(
                x, layers, alphas, bg, occ, penalty, chunk=chunk, return_second=True
            )
            assert torch.equal(out[0], ref[0])
            assert torch.allclose(out[1], ref[1], atol=1e-7) and torch.allclose(
                out[2], ref[2], atol=1e-7
            )

    def test_second_at_least_best(self):
        x, layers, alphas, bg, occ, penalty = _random_case(B=8, L=2, K=4, seed=3)
        _, cost, second = exhaustive_select(x, layers, alphas, bg, occ, penalty, return_second=True)
        assert torch.all(second >= cost)
        _, _, second = exhaustive_select(
            x[:, :, :1],
            layers[:1, :1, :, :, :1],
            alphas[:1, :1, :, :, :1],
            None,
            None,
            penalty[:1],
            return_second=True,
        )
        assert torch.all(torch.isinf(second))  # a single combination has no runner-up

    def test_ties_go_to_first_combination(self):
        x, layers, alphas, bg, occ, penalty = _random_case(B=2, L=2, K=3, seed=4)
        layers[:, 2], alphas[:, 2] = layers[:, 1], alphas[:, 1]  # sprites 1 and 2 identical
        choice, _ = exhaustive_select(x, layers, alphas, bg, occ, penalty, chunk=2)
        assert not torch.any(choice == 2)


class TestGreedySelect:
    def test_cardinality(self):
        x, layers, alphas, bg, occ, penalty = _random_case()
        choice, cost = greedy_select(x, layers, alphas, bg, occ, penalty)
        assert choice.shape == (3, 2) and choice.dtype == torch.long and cost.shape == (3,)

    def test_exception(self):
        x, layers, alphas, bg, occ, penalty = _random_case()
        with pytest.raises(ValueError):
            greedy_select(x, layers, alphas, bg, occ, penalty, iterations=0)
        with pytest.raises(ValueError):
            greedy_select(x[:2], layers, alphas, bg, occ, penalty)

    @pytest.mark.parametrize("L", [2, 3])
    def test_recovers_planted_non_overlapping(self, L):
        x, layers, alphas, bg, penalty, planted = _planted_case(L=L, seed=L)
        g_choice, g_cost = greedy_select(x, layers, alphas, bg, None, penalty)
        e_choice, e_cost = exhaustive_select(x, layers, alphas, bg, None, penalty)
        assert torch.equal(g_choice, planted) and torch.equal(e_choice, planted)
        assert torch.allclose(g_cost, e_cost, atol=1e-6)

    def test_cost_matches_its_choice(self):
        x, layers, alphas, bg, occ, penalty = _random_case(B=6, L=3, K=4, seed=5)
        choice, cost = greedy_select(x, layers, alphas, bg, occ, penalty, iterations=2)
        assert torch.allclose(
            cost, _cost_of(choice, x, layers, alphas, bg, occ, penalty), atol=1e-6
        )
        _, best = exhaustive_select(x, layers, alphas, bg, occ, penalty)
        assert torch.all(cost >= best - 1e-6)

    def test_more_iterations_never_increase_cost(self):
        x, layers, alphas, bg, occ, penalty = _random_case(B=32, L=3, K=5, seed=6)
        costs = [
            greedy_select(x, layers, alphas, bg, occ, penalty, iterations=i)[1] for i in range(1, 5)
        ]
        for before, after in itertools.pairwise(costs):
            assert torch.all(after <= before + 1e-6)
        assert torch.any(costs[-1] < costs[0] - 1e-6)  # the extra sweeps do something here

    def test_single_layer_equals_exhaustive(self):
        x, layers, alphas, bg, _, penalty = _random_case(B=8, L=1, K=6, seed=7)
        g = greedy_select(x, layers, alphas, bg, None, penalty, return_second=True)
        e = exhaustive_select(x, layers, alphas, bg, None, penalty, return_second=True)
        assert torch.equal(g[0], e[0])
        assert torch.allclose(g[1], e[1], atol=1e-6) and torch.allclose(g[2], e[2], atol=1e-6)

    def test_second_is_best_single_slot_change(self):
        x, layers, alphas, bg, occ, penalty = _random_case(B=3, L=2, K=3, seed=8)
        choice, _, second = greedy_select(x, layers, alphas, bg, occ, penalty, return_second=True)
        for b, row in enumerate(_brute_force_costs(x, layers, alphas, bg, occ, penalty)):
            c = tuple(choice[b].tolist())
            neighbours = [k for k in row if sum(u != v for u, v in zip(k, c)) == 1]
            assert second[b].item() == pytest.approx(min(row[k] for k in neighbours), abs=1e-6)


class TestLayerRunnerUp:
    def test_matches_brute_force_one_slot_away(self):
        x, layers, alphas, bg, occ, penalty = _random_case(B=4, L=3, K=4, seed=5)
        choice, _ = greedy_select(x, layers, alphas, bg, occ, penalty, iterations=2)
        best, cost = layer_runner_up(x, layers, alphas, bg, occ, penalty, choice)
        for b in range(4):
            for l in range(3):
                alternatives = {}
                for k in range(4):
                    if k != choice[b, l]:
                        other = choice[b:b + 1].clone()
                        other[0, l] = k
                        alternatives[k] = float(_cost_of(other, x[b:b + 1], layers[:, :, b:b + 1], alphas[:, :, b:b + 1],
                                                         bg[b:b + 1], None if occ is None else occ[:, :, b:b + 1], penalty)[0])
                k_best = min(alternatives, key=alternatives.get)
                assert int(best[b, l]) == k_best
                assert cost[b, l].item() == pytest.approx(alternatives[k_best], rel=1e-5, abs=1e-7)

    def test_one_layer_is_the_second_best_sprite(self):
        x, layers, alphas, bg, _, penalty = _random_case(B=6, L=1, K=5, seed=2)
        choice, cost, second = exhaustive_select(x, layers, alphas, bg, None, penalty, return_second=True)
        best, layer_cost = layer_runner_up(x, layers, alphas, bg, None, penalty, choice)
        assert torch.allclose(layer_cost[:, 0], second, atol=1e-7)
        assert (best[:, 0] != choice[:, 0]).all()

    def test_groups_are_sprites_and_the_empty_one_its_own(self):
        # candidates 2k, 2k+1 are two turns of sprite k; the runner-up is another sprite, never a turn of the chosen one
        x, layers, alphas, bg, _, _ = _random_case(B=5, L=1, K=6, seed=3)
        layers[0, 1], alphas[0, 1] = layers[0, 0], alphas[0, 0]    # sprite 0's second turn = its first
        penalty = torch.tensor([0.0] * 6 + [0.0])
        choice = torch.zeros(5, 1, dtype=torch.long)                 # sprite 0, turn 0
        best, cost = layer_runner_up(x, layers, alphas, bg, None, penalty, choice, empty=True, group=2)
        assert ((best[:, 0] >= 1) & (best[:, 0] <= 3)).all()        # sprites 1, 2 or the empty one (3)
        only, none = layer_runner_up(x, layers[:, :2], alphas[:, :2], bg, None, torch.zeros(2), choice, group=2)
        assert (only == -1).all() and torch.isinf(none).all()       # one sprite, no empty: no runner-up


class TestImplicitEmpty:
    """empty=True scores an unrendered empty sprite as candidate K: the same result as appending
    an all-transparent candidate."""

    @staticmethod
    def _explicit(layers, alphas):
        return (torch.cat([layers, torch.zeros_like(layers[:, :1])], 1),
                torch.cat([alphas, torch.zeros_like(alphas[:, :1])], 1))

    @pytest.mark.parametrize("mode", ["greedy", "exhaustive"])
    def test_equals_an_appended_empty_candidate(self, mode):
        x, layers, alphas, bg, occ, _ = _random_case(B=6, L=3, K=4, seed=5)
        layers, alphas = layers[:, 1:], alphas[:, 1:]          # three real sprites
        penalty = torch.tensor([0.02, 0.02, 0.02, 0.0])        # the empty sprite last
        lay, alp = self._explicit(layers, alphas)
        want = select(x, lay, alp, bg, occ, penalty, mode=mode, iterations=2, return_second=True)
        got = select(x, layers, alphas, bg, occ, penalty, mode=mode, iterations=2, return_second=True, empty=True)
        assert torch.equal(got[0], want[0])
        assert torch.allclose(got[1], want[1], atol=1e-6) and torch.allclose(got[2], want[2], atol=1e-6)
        assert (got[0] == 3).any() and (got[0] < 3).any()    # both kinds of choice occur

    def test_penalty_counts_the_empty_sprite(self):
        x, layers, alphas, bg, occ, _ = _random_case(B=2, L=2, K=3)
        with pytest.raises(ValueError, match=r"penalty must be \(4,\)"):
            greedy_select(x, layers, alphas, bg, occ, torch.zeros(3), empty=True)


@pytest.mark.parametrize("fn", [exhaustive_select, greedy_select])
class TestPenalty:
    def _faint_sprite(self, L):
        """x = background + a faint square that sprite 1 reproduces exactly; sprite 0 is empty."""
        B, C, H, W = 2, 1, 4, 4
        bg = torch.full((B, C, H, W), 0.5)
        x = bg.clone()
        x[..., :2, :2] = 0.6  # gain of the sprite: 4 pixels · 0.1² / 16 = 2.5e-3
        layers = x.expand(L, 2, B, C, H, W).clone()
        alphas = torch.zeros(L, 2, B, 1, H, W)
        alphas[:, 1, ..., :2, :2] = 1
        return x, layers, alphas, bg

    @pytest.mark.parametrize("L", [1, 2])
    def test_lambda_vs_mse_gain(self, fn, L):
        x, layers, alphas, bg = self._faint_sprite(L)
        choice, cost = fn(x, layers, alphas, bg, None, torch.tensor([0.0, 2e-3]))
        assert torch.all((choice == 1).sum(1) == 1)  # one layer holds the sprite, the rest empty
        assert torch.allclose(cost, torch.full((2,), 2e-3))
        choice, cost = fn(x, layers, alphas, bg, None, torch.tensor([0.0, 3e-3]))
        assert torch.all(choice == 0)
        assert torch.allclose(cost, torch.full((2,), 2.5e-3))

    def test_inf_excludes_empty_sprite(self, fn):
        x, layers, alphas, bg = self._faint_sprite(2)
        x = bg  # the empty sprite is perfect...
        choice, cost = fn(x, layers, alphas, bg, None, torch.tensor([0.0, 1e-4]))
        assert torch.all(choice == 0) and torch.all(cost == 0)
        choice, cost = fn(x, layers, alphas, bg, None, torch.tensor([float("inf"), 1e-4]))
        assert torch.all(choice == 1)  # ...but frozen sprites may not use it
        assert torch.all(torch.isfinite(cost))


class TestSelect:
    def test_dispatch(self, monkeypatch):
        calls = []
        monkeypatch.setattr(selection, "exhaustive_select", lambda *a, **k: calls.append("e"))
        monkeypatch.setattr(selection, "greedy_select", lambda *a, **k: calls.append("g"))
        x, layers, alphas, bg, occ, penalty = _random_case(L=2, K=3)  # 9 combinations
        select(x, layers, alphas, bg, occ, penalty)
        select(x, layers, alphas, bg, occ, penalty, max_combinations=8)
        select(x, layers, alphas, bg, occ, penalty, mode="greedy")
        select(x, layers, alphas, bg, occ, penalty, mode="exhaustive", max_combinations=1)
        assert calls == ["e", "g", "g", "e"]

    def test_exception(self):
        x, layers, alphas, bg, occ, penalty = _random_case()
        with pytest.raises(ValueError):
            select(x, layers, alphas, bg, occ, penalty, mode="beam")

    def test_no_background_is_black(self):
        x, layers, alphas, _, occ, penalty = _random_case(seed=9)
        black = torch.zeros_like(x)
        for mode in ("exhaustive", "greedy"):
            a = select(x, layers, alphas, None, occ, penalty, mode=mode)
            b = select(x, layers, alphas, black, occ, penalty, mode=mode)
            assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1])


class TestChoiceHelpers:
    def test_one_hot_choice(self):
        choice = torch.tensor([[2, 0], [1, 1], [0, 2]])  # (B=3, L=2)
        r = one_hot_choice(choice, 3)
        assert r.shape == (2, 3, 3) and r.dtype == torch.float32
        assert torch.equal(r.sum(1), torch.ones(2, 3))
        assert torch.equal(r.argmax(1), choice.t())

    def test_gather_choice_and_gradient(self):
        x, layers, alphas, bg, occ, penalty = _random_case(B=4, L=2, K=3, seed=10)
        layers.requires_grad_()
        alphas.requires_grad_()
        choice, cost = select(x, layers, alphas, bg, occ, penalty)
        lay, alp = gather_choice(layers, alphas, choice)
        assert lay.shape == (2, 4, 3, 4, 5) and alp.shape == (2, 4, 1, 4, 5)
        for l in range(2):
            for b in range(4):
                assert torch.equal(lay[l, b], layers[l, choice[b, l], b])
        recon = composite(lay, alp, occ, bg)
        loss = ((recon - x) ** 2).mean(dim=(1, 2, 3))
        assert torch.allclose(loss + penalty[choice].sum(1), cost, atol=1e-6)
        loss.sum().backward()
        chosen = one_hot_choice(choice, 3).bool()  # (L, K, B)
        assert torch.equal(alphas.grad.flatten(3).abs().sum(-1) > 0, chosen)
        assert not torch.any(layers.grad.flatten(3).abs().sum(-1)[~chosen])
