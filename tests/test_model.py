"""The sprite model: identity at initialisation, shapes, selection, re-seeding, config errors."""

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.models.sprites.compositor import composite
from pipeline.core.config import config_from_dict
from pipeline.errors import SpritesError
from pipeline.models.sprites.heads import SequenceHeads
from pipeline.models.sprites.model import SpriteModel, check_model_config, gaussian_masks
from pipeline.models.sprites.reassign import mask_overlap, reassign_unused
from pipeline.models.fit import make_optimizer


def _model(preset="objects", size=16, channels=3, **model):
    if preset == "scenes":   # these tests were written for the scenes preset's former fixed values
        model = {"empty_sprite": True, "occlusion": "predicted", "greedy_iterations": 2, "sprite_size": 0,
                 "mask_init_elongation": 1.0, "selection_downsample": 1, "encoder_pool": 1, "empty_penalty": 1e-4,
                 "reassign_blurred": 0.0, "reassign_duplicate": 0.0, **model}
    cfg = config_from_dict({"model": model, "ingest": {"size": size}}, preset=preset)
    torch.manual_seed(0)
    return SpriteModel(cfg.model, channels, size), cfg


def _select_downsampled_and_full(model, truth, size):
    """(loss, choice) at the model's selection size, then at full size, on 4 scenes drawn from truth (4, L)."""
    x = torch.rand(4, 3, size, size)
    for _ in range(3):   # the drawn scene changes the features: redraw until they agree
        features = model.encoder(x)
        layers, alphas, _ = model.render_chosen(features, truth, torch.zeros_like(truth), False, None, False)
        bkg = model.render_backgrounds(features, False)[0]
        x = composite(layers, alphas, model.occlusion(features), bkg).detach()
    loss, choice, _ = model(x)
    model.cfg = dataclasses.replace(model.cfg, selection_downsample=1)
    loss_full, choice_full, _ = model(x)
    return (loss, choice), (loss_full, choice_full)


class TestSpriteModel:
    def test_smoke_every_preset(self):
        for preset, extra in (("clustering", {}), ("objects", {}), ("scenes", {"sprites": 4, "layers": 2})):
            model, cfg = _model(preset, **extra)
            x = torch.rand(4, 3, 16, 16)
            model.train()
            loss, choice, bkg = model(x)
            loss.backward()
            assert torch.isfinite(loss) and choice.shape == (4, model.L) and bkg.shape == (4,)
            model.eval()
            d = model.decompose(x)
            assert d.recon.shape == x.shape and d.alphas.shape == (model.L, 4, 1, 16, 16)
            assert (d.margin >= 0).all()

    def test_heads_start_at_identity(self):
        # zero-initialised last layers: every predicted parameter is exactly 0 at init
        model, _ = _model("objects", transforms=["color", "affine", "tps"])
        feats = model.encoder(torch.rand(3, 3, 16, 16))
        for beta in model.sprite_heads(feats) + model.bkg_heads(feats):
            assert torch.equal(beta, torch.zeros_like(beta))

    def test_render_at_init_is_the_sprite(self):
        # with identity transformations the rendered candidate is the (clamped) sprite itself
        model, _ = _model("objects", transforms=["color", "affine"], curriculum=[], background_transforms=["color"])
        model.eval()
        feats = model.encoder(torch.rand(2, 3, 16, 16))
        with torch.no_grad():
            r = model.render_all(feats, False, None, False)
        assert torch.allclose(r.layers[0, :, 0], model.prototypes.clamp(0, 1), atol=1e-5)
        assert torch.allclose(r.alphas[0, :, 0], model.masks.clamp(0, 1), atol=1e-5)

    def test_stacked_layer_warp_equals_per_sprite_warp(self):
        # layer-only transformations use one grid per (layer, image); compare with the general path
        model, _ = _model("scenes", sprites=3, layers=2, sprite_size=10)
        feats = model.encoder(torch.rand(2, 3, 16, 16))
        with torch.no_grad():
            for p in model.layer_heads.parameters():
                p.normal_(0, 0.3)
            noise = torch.rand(3, 1, 16, 16) - 0.5
            fast = model.render_all(feats, True, noise, False)
            # a sprite-level spatial map (zero-initialised head = identity) forces the general path
            model.sprite_seq = ["affine"]
            model.sprite_heads = SequenceHeads(6, model.encoder.features, [6])
            slow = model.render_all(feats, True, noise, False)
        assert torch.allclose(fast.layers, slow.layers, atol=1e-5)
        assert torch.allclose(fast.alphas, slow.alphas, atol=1e-5)

    def test_training_loss_matches_composite_of_choice(self):
        # the loss is the MSE of Eq. 2 with the selected sprites (no mask noise in eval mode)
        model, _ = _model("scenes", sprites=3, layers=2, mask_noise=0.0)
        model.eval()
        x = torch.rand(3, 3, 16, 16)
        loss, choice, bkg = model(x)
        feats = model.encoder(x)
        layers, alphas, _ = model.render_chosen(feats, choice, torch.zeros_like(choice), False, None, False)
        background = model.render_backgrounds(feats, False)[bkg, torch.arange(3)]
        recon = composite(layers, alphas, model.occlusion(feats), background)
        assert torch.allclose(loss, ((recon - x) ** 2).mean(), atol=1e-6)

    @pytest.mark.parametrize("rotations, cases, exact", [
        (4, [(2, 1), (0, 3), (1, 0), (2, 2)], True),     # quarter-turns: permutations of pixels
        (8, [(1, 1), (0, 6), (0, 3), (2, 0)], False),    # odd eighths (45°) are resampled
    ])
    def test_selection_finds_the_turn(self, rotations, cases, exact):
        # an image equal to sprite k turned r · 360°/R is (k, r), and its quarter_turns is r · 4/R
        from pipeline.models.sprites.transforms import turn_eighths
        model, _ = _model("clustering", size=16, channels=1, sprites=3, transforms=["affine"], curriculum=[],
                          rotations=rotations)
        model.eval()
        with torch.no_grad():
            model.prototypes.copy_(torch.rand(3, 1, 16, 16))
        protos = model.prototypes.detach().clamp(0, 1)
        x = torch.cat([turn_eighths(protos[[k]], r * 8 // rotations) for k, r in cases])
        d = model.decompose(x)
        assert d.choice[:, 0].tolist() == [k for k, _ in cases] and d.turns[:, 0].tolist() == [r for _, r in cases]
        assert d.params["quarter_turns"][:, 0, 0].tolist() == [r * 4 / rotations for _, r in cases]
        if exact:
            assert (d.error < 1e-10).all()

    def test_record_keeps_the_turned_sprites_as_placed(self):
        # the report shows each crop's front sprite as decompose placed it (no redrawing), turns included
        from pipeline.models.base import front_layer
        from pipeline.models.record_io import record_arrays
        model, _ = _model("scenes", sprites=3, layers=2, rotations=8, transforms=["similarity"], curriculum=[],
                          empty_sprite=False)
        model.eval()
        with torch.no_grad():
            model.masks.normal_(0, 1)
            for p in model.sprite_heads.parameters():
                p.normal_(0, 0.1)
        x = torch.rand(12, 3, 16, 16)
        d, rec = model.decompose(x), model.decompose_batch(x)
        assert d.turns[:, 1].unique().numel() > 1
        assert torch.equal(rec.layers[:, :, :3], d.layers.transpose(0, 1))
        assert torch.equal(rec.layers[:, :, 3:], d.alphas.transpose(0, 1))
        arrays = record_arrays(rec)
        front = front_layer(arrays["sprite"], arrays["occlusion"])
        rows = np.arange(12)
        assert np.array_equal(arrays["front"], arrays["sprite"][rows, front])
        placed = torch.cat([d.layers, d.alphas], 2)[torch.from_numpy(front), torch.from_numpy(rows)]
        assert np.array_equal(arrays["aligned"], (placed.clamp(0, 1) * 255).round().to(torch.uint8).numpy())

    @pytest.mark.parametrize("empty", [True, False])
    def test_greedy_margin_from_the_layers_equals_the_searchs_own(self, empty):
        model, _ = _model("scenes", sprites=5, layers=3, selection="greedy", greedy_iterations=2, empty_sprite=empty)
        model.eval()
        with torch.no_grad():
            model.masks.normal_(0, 1)
            model.prototypes.uniform_(0, 1)
        x = torch.rand(20, 3, 16, 16)
        d = model.decompose(x)
        features = model.encoder(x)
        with torch.no_grad():
            rendered = model.render_all(features, False, None, False)
            _, _, cost, second = model.choose(x, rendered, model.render_backgrounds(features, False),
                                              model.occlusion(features, hard=True), False, second=True)
        assert torch.equal((second - cost).clamp(min=0), d.margin)
        assert torch.equal(d.layer_cost.min(1).values, second)

    def test_half_turns_only(self):
        model, _ = _model("clustering", size=16, channels=1, sprites=2, transforms=["affine"], curriculum=[], rotations=2)
        model.eval()
        with torch.no_grad():
            model.prototypes.copy_(torch.rand(2, 1, 16, 16))
        x = torch.rot90(model.prototypes.detach().clamp(0, 1)[[1]], 2, dims=(-2, -1))
        d = model.decompose(x)
        assert (d.choice[0, 0], d.turns[0, 0], d.params["quarter_turns"][0, 0, 0]) == (1, 1, 2.0)

    def test_training_loss_with_turns_matches_composite_of_choice(self):
        model, _ = _model("scenes", sprites=3, layers=2, mask_noise=0.0, rotations=4)
        model.eval()
        with torch.no_grad():   # asymmetric masks, so the turns differ
            model.masks.normal_(0, 1)
        x = torch.rand(3, 3, 16, 16)
        features = model.encoder(x)
        with torch.no_grad():
            rendered = model.render_all(features, False, None, False)
            assert rendered.layers.shape[1] == 3 * 4   # the empty sprite is implicit
            candidate, bkg, cost, _ = model.choose(x, rendered, model.render_backgrounds(features, False),
                                                    model.occlusion(features), False)
        choice, turns = model.split_candidates(candidate)
        layers, alphas, _ = model.render_chosen(features, choice, turns, False, None, False)
        background = model.render_backgrounds(features, False)[bkg, torch.arange(3)]
        recon = composite(layers, alphas, model.occlusion(features), background)
        pen = model.penalty(False, x.device)[candidate].sum(1)
        assert torch.allclose(cost, ((recon - x) ** 2).flatten(1).mean(1) + pen, atol=1e-6)
        loss, choice2, _ = model(x)
        assert torch.equal(choice2, choice) and torch.allclose(loss, ((recon - x) ** 2).mean(), atol=1e-6)

    def test_selection_picks_the_matching_sprite(self):
        # clustering: an image equal to sprite k is assigned to k
        model, _ = _model("clustering", size=16, channels=1, sprites=4, transforms=["affine"], curriculum=[])
        model.eval()
        with torch.no_grad():
            model.prototypes.copy_(torch.rand(4, 1, 16, 16))
        d = model.decompose(model.prototypes.detach().clamp(0, 1)[[2, 0, 3]])
        assert d.choice[:, 0].tolist() == [2, 0, 3]
        assert (d.error < 1e-6).all()

    def test_downsampled_selection_keeps_the_choice_and_the_full_size_loss(self):
        # scenes drawn from the model's own candidates: selecting at half size picks the same
        # sprites, and the loss is still the full-size MSE of the chosen ones
        model, _ = _model("scenes", size=32, sprites=3, layers=2, mask_noise=0.0, sprite_size=16,
                          selection_downsample=2)
        model.eval()
        with torch.no_grad():
            model.masks.copy_(torch.rand(3, 1, 16, 16).gt(0.5).float())   # sharp, different shapes
            model.prototypes.copy_(torch.rand(3, 3, 16, 16))
            for p in model.layer_heads.parameters():
                p.normal_(0, 0.05)
        truth = torch.tensor([[0, 2], [1, 0], [2, 1], [1, 3]])             # 3 = the empty sprite
        (loss, choice), (loss_full, choice_full) = _select_downsampled_and_full(model, truth, 32)
        assert torch.equal(choice, choice_full)
        assert torch.allclose(loss, loss_full, atol=1e-7)

    def test_quarter_size_selection_keeps_the_choice_of_layers_apart(self):
        # selecting at 16×16 among 64×64 scenes picks the full-size choice and loss; the two layers
        # are shifted apart because ds 4 is not exact when two sprites overlap almost fully (then
        # one scene in four may get its layers' sprites swapped)
        model, _ = _model("scenes", size=64, sprites=3, layers=2, mask_noise=0.0, sprite_size=32,
                          selection_downsample=4)
        model.eval()
        with torch.no_grad():
            blocks = torch.rand(3, 1, 4, 4).gt(0.4).float()               # sharp, different shapes
            model.masks.copy_(torch.nn.functional.interpolate(blocks, size=(32, 32)))
            model.prototypes.copy_(torch.eye(3)[:, :, None, None].expand(3, 3, 32, 32))   # red, green, blue
            for p in model.layer_heads.parameters():
                p.normal_(0, 0.05)
            model.layer_heads.mlp.b3[0, 0, 7] -= 0.4                       # layer 0 one way, layer 1 the other
            model.layer_heads.mlp.b3[1, 0, 7] += 0.4
        truth = torch.tensor([[0, 2], [1, 0], [2, 1], [1, 3]])             # 3 = the empty sprite
        (loss, choice), (loss_full, choice_full) = _select_downsampled_and_full(model, truth, 64)
        assert torch.equal(choice, truth) and torch.equal(choice_full, truth)
        assert torch.allclose(loss, loss_full, atol=1e-7)

    def test_curriculum_switches_modules_on(self):
        model, _ = _model("objects", transforms=["color", "affine", "tps"], curriculum=[0, 2, 5])
        model.set_epoch(0)
        assert model.sprite_heads.active.tolist() == [1, 0, 0]
        model.set_epoch(3.5)
        assert model.sprite_heads.active.tolist() == [1, 1, 0]
        model.set_epoch(5)
        assert model.sprite_heads.active.tolist() == [1, 1, 1]


class TestInitialMasks:
    def test_gaussian_as_the_paper(self):
        m = gaussian_masks(3, 12, 2.5)                                   # (3, 1, 12, 12)
        g = torch.exp(-0.5 * ((torch.arange(12) - 5.5) / 2.5) ** 2)
        assert torch.equal(m, (g[:, None] * g[None, :]).expand(3, 1, 12, 12))
        assert m[0].data_ptr() != m[1].data_ptr()                       # no aliasing between sprites

    def test_elongated_with_quarter_turns(self):
        m = gaussian_masks(1, 12, 2.5, elongation=1.25)[0, 0]
        assert torch.allclose(m, m.flip(0)) and torch.allclose(m, m.flip(1))   # still centred
        assert m[6, 0] > m[0, 6]                                              # wider along x
        assert not torch.allclose(m, torch.rot90(m, 1))                        # the turns differ
        model, _ = _model("scenes", sprites=2, layers=2, rotations=4)
        assert not torch.allclose(model.masks[0, 0], torch.rot90(model.masks[0, 0], 1))
        model, _ = _model("scenes", sprites=2, layers=2)
        assert torch.allclose(model.masks[0, 0], torch.rot90(model.masks[0, 0], 1))  # the paper's

    def test_elongated_and_turned_evenly_over_a_half_turn(self):
        m = gaussian_masks(4, 12, 2.5, elongation=1.25, turned=True)[:, 0]    # (4, 12, 12)
        assert torch.allclose(m[0], gaussian_masks(1, 12, 2.5, elongation=1.25)[0, 0])  # mask 0 along x
        assert torch.allclose(m[2], m[0].t(), atol=1e-6)                     # mask 2 turned 90°
        assert torch.allclose(m[1], m[1].flip(0).flip(1), atol=1e-6)         # 45°: still centred
        assert m[1][9, 9] > m[1][2, 9] and m[3][2, 9] > m[3][9, 9]           # 45° and 135° differ
        model, _ = _model("scenes", sprites=4, layers=2, mask_init_elongation=1.25)
        assert torch.allclose(model.masks[2, 0], model.masks[0, 0].t(), atol=1e-6)

    def test_elongation_below_one_is_refused(self):
        with pytest.raises(SpritesError, match="mask_init_elongation"):
            config_from_dict({"model": {"mask_init_elongation": 0.5}}, preset="scenes")

    def test_duplicate_overlap_out_of_range_is_refused(self):
        with pytest.raises(SpritesError, match="reassign_duplicate"):
            config_from_dict({"model": {"reassign_duplicate": 1.5}}, preset="scenes")


class TestReassign:
    def test_unused_sprite_restarts_from_most_used(self):
        model, cfg = _model("objects", sprites=3)
        opt = make_optimizer(model, cfg.train)
        x = torch.rand(4, 3, 16, 16)
        loss, _, _ = model(x)
        loss.backward()
        opt.step()  # creates Adam moments
        usage = torch.tensor([[0, 40, 10]])  # sprite 0 unused, sprite 1 most used
        moved = reassign_unused(model, opt, usage, threshold=0.2)
        assert moved == [(0, 1, "rarely used")]
        assert torch.allclose(model.prototypes[0], model.prototypes[1], atol=1e-3)
        assert not torch.equal(model.prototypes[0], model.prototypes[1])  # perturbed apart
        assert torch.equal(model.masks[0], model.masks[1])
        w3 = model.sprite_heads.mlp.w3
        assert torch.equal(w3[0], w3[1])
        state = opt.state[model.masks]["exp_avg"]
        assert torch.equal(state[0], state[1]) and state[0].data_ptr() != state[1].data_ptr()


    def test_invisible_sprite_restarts_even_when_chosen(self):
        model, cfg = _model("objects", sprites=3)
        opt = make_optimizer(model, cfg.train)
        with torch.no_grad():
            model.masks[2] = -1.0            # mask faded to nothing
        usage = torch.tensor([[30, 40, 30]])  # yet chosen as often as the others
        assert reassign_unused(model, opt, usage, threshold=0.2) == [(2, 1, "its mask faded")]
        assert torch.equal(model.masks[2], model.masks[1])
        assert reassign_unused(model, opt, usage, threshold=0.2) == []


    def test_blurred_sprite_restarts_from_most_used(self):
        model, cfg = _model("objects", sprites=4, reassign_blurred=5.0)
        opt = make_optimizer(model, cfg.train)
        with torch.no_grad():
            model.masks[:] = -1.0
            model.masks[:, :, 4:12, 4:12] = 2.0   # sharp squares (blur 0)
            model.masks[1, :, 4:12, 4:12] = 1.5   # edges still sharp, so slightly blurred overall
            model.masks[3] = 0.5                  # a soft blob at 1/2 everywhere (blur 1)
        usage = torch.tensor([[30, 60, 30, 30]])  # the blob is chosen as often as the others
        assert reassign_unused(model, opt, usage, threshold=0.2) == []   # off by default
        assert reassign_unused(model, opt, usage, threshold=0.2, blurred=5.0) == [(3, 1, "its mask stayed a blur")]
        assert torch.equal(model.masks[3], model.masks[1])               # a copy of the most used
        assert reassign_unused(model, opt, usage, threshold=0.2, blurred=5.0) == []

    def test_evenly_soft_masks_are_left_alone(self):
        model, cfg = _model("objects", sprites=4)
        opt = make_optimizer(model, cfg.train)
        with torch.no_grad():
            model.masks[:] = torch.linspace(0.5, 0.9, 4)[:, None, None, None]  # all soft, none an outlier
        assert reassign_unused(model, opt, torch.tensor([[30, 30, 30, 30]]), threshold=0.2, blurred=5.0) == []


    @staticmethod
    def _shapes(model):
        """Sprites 0 and 2 draw one 6×6 square at different places; 1 and 3 other shapes."""
        with torch.no_grad():
            model.masks[:] = -1.0
            model.masks[0, :, 2:8, 2:8] = 2.0
            model.masks[2, :, 7:13, 6:12] = 2.0     # the same square, shifted (5, 4) px
            model.masks[1, :, 2:14, 7:9] = 2.0      # a bar
            model.masks[3, :, 3:6, 3:13] = 2.0      # a flat bar

    def test_overlap_is_shift_invariant(self):
        model, _ = _model("objects", sprites=4)
        self._shapes(model)
        iou = mask_overlap(model.masks)
        assert iou[0, 2] == 1 and iou[2, 0] == 1 and torch.all(iou.diagonal() == 1)
        assert iou[0, 1] < 0.5 and iou[1, 3] < 0.5

    def test_duplicate_restarts_from_most_used_other_sprite(self):
        model, cfg = _model("objects", sprites=4)
        opt = make_optimizer(model, cfg.train)
        self._shapes(model)
        usage = torch.tensor([[20, 40, 25, 30]])   # the square's twins split its images; 1 explains two shapes
        assert reassign_unused(model, opt, usage, threshold=0.2) == []   # off by default
        assert reassign_unused(model, opt, usage, threshold=0.2, duplicate=0.9) == [(0, 1, "it drew the same shape as sprite 2")]
        assert torch.equal(model.masks[0], model.masks[1])

    def test_twin_is_never_the_source(self):
        model, cfg = _model("objects", sprites=4)
        opt = make_optimizer(model, cfg.train)
        self._shapes(model)
        usage = torch.tensor([[20, 25, 40, 30]])   # the square's other twin is the most used sprite
        assert reassign_unused(model, opt, usage, threshold=0.2, duplicate=0.9) == [(0, 3, "it drew the same shape as sprite 2")]

    def test_two_copies_in_one_check_come_from_different_sprites(self):
        model, cfg = _model("objects", sprites=4)
        opt = make_optimizer(model, cfg.train)
        self._shapes(model)
        usage = torch.tensor([[0, 40, 1, 30]])   # two sprites unused; sprite 1 most used, 3 next
        moved = reassign_unused(model, opt, usage, threshold=0.2)
        assert moved == [(0, 1, "rarely used"), (2, 3, "rarely used")]
        assert torch.equal(model.masks[0], model.masks[1]) and torch.equal(model.masks[2], model.masks[3])
        usage = torch.tensor([[0, 90, 1, 30]])   # sprite 1 more than twice as used: both copies
        moved = reassign_unused(model, opt, usage, threshold=0.2)
        assert [r.source for r in moved] == [1, 1]

    def test_unsettled_or_blurred_twins_are_left_alone(self):
        model, cfg = _model("objects", sprites=4)
        opt = make_optimizer(model, cfg.train)
        self._shapes(model)
        usage = torch.tensor([[20, 40, 25, 30]])
        settled = torch.tensor([True, True, False, True])   # sprite 2 was just re-seeded
        assert reassign_unused(model, opt, usage, threshold=0.2, duplicate=0.9, settled=settled) == []
        model2, _ = _model("objects", sprites=4)            # the initial masks: identical Gaussians
        assert reassign_unused(model2, make_optimizer(model2, cfg.train), usage, threshold=0.2, duplicate=0.9) == []


class TestConfigErrors:
    def test_exhaustive_counts_the_turns(self):
        with pytest.raises(SpritesError, match=r"\(K × 4 turns\)\^L = 12\^4"):
            _model("scenes", sprites=3, layers=4, selection="exhaustive", rotations=4)
        with pytest.raises(SpritesError, match="rotations"):
            config_from_dict({"model": {"rotations": 3}}, preset="scenes")

    def test_exhaustive_too_big(self):
        cfg = config_from_dict({"model": {"sprites": 19, "layers": 3, "selection": "exhaustive"}}, preset="scenes")
        with pytest.raises(SpritesError, match="greedy"):
            check_model_config(cfg.model, 35)

    def test_unknown_transformation(self):
        cfg = config_from_dict({"model": {"transforms": ["projetive"], "curriculum": []}}, preset="objects")
        with pytest.raises(SpritesError, match="projective"):
            check_model_config(cfg.model, 32)

    def test_selection_downsample_must_divide_the_crop(self):
        cfg = config_from_dict({"model": {"selection_downsample": 4}, "ingest": {"size": 35}}, preset="scenes")
        with pytest.raises(SpritesError, match="selection_downsample = 4 does not divide the crop size"):
            check_model_config(cfg.model, 35)
        with pytest.raises(SpritesError, match="selection_downsample"):
            config_from_dict({"model": {"selection_downsample": 3}}, preset="scenes")

    def test_sprite_larger_than_crop(self):
        cfg = config_from_dict({"model": {"sprite_size": 48}, "ingest": {"size": 64}}, preset="objects")
        with pytest.raises(SpritesError, match="sprite_size"):
            check_model_config(cfg.model, 32)


class TestRedundantSprites:
    """One letter drawn by two sprites (their crops' margin to the runner-up near 0) is re-seeded from
    the sprite worst at its crops (two letters in one sprite: the highest mean cost)."""

    def _selection(self):
        # per sprite: crops, summed margin, summed cost; sprites 0 and 1 share a letter, sprite 3 draws two
        rows = [[200, 200 * 0.0005, 200 * 0.0006], [210, 210 * 0.0006, 210 * 0.0006],
                [150, 150 * 0.03, 150 * 0.0007], [160, 160 * 0.04, 160 * 0.0024],
                [100, 100 * 0.02, 100 * 0.0007], [120, 120 * 0.005, 120 * 0.0004],
                [130, 130 * 0.025, 130 * 0.0008], [90, 90 * 0.035, 90 * 0.0009]]
        return torch.tensor(rows, dtype=torch.float64)

    def test_finds_the_duplicate_and_the_merged_sprite(self):
        from pipeline.models.sprites.reassign import redundant_sprites, worst_explained
        why = redundant_sprites(self._selection(), 0.1, torch.ones(8, dtype=torch.bool))
        assert list(why) == [0] and "explained almost as well" in why[0]
        assert int(torch.argmax(worst_explained(self._selection()))) == 3

    def test_look_alikes_are_not_duplicates_and_unsettled_sprites_wait(self):
        from pipeline.models.sprites.reassign import redundant_sprites
        # sprite 5 (margin 0.005, a quarter of the median: l against i) is kept at ratio 0.1
        sel = self._selection()
        sel[0, 1] = sel[1, 1] = 1.0         # no duplicates left: margins 0.005 and 0.0048 per crop
        assert redundant_sprites(sel, 0.1, torch.ones(8, dtype=torch.bool)) == {}
        settled = torch.tensor([False, False, True, True, True, True, True, True])
        assert redundant_sprites(self._selection(), 0.1, settled) == {}

    def test_training_restarts_the_redundant_sprite_from_the_worst(self):
        from pipeline.models.sprites.reassign import reassign_unused
        model, cfg = _model("clustering", size=16, channels=1, sprites=8, transforms=["affine"], curriculum=[])
        opt = make_optimizer(model, cfg.train)
        usage = self._selection()[:, :1].t().long()
        moved = reassign_unused(model, opt, usage, threshold=0.2, redundant=0.1, selection=self._selection())
        assert [(r.sprite, r.source) for r in moved] == [(0, 3)]
        assert torch.allclose(model.prototypes[0], model.prototypes[3], atol=1e-3)

    def test_a_rarely_used_sprite_restarts_from_the_worst_not_the_commonest(self):
        from pipeline.models.sprites.reassign import reassign_unused
        model, cfg = _model("clustering", size=16, channels=1, sprites=8, transforms=["affine"], curriculum=[])
        opt = make_optimizer(model, cfg.train)
        sel = self._selection()
        sel[0, 1], sel[1, 1] = 200 * 0.01, 210 * 0.01       # no duplicates
        sel[4] = torch.tensor([2, 2 * 0.02, 2 * 0.0007], dtype=torch.float64)   # sprite 4 is rarely used
        usage = sel[:, :1].t().long()
        moved = reassign_unused(model, opt, usage, threshold=0.2, redundant=0.1, selection=sel)
        assert [(r.sprite, r.source, r.reason) for r in moved] == [(4, 3, "rarely used")]
        # without the selection statistics, the reference's rule: a copy of the most used sprite (1)
        moved = reassign_unused(model, opt, usage, threshold=0.2)
        assert [(r.sprite, r.source) for r in moved] == [(4, 1)]


class TestBackgroundPrototypes:
    def test_border_start_is_the_paper_colour(self):
        from pipeline.models.base import DataShape
        from pipeline.models.sprites.model import SpriteModel
        cfg = config_from_dict({"model": {"sprites": 2, "background_init": "border"}, "ingest": {"size": 16}},
                               preset="objects")
        crops = torch.full((20, 3, 16, 16), 200, dtype=torch.uint8)
        crops[:, :, 4:12, 4:12] = 20                          # a dark motif in the middle of pale paper
        model = SpriteModel.build(cfg, DataShape(3, 16, 20), crops)
        assert torch.allclose(model.backgrounds, torch.full_like(model.backgrounds, 200 / 255))

    def test_a_small_background_is_drawn_smooth_at_the_crop_size(self):
        model, _ = _model("objects", size=16, sprites=2, background_size=4, background_transforms=["color"])
        assert model.backgrounds.shape == (1, 3, 4, 4)
        with torch.no_grad():
            model.backgrounds.copy_(torch.rand(1, 3, 4, 4) * 0.8 + 0.1)
            drawn = model.render_backgrounds(model.encoder(torch.rand(2, 3, 16, 16)), False)
        assert drawn.shape == (1, 2, 3, 16, 16)
        up = torch.nn.functional.interpolate(model.backgrounds.detach(), size=16, mode="bilinear", align_corners=False)
        assert torch.allclose(drawn[0, 0], up[0], atol=1e-4)   # colour heads start at the identity

    def test_a_background_larger_than_the_crops_is_refused(self):
        from pipeline.errors import SpritesError
        with pytest.raises(SpritesError, match="model.background_size = 32 is larger than the crops"):
            _model("objects", size=16, background_size=32)


def test_mask_penalty_adds_the_mean_opacity_to_the_loss():
    base, _ = _model("objects", sprites=3, mask_noise=0.0, mask_penalty=0.0)
    pen, _ = _model("objects", sprites=3, mask_noise=0.0, mask_penalty=0.01)
    pen.load_state_dict(base.state_dict())
    x = torch.rand(4, 3, 16, 16)
    loss0, choice, bkg = base(x)
    loss1, _, _ = pen(x)
    features = base.encoder(x)
    _, alphas, _ = base.render_chosen(features, choice, torch.zeros_like(choice), True, None, False)
    assert loss1.item() == pytest.approx(loss0.item() + 0.01 * alphas.mean().item(), rel=1e-5)
