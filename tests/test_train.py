"""The training loop: the loss goes down, checkpoints resume to the same weights."""

import copy

import h5py
import numpy as np
import pytest
import torch

from pipeline.core.config import config_from_dict
from pipeline.models.sprites.model import SpriteModel
from pipeline.models.state_io import load_tree, save_tree
from pipeline.models.fit import TrainState, fit, make_optimizer
from pipeline.models.sprites.training import SETTLE


def _setup(epochs=2, reassign_every=3, **model):
    cfg = config_from_dict({"model": {"sprites": 3, "transforms": ["color", "affine"], "curriculum": [0, 1], **model},
                            "ingest": {"size": 16, "channels": 1},
                            "train": {"epochs": epochs, "batch_size": 8, "reassign_every": reassign_every,
                                      "checkpoint_minutes": 0.0, "seed": 3}}, preset="clustering")
    g = torch.Generator().manual_seed(0)
    crops = (torch.rand(48, 1, 16, 16, generator=g) * 255).to(torch.uint8)
    torch.manual_seed(0)
    model = SpriteModel(cfg.model, 1, 16, init_images=crops[:3].float() / 255)
    return cfg, crops, model, make_optimizer(model, cfg.train)


def test_loss_decreases():
    cfg, crops, model, opt = _setup(epochs=6)
    state = fit(model, crops, cfg.train, opt, TrainState(), torch.device("cpu"), progress=False)
    losses = state.history["loss"]
    assert state.step == 6 * (48 // 8) and losses[-1] < losses[0]


def test_resume_gives_the_same_weights(tmp_path):
    cfg, crops, model, opt = _setup()
    fit(model, crops, cfg.train, opt, TrainState(), torch.device("cpu"), progress=False)
    expected = copy.deepcopy(model.state_dict())

    # the same run, interrupted (Ctrl-C) at the 5th checkpoint, saved to HDF5, then resumed
    cfg, crops, model, opt = _setup()
    path = tmp_path / "checkpoint.h5"
    calls = []

    def save(state):
        with h5py.File(path, "w") as f:
            save_tree(f.create_group("model"), model.state_dict())
            save_tree(f.create_group("optimizer"), opt.state_dict())
            save_tree(f.create_group("state"), state.__dict__)
        calls.append(state.step)
        if len(calls) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(model, crops, cfg.train, opt, TrainState(), torch.device("cpu"), save=save, progress=False)
    assert 0 < calls[-1] < 2 * (48 // 8)

    cfg, crops, model, opt = _setup()  # a fresh process would rebuild everything
    with h5py.File(path, "r") as f:
        model.load_state_dict(load_tree(f["model"]))
        opt.load_state_dict(load_tree(f["optimizer"]))
        state = TrainState(**load_tree(f["state"]))
    fit(model, crops, cfg.train, opt, state, torch.device("cpu"), progress=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_plateau_switches_the_next_transformation_on_early():
    # affine is due at epoch 1000; nothing learns (learning rates 0), so the loss is flat at once
    cfg, crops, model, opt = _setup(epochs=12, curriculum=[0, 1000], curriculum_patience=1.0)
    for group in opt.param_groups:
        group["lr"] = 0.0
    state = fit(model, crops, cfg.train, opt, TrainState(), torch.device("cpu"), progress=False, log=lambda m: None)
    assert model.train_state.curriculum_early == 2 and model.sprite_heads.active.tolist() == [1, 1]
    assert model.train_state.curriculum_since == 2 * (48 // 8)  # two 1-epoch windows after the start


def test_without_patience_the_curriculum_goes_by_epoch():
    cfg, crops, model, opt = _setup(epochs=12, curriculum=[0, 1000])
    for group in opt.param_groups:
        group["lr"] = 0.0
    state = fit(model, crops, cfg.train, opt, TrainState(), torch.device("cpu"), progress=False)
    assert model.train_state.curriculum_early == 0 and model.sprite_heads.active.tolist() == [1, 0]


def _frozen_twins():
    """Sprites 0 and 1 draw the same square, 2 a bar; learning rates 0, so nothing moves."""
    cfg, crops, model, opt = _setup(epochs=4, reassign_every=1, transparent=True, reassign_threshold=0.0,
                                    reassign_duplicate=0.9)
    with torch.no_grad():
        model.masks[:] = -1.0
        model.masks[:2, :, 4:10, 4:10] = 2.0
        model.masks[2, :, 2:14, 7:9] = 2.0
    for group in opt.param_groups:
        group["lr"] = 0.0
    return cfg, crops, model, opt


def test_duplicate_sprites_are_split_then_left_to_settle():
    # sprites 0 and 1 draw the same square; nothing learns (learning rates 0), so a re-seeded copy
    # stays its source's twin, and is judged again only after SETTLE checks
    cfg, crops, model, opt = _frozen_twins()
    state = fit(model, crops, cfg.train, opt, TrainState(), torch.device("cpu"), progress=False)
    assert state.step == 24 and SETTLE == 20
    # step 1: a square becomes a copy of the bar (sprite 2); step 21: one of the two bars becomes
    # a copy of the square left
    assert len(model.train_state.reseeds) == 2 and sorted(model.train_state.touched) == [1, 21, 21]
    (step1, _, square, bar, _), (step2, _, second_bar, square_left, _) = model.train_state.reseeds
    assert (step1, bar, step2) == (1, 2, 21) and square in (0, 1)
    assert second_bar in (square, 2) and square_left == 1 - square
    assert all(reason.startswith("it drew the same shape as sprite") for *_, reason in model.train_state.reseeds)
    squares = [bool((model.masks[k, 0, 4:10, 4:10] > 0).all()) for k in range(3)]
    assert sum(squares) == 2


def test_no_reseeding_after_the_last_milestone():
    # the same twins as above; the learning rates step down at epoch 2 of 4, so the pair found at
    # step 1 is split, and the one found again after SETTLE checks (step 21 > 12) is left alone
    cfg, crops, model, opt = _frozen_twins()
    cfg.train.milestones = [2]
    state = fit(model, crops, cfg.train, opt, TrainState(), torch.device("cpu"), progress=False)
    assert state.step == 24 and [r[0] for r in model.train_state.reseeds] == [1]


def test_snapshots_follow_the_schedule_and_end_with_the_trained_sprites():
    cfg, crops, model, opt = _setup(epochs=20)
    fit(model, crops, cfg.train, opt, TrainState(), torch.device("cpu"), progress=False)
    arrays = model.training_arrays()
    epochs = arrays["snapshots/epoch"]
    assert len(epochs) == 11 and np.all(np.diff(epochs) > 0) and epochs[-1] == 20   # a tenth each, and the end
    assert arrays["snapshots/colours"].shape == (11, 3, 1, 16, 16) and arrays["snapshots/colours"].dtype == np.uint8
    assert np.array_equal(arrays["snapshots/colours"][-1], model.prototype_bank().colours)
    assert not np.array_equal(arrays["snapshots/colours"][0], arrays["snapshots/colours"][-1])
