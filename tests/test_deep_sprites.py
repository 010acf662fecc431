"""Deep sprites (the analysis paper): the MLP generator, predicted selection, its regularisers and
recipes, and the layers benchmark."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from pipeline.core.config import config_from_dict
from pipeline.core.project import init_project
from pipeline.errors import SpritesError
from pipeline.models.base import DataShape
from pipeline.models.sprites.compositor import composite, composite_premultiplied
from pipeline.models.sprites.generator import MLPGenerator
from pipeline.models.sprites.model import SpriteModel, gaussian_masks
from pipeline.models.sprites.predicted import (WARMUP_WEIGHT, SelectionHead, bin_loss, empty_loss, freq_loss, gumbel_softmax,
                                               mix_layers, straight_through, top_two)
from pipeline.models.sprites.reassign import restart_sprite
from tests.report_fixtures import quiet_run


def _config(preset="scenes", **model):
    return config_from_dict({"ingest": {"size": 16, "channels": 3},
                             "model": {"generator": "mlp", "selection": "predicted", "sprites": 3, **model}}, preset)


def _model(preset="scenes", crops=None, **model) -> SpriteModel:
    torch.manual_seed(0)
    cfg = _config(preset, **model)
    crops = crops if crops is not None else (torch.rand(40, 3, 16, 16) * 255).to(torch.uint8)
    return SpriteModel.build(cfg, DataShape(channels=3, size=16), crops)


# ------------------------------------------------------------------------------------ generator
def test_the_generator_first_output_is_its_initial_image():
    torch.manual_seed(0)
    same = torch.full((4, 3, 8, 8), 0.9)
    turned = gaussian_masks(4, 8, 2.0, 1.25, turned=True)           # a different image per sprite
    out = MLPGenerator({"colours": same, "masks": turned}, 4)()
    assert torch.allclose(out["colours"], same, atol=1e-5)
    assert torch.allclose(out["masks"], turned, atol=1e-4)


def test_mlp_sprites_start_as_pixel_sprites_and_learn_through_the_latents():
    crops = (torch.rand(40, 3, 16, 16) * 255).to(torch.uint8)
    cfg = config_from_dict({"ingest": {"size": 16, "channels": 3}, "model": {"sprites": 3, "sprite_init": "samples"}}, "objects")
    torch.manual_seed(0)
    pixels = SpriteModel.build(cfg, DataShape(channels=3, size=16), crops)
    mlp_cfg = config_from_dict({"ingest": {"size": 16, "channels": 3},
                                "model": {"sprites": 3, "sprite_init": "samples", "generator": "mlp"}}, "objects")
    torch.manual_seed(0)
    mlp = SpriteModel.build(mlp_cfg, DataShape(channels=3, size=16), crops)
    for a, b in zip(pixels.sprite_images(), mlp.sprite_images()):
        assert torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(pixels.background_images(), mlp.background_images(), atol=1e-4)
    assert mlp.prototypes is None and len(mlp.sprite_rows()) == 1      # one latent row per sprite
    loss = mlp.sprite_images()[0].sum()
    loss.backward()
    assert mlp.sprite_generator.latents.grad is not None
    assert mlp.sprite_generator.decoders["colours"].out.weight.grad.abs().sum() > 0


def test_reseeding_an_mlp_sprite_copies_its_latent():
    model = _model("clustering", reassign_redundant=0.0)
    optimizer = torch.optim.Adam(model.parameters())
    restart_sprite(model, optimizer, 0, 2)
    colours, _ = model.sprite_images()
    assert torch.allclose(colours[0], colours[2], atol=1e-3)
    w = model.selection_head.linear.weight
    assert torch.equal(w[0], w[2])


# ------------------------------------------------------------------------------------ selection
def test_one_hot_probabilities_composite_as_ordinary_alpha_compositing():
    g = torch.Generator().manual_seed(0)
    L, K, B, C, H = 3, 4, 2, 3, 5
    layers, alphas = torch.rand(L, K, B, C, H, H, generator=g), torch.rand(L, K, B, 1, H, H, generator=g)
    background = torch.rand(B, C, H, H, generator=g)
    choice = torch.tensor([[0, 3, 4], [2, 1, 1]])                    # 4 = the empty sprite
    p = torch.nn.functional.one_hot(choice, K + 1).float()           # (B, L, K + 1)
    coloured, alpha = mix_layers(p, layers, alphas)
    mixed = composite_premultiplied(coloured, alpha, None, background)
    keep = choice.t() < K
    k = choice.t().clamp(max=K - 1)
    ll, bb = torch.arange(L)[:, None], torch.arange(B)[None, :]
    chosen = layers[ll, k, bb] * keep[..., None, None, None]
    chosen_alpha = alphas[ll, k, bb] * keep[..., None, None, None]
    assert torch.allclose(mixed, composite(chosen, chosen_alpha, None, background), atol=1e-6)


def test_freq_and_bin_losses_match_hand_computed_values():
    p = torch.tensor([[[0.7, 0.2, 0.1]], [[0.5, 0.5, 0.0]]])      # (B=2, L=1, K'=3), no empty
    # the batch mean is (0.6, 0.35, 0.05), summing to 1; θ = 0.3 / 3 = 0.1
    threshold = 0.3
    assert freq_loss(p, threshold, 3).item() == pytest.approx(1 - (0.1 + 0.1 + 0.05))
    q = p.clamp(1e-5, 1 - 1e-5)
    expected_bin = float((6 * q * (1 - q)).mean())
    assert bin_loss(p).item() == pytest.approx(expected_bin)
    assert bin_loss(torch.tensor([0.0, 1.0])).item() == pytest.approx(0.0, abs=1e-3)
    assert bin_loss(torch.tensor([0.5])).item() == pytest.approx(1.5)
    # two layers: each layer's probabilities relative to its largest before the shares
    p2 = torch.tensor([[[0.5, 0.25], [0.2, 0.8]]])                  # (B=1, L=2, K=2)
    shares = torch.tensor([1.0, 0.5, 0.25, 1.0]) / 2.75
    assert freq_loss(p2, 1.0, 2).item() == pytest.approx(1 - float(torch.clamp(shares, max=0.5).sum()))
    # the empty term: real sprites' probability over all L·K' entries
    pe = torch.tensor([[[0.6, 0.1, 0.3]]])
    assert empty_loss(pe, 2).item() == pytest.approx(0.7 / 3)


def test_gumbel_sampling_is_seeded_and_reproducible():
    logits = torch.randn(4, 2, 5)
    a = gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(3))
    b = gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(3))
    c = gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.allclose(a.sum(-1), torch.ones(4, 2))
    torch.manual_seed(7)
    d = gumbel_softmax(logits, 0.5)
    torch.manual_seed(7)
    assert torch.equal(d, gumbel_softmax(logits, 0.5))


def test_the_learned_temperature_starts_at_tau_and_learns():
    head = SelectionHead(8, 2, 4, tau=0.7, learn_tau=True)
    assert head.temperature().item() == pytest.approx(0.7, rel=1e-5)
    probabilities = gumbel_softmax(head(torch.randn(3, 8)), head.temperature(), torch.Generator().manual_seed(0))
    (probabilities[..., 0] ** 2).sum().backward()
    assert head.theta.grad is not None and head.theta.grad.abs() > 0
    assert SelectionHead(8, 2, 4, tau=0.7, learn_tau=False).theta is None


def test_the_empty_sprite_is_never_chosen_while_sprites_are_frozen():
    model = _model("scenes", layers=4)          # from 4 layers the scenes preset has an empty sprite
    model.train()
    p = model.probabilities(torch.randn(5, model.encoder.features), frozen=True)
    assert p.shape == (5, 4, 4) and torch.all(p[..., -1] == 0)


def test_straight_through_is_one_hot_forward_and_soft_backward():
    logits = torch.randn(4, 2, 5, requires_grad=True)
    weights = torch.randn(4, 2, 5)
    soft = gumbel_softmax(logits, 0.8, torch.Generator().manual_seed(1))
    hard = straight_through(soft)
    assert torch.equal(hard.detach(), torch.nn.functional.one_hot(soft.argmax(-1), 5).float())
    (g_hard,) = torch.autograd.grad((weights * hard).sum(), logits)
    soft = gumbel_softmax(logits, 0.8, torch.Generator().manual_seed(1))
    (g_soft,) = torch.autograd.grad((weights * soft).sum(), logits)
    assert torch.allclose(g_hard, g_soft)
    model = _model("scenes", layers=2, straight_through=True)
    model.train()
    p = model.probabilities(torch.randn(3, model.encoder.features))
    assert torch.all((p == 0) | (p == 1)) and torch.all(p.sum(-1) == 1)
    model.eval()                                  # decompose: the softmax, soft as ever
    q = model.probabilities(torch.randn(3, model.encoder.features))
    assert torch.any((q > 0) & (q < 1))


def test_warmup_chooses_by_min_loss_and_teaches_the_head_then_hands_over():
    from pipeline.models.base import Clock
    model = _model("scenes", layers=2, selection_warmup=2.0, mask_noise=0.0)
    cfg = config_from_dict({"ingest": {"size": 16, "channels": 3}, "train": {"freeze_sprites": 0}}, "scenes").train
    model.start_training(cfg, {})
    model.train()
    x = torch.rand(6, 3, 16, 16)
    model.training_step(x, Clock(0, 0, 1.0, 10))
    assert model.warming
    model.eval()              # batch norm's running statistics: the same features in both passes
    features = model.encoder(x)
    with torch.no_grad():     # the choice is the greedy min-loss search's
        rendered = model.render_all(features, False, None, False)
        candidates = model.choose(x, rendered, model.render_backgrounds(features, False), model.occlusion(features), False)
        greedy = model.split_candidates(candidates[0])[0]
    loss, choice, _ = model(x)
    assert torch.equal(choice, greedy)
    head = model.selection_head.linear.weight
    (g,) = torch.autograd.grad(loss, head)          # the head learns those choices
    expected = WARMUP_WEIGHT * model.choice_loss(features, choice, False)
    (g_ce,) = torch.autograd.grad(expected, head)
    assert g.abs().sum() > 0 and torch.allclose(g, g_ce, atol=1e-7)
    model.train()
    model.training_step(x, Clock(30, 3, 2.5, 10))   # past the warm-up: Gumbel-softmax, the paper's
    assert not model.warming
    loss = model(x)[0]
    (g,) = torch.autograd.grad(loss, head)
    assert g.abs().sum() > 0


def test_frozen_colours_leave_the_colours_and_let_the_masks_learn():
    from pipeline.models.base import Clock
    model = _model("scenes", layers=2, mask_noise=0.0)
    cfg = config_from_dict({"ingest": {"size": 16, "channels": 3}, "train": {"freeze_sprites": 0, "freeze_colours": 2}},
                           "scenes").train
    model.start_training(cfg, {})
    model.train()
    x = torch.rand(6, 3, 16, 16)
    colours, masks = (model.sprite_generator.decoders[n].out.weight for n in ("colours", "masks"))
    latents = model.sprite_generator.latents
    model.training_step(x, Clock(0, 0, 1.0, 10))                # epoch 1 of the 2 frozen ones
    assert model.colours_frozen
    g_colours, g_masks, g_latents = torch.autograd.grad(model(x)[0], (colours, masks, latents), allow_unused=True)
    assert g_colours is None                                    # no gradient reaches the colour decoder
    assert g_masks.abs().sum() > 0 and g_latents.abs().sum() > 0     # the masks (and latents) learn
    model.training_step(x, Clock(30, 3, 2.5, 10))               # past them: the colours learn too
    assert not model.colours_frozen
    (g_colours,) = torch.autograd.grad(model(x)[0], (colours,))
    assert g_colours.abs().sum() > 0


def test_top_two_gives_choice_runner_up_and_probability_gap():
    choice, runner_up, gap = top_two(torch.tensor([[[0.1, 0.6, 0.3]], [[0.5, 0.1, 0.4]]]))
    assert choice.tolist() == [[1], [0]] and runner_up.tolist() == [[2], [2]]
    assert gap.flatten().tolist() == pytest.approx([0.3, 0.1])


def test_the_expected_loss_is_the_probability_weighted_error():
    model = _model("objects", predicted_loss="expected", mask_noise=0.0, mask_penalty=0.0)
    model.eval()    # softmax, no Gumbel noise: the weights are known
    x = torch.rand(4, 3, 16, 16)
    loss, _ = model._predicted_loss(x, model.encoder(x), None, frozen=False)
    features = model.encoder(x)
    p = model.probabilities(features)[:, 0]                         # (B, K)
    errors = []
    for k in range(model.K):
        layers, alphas, _ = model.render_chosen(features, torch.full((4, 1), k), torch.zeros(4, 1, dtype=torch.long),
                                                False, None, False)
        recon = composite(layers, alphas, None, model.render_backgrounds(features, False)[0])
        errors.append(((recon - x) ** 2).flatten(1).mean(1))
    expected = (p * torch.stack(errors, 1)).sum(1).mean()
    regularisers = model.cfg.freq_weight * freq_loss(model.probabilities(features), model.cfg.freq_threshold, model.K) \
        + model.cfg.bin_weight * bin_loss(model.probabilities(features))
    assert loss.item() == pytest.approx((expected + regularisers).item(), rel=1e-4)


def test_predicted_selection_trains_and_decomposes():
    model = _model("scenes", layers=4)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(6, 3, 16, 16)
    for _ in range(2):
        optimizer.zero_grad()
        loss, choice, _ = model(x)
        loss.backward()
        optimizer.step()
    assert choice.shape == (6, 4) and int(choice.max()) <= model.K
    model.eval()
    record = model.decompose_batch(x)
    assert record.sprite.shape == (6, 4)
    assert torch.all((record.margin >= 0) & (record.margin <= 1))                 # a probability gap
    assert torch.all(record.layer_margin <= 1)


# ------------------------------------------------------------------------------------- recipes
def test_the_papers_recipes_follow_the_two_keys():
    ours_c = _config("clustering")
    assert (ours_c.model.freq_weight, ours_c.model.bin_weight, ours_c.model.empty_weight) == (1e-2, 1e-3, 0.0)
    assert ours_c.model.reassign_redundant == 0 and ours_c.train.reassign_every == 0
    assert ours_c.train.sprite_lr == ours_c.train.lr          # the generator learns at the heads' rate
    assert ours_c.model.learn_tau
    tetro = _config("scenes", layers=3)
    assert tetro.model.learn_tau and tetro.model.bin_weight == 1e-4 and tetro.model.selection_downsample == 1
    assert tetro.train.freeze_colours == tetro.train.epochs / 2     # the reference's 600 of 1220 epochs
    longer = config_from_dict({"ingest": {"size": 16}, "train": {"epochs": 300},
                               "model": {"generator": "mlp", "selection": "predicted", "sprites": 3, "layers": 3}}, "scenes")
    assert longer.train.freeze_colours == 150
    crowded = _config("scenes", layers=5)
    assert not crowded.model.learn_tau and crowded.model.empty_weight == 1e-4 and crowded.model.greedy_iterations == 1
    assert crowded.train.freeze_colours == 0 and ours_c.train.freeze_colours == 0
    # the reference's Multi-dSprites schedule (similarity per sprite from epoch 40, sprites frozen 20, of 1020)
    assert crowded.model.transforms == ["similarity"] and crowded.model.curriculum == [round(100 * 40 / 1020, 1)]
    assert crowded.train.freeze_sprites == round(100 * 20 / 1020, 1) and tetro.model.transforms == []
    own = _config("scenes", layers=5, transforms=[])        # the user's transformations: not the recipe's curriculum
    assert own.model.transforms == [] and own.model.curriculum == []
    given = _config("scenes", layers=3, bin_weight=0.5)
    assert given.model.bin_weight == 0.5                       # what the user sets is kept
    plain = config_from_dict({"ingest": {"size": 16}, "model": {"sprites": 3}}, "clustering")
    assert plain.model.freq_weight == 0 and plain.train.reassign_every == 50    # min-loss unchanged


@pytest.mark.parametrize("key, value", [("rotations", 4), ("selection_downsample", 2), ("greedy_iterations", 3),
                                        ("reassign_redundant", 0.1)])
def test_min_loss_options_are_refused_with_predicted_selection(key, value):
    with pytest.raises(SpritesError, match=f"model.{key} = {value} cannot be used with model.selection = predicted"):
        _model("scenes", **{key: value})


def test_the_expected_loss_is_refused_on_several_layers():
    with pytest.raises(SpritesError, match="model.predicted_loss = expected is for one layer"):
        _model("scenes", layers=2, predicted_loss="expected")


def test_init_writes_the_recipe_and_the_pipeline_runs_with_it(tmp_path, tiny_collection):
    project = init_project(tmp_path / "deep", images=str(tiny_collection), preset="clustering",
                           sets=["model.generator=mlp", "model.selection=predicted", "ingest.size=16",
                                 "model.sprites=3", "train.epochs=2", "train.batch_size=4"])
    text = (project.root / "sprites.toml").read_text(encoding="utf-8")
    assert 'selection = "predicted"' in text and "freq_weight = 0.01" in text and "reassign_every = 0" in text
    quiet_run(project)
    with open(project.exports_dir / "assignments.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and all(0 <= float(r["margin"]) <= 1 for r in rows)
    summary = (project.root / "report" / "index.html").read_text(encoding="utf-8")
    assert "an MLP generator from a latent per sprite" in summary and "predicted by a linear head" in summary


# ----------------------------------------------------------------------------------- benchmark
def test_the_layers_benchmark_times_every_selection():
    from pipeline.evaluation.scaling import layers_bench
    lines = []
    result = layers_bench((1, 2, 5), threads=1, batch=2, steps=1, warmup=0, log=lines.append)
    rows = {r["layers"]: r for r in result["rows"]}
    assert rows[5]["exhaustive"] is None                          # 7^5 combinations: beyond the search's limit
    assert all(rows[1][m] > 0 for m in ("exhaustive", "greedy", "greedy ¼", "predicted"))
    assert set(result["predicted_over_greedy"]) == {1, 2, 5}
    assert any("predicted / greedy" in line for line in lines)
    assert not math.isnan(result["predicted_over_greedy"][5])
    # the line through (2, t2) and (5, t5): exact for two points
    t2, t5 = rows[2]["predicted"], rows[5]["predicted"]
    assert math.isclose(result["predicted_per_layer_s"], (t5 - t2) / 3, rel_tol=1e-6)
    assert math.isclose(result["predicted_fixed_s"] + 2 * result["predicted_per_layer_s"], t2, rel_tol=1e-6)
    assert any("per layer" in line for line in lines)


@pytest.mark.parametrize("preset, layers", [("clustering", 1), ("objects", 1), ("scenes", 2), ("scenes", 4)])
def test_the_mlp_generator_trains_with_every_preset_and_min_loss_selection(preset, layers):
    torch.manual_seed(0)
    # (no empty sprite: on noise the search may leave every layer empty, and nothing would move)
    cfg = config_from_dict({"ingest": {"size": 16, "channels": 3},
                            "model": {"generator": "mlp", "sprites": 3, "layers": layers, "empty_sprite": False}}, preset)
    model = SpriteModel.build(cfg, DataShape(channels=3, size=16), (torch.rand(20, 3, 16, 16) * 255).to(torch.uint8))
    model.train()
    before = model.sprite_images()[0].detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss, choice, _ = model(torch.rand(4, 3, 16, 16))
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item()) and choice.shape == (4, layers)
    assert not torch.allclose(model.sprite_images()[0], before)        # the sprites moved through the generator
    model.eval()
    assert model.decompose_batch(torch.rand(2, 3, 16, 16)).sprite.shape == (2, layers)
