"""Tests for pipeline.evaluation.metrics: hand-worked cases (arithmetic in the comments) and brute-force checks."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest

from pipeline.errors import SpritesError
from pipeline.evaluation.metrics import (
    ari,
    ari_all,
    ari_fg,
    ari_per_image,
    cluster_mapping,
    clustering_accuracy,
    clustering_scores,
    confusion,
    mask_scores,
    nmi,
    semantic_scores,
)

# Any numpy RuntimeWarning (0/0, log 0, ...) fails the test.
pytestmark = pytest.mark.filterwarnings("error")


# ---------------------------------------------------------------------------------------------
# independent reference implementations (slow, obvious)
# ---------------------------------------------------------------------------------------------

def brute_ari(true, pred):
    """ARI from explicit pair counting over all i < j (Hubert & Arabie via the pair table)."""
    n = len(true)
    same_t = same_p = both = 0
    for i, j in itertools.combinations(range(n), 2):
        st = true[i] == true[j]
        sp = pred[i] == pred[j]
        same_t += st
        same_p += sp
        both += st and sp
    pairs = n * (n - 1) / 2
    expected = same_t * same_p / pairs
    den = 0.5 * (same_t + same_p) - expected
    return 1.0 if den == 0 else (both - expected) / den


def loop_nmi(true, pred):
    """NMI from the joint distribution with explicit loops over label values."""
    n = len(true)
    classes = sorted(set(true))
    clusters = sorted(set(pred))
    p_t = {c: sum(1 for t in true if t == c) / n for c in classes}
    p_p = {k: sum(1 for q in pred if q == k) / n for k in clusters}
    mi = 0.0
    for c in classes:
        for k in clusters:
            p_ck = sum(1 for t, q in zip(true, pred) if t == c and q == k) / n
            if p_ck > 0:
                mi += p_ck * math.log(p_ck / (p_t[c] * p_p[k]))
    h_t = -sum(v * math.log(v) for v in p_t.values())
    h_p = -sum(v * math.log(v) for v in p_p.values())
    return mi / ((h_t + h_p) / 2)


# ---------------------------------------------------------------------------------------------
# confusion / clustering
# ---------------------------------------------------------------------------------------------

def test_confusion_counts_and_shape():
    m = confusion([0, 0, 1, 2], [1, 1, 0, 1], n_true=4, n_pred=3)
    assert m.dtype == np.int64
    assert m.shape == (4, 3)
    # rows = GT, columns = prediction
    assert m.tolist() == [[0, 2, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]]
    with pytest.raises(SpritesError):
        confusion([0, -1], [0, 0])
    with pytest.raises(SpritesError):
        confusion([0, 3], [0, 0], n_true=2)


def test_perfect_clustering_under_permutation():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 5, size=500)
    perm = np.array([3, 0, 4, 1, 2])
    pred = perm[true]
    assert clustering_accuracy(true, pred) == 1.0
    assert nmi(true, pred) == pytest.approx(1.0, abs=1e-12)
    assert ari(true, pred) == pytest.approx(1.0, abs=1e-12)
    mapping = cluster_mapping(true, pred)
    assert mapping == {int(perm[c]): c for c in range(5)}
    s = clustering_scores(true, pred)
    assert s["acc"] == 1.0 and s["avg_acc"] == 1.0 and s["n"] == 500
    assert s["nmi"] == pytest.approx(1.0) and s["ari"] == pytest.approx(1.0)


def test_ari_hand_computed_six_elements():
    true = [0, 0, 0, 1, 1, 1]
    pred = [0, 0, 1, 1, 2, 2]
    # contingency n_ij: class 0 -> [2, 1, 0], class 1 -> [0, 1, 2]
    # S_ij = C(2,2) + C(1,2) + C(1,2) + C(2,2) = 1 + 0 + 0 + 1 = 2
    # a = [3, 3] -> S_a = 3 + 3 = 6 ; b = [2, 2, 2] -> S_b = 1 + 1 + 1 = 3 ; C(6,2) = 15
    # E = S_a * S_b / C(6,2) = 18 / 15 = 1.2
    # ARI = (2 - 1.2) / (0.5 * (6 + 3) - 1.2) = 0.8 / 3.3 = 8 / 33 = 0.242424...
    assert ari(true, pred) == pytest.approx(8 / 33, abs=1e-12)
    assert brute_ari(true, pred) == pytest.approx(8 / 33, abs=1e-12)
    # symmetric in its arguments
    assert ari(pred, true) == pytest.approx(8 / 33, abs=1e-12)


def test_ari_matches_pair_counting_and_is_permutation_invariant():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(2, 40))
        true = rng.integers(0, 4, size=n)
        pred = rng.integers(0, 5, size=n)
        ref = brute_ari(list(true), list(pred))
        assert ari(true, pred) == pytest.approx(ref, abs=1e-12)
        # relabel both sides with arbitrary (even negative / sparse) values
        perm_t = rng.permutation(4) * 7 - 3
        perm_p = rng.permutation(5) + 100
        assert ari(perm_t[true], perm_p[pred]) == pytest.approx(ref, abs=1e-12)


def test_ari_random_labels_near_zero():
    rng = np.random.default_rng(2)
    true = rng.integers(0, 10, size=5000)
    pred = rng.integers(0, 10, size=5000)
    assert abs(ari(true, pred)) < 0.05
    assert nmi(true, pred) < 0.05


def test_many_to_one_accuracy_with_more_clusters_than_classes():
    # 3 clusters, 2 classes -> majority mapping: clusters 0 and 1 -> class 0, cluster 2 -> class 1
    true = [0, 0, 0, 1, 1, 1]
    pred = [0, 0, 1, 2, 2, 2]
    assert clustering_accuracy(true, pred) == 1.0
    assert cluster_mapping(true, pred) == {0: 0, 1: 0, 2: 1}
    # with an error: M = [[1, 2, 0], [0, 1, 3]] -> c0 -> 0, c1 -> 0, c2 -> 1: (1 + 2 + 3) / 7
    true = [0, 0, 0, 1, 1, 1, 1]
    pred = [0, 1, 1, 2, 2, 2, 1]
    assert clustering_accuracy(true, pred) == pytest.approx(6 / 7)


def test_hungarian_when_counts_equal_majority_otherwise():
    true = [0, 0, 0, 0, 0, 1, 1]
    pred = [0, 0, 0, 1, 1, 1, 0]
    # M = [[3, 2], [1, 1]]. 2 clusters == 2 classes -> one-to-one Hungarian:
    #   c0 -> 0, c1 -> 1 gives 3 + 1 = 4 ; c0 -> 1, c1 -> 0 gives 1 + 2 = 3  => acc = 4/7
    assert clustering_accuracy(true, pred) == pytest.approx(4 / 7)
    assert cluster_mapping(true, pred) == {0: 0, 1: 1}
    # declared K = 3 (cluster 2 empty) != 2 classes -> majority: both clusters -> class 0 => 5/7
    assert clustering_accuracy(true, pred, n_clusters=3) == pytest.approx(5 / 7)
    # avg_acc on the Hungarian-mapped matrix: class 0: 3/5, class 1: 1/2 -> 0.55
    assert clustering_scores(true, pred)["avg_acc"] == pytest.approx(0.55)


def test_nmi_known_value_and_loop_formula():
    true = [0, 0, 0, 1, 1, 1]
    pred = [0, 0, 1, 1, 2, 2]
    # p_ij = [[2/6, 1/6, 0], [0, 1/6, 2/6]], p(Y) = [1/2, 1/2], p(Ŷ) = [1/3, 1/3, 1/3]
    # I = 2 * (1/3) log((1/3)/(1/6)) + 2 * (1/6) log((1/6)/(1/6)) = (2/3) log 2
    # H(Y) = log 2, H(Ŷ) = log 3  ->  NMI = (2/3) log 2 / ((log 2 + log 3) / 2) = (4/3) log 2 / log 6
    closed = (4 / 3) * math.log(2) / math.log(6)  # = 0.515803...
    assert nmi(true, pred) == pytest.approx(closed, abs=1e-12)
    assert loop_nmi(true, pred) == pytest.approx(closed, abs=1e-12)
    rng = np.random.default_rng(3)
    for _ in range(10):
        t = list(rng.integers(0, 3, size=30))
        p = list(rng.integers(0, 4, size=30))
        assert nmi(t, p) == pytest.approx(loop_nmi(t, p), abs=1e-12)
        assert nmi(t, p) == pytest.approx(nmi(p, t), abs=1e-12)


def test_clustering_degenerate_cases_no_nan():
    # both constant (different label values): identical partitions
    assert nmi([0, 0, 0], [5, 5, 5]) == 1.0
    assert ari([0, 0, 0], [5, 5, 5]) == 1.0
    assert clustering_accuracy([0, 0, 0], [0, 0, 0]) == 1.0
    # one constant, the other not: no information, ARI exactly 0
    assert nmi([0, 0, 0, 0], [0, 1, 0, 1]) == 0.0
    assert ari([0, 0, 0, 0], [0, 1, 0, 1]) == 0.0
    # all singletons on both sides: the other degenerate case of §13.3
    assert ari([0, 1, 2], [2, 0, 1]) == 1.0
    # one sample, and no sample
    assert ari([3], [4]) == 1.0 and nmi([3], [4]) == 1.0
    assert ari([], []) == 1.0
    s = clustering_scores([1, 1, 1], [0, 0, 0])
    assert all(np.isfinite(s[k]) for k in ("acc", "avg_acc", "nmi", "ari"))
    with pytest.raises(SpritesError):
        clustering_accuracy([], [])


# ---------------------------------------------------------------------------------------------
# instance segmentation
# ---------------------------------------------------------------------------------------------

def _scene(rng, h=8, w=8):
    """GT instance map: background 0 with two rectangles 1 and 2."""
    t = np.zeros((h, w), dtype=np.int64)
    t[1:4, 1:5] = 1
    t[5:8, 2:7] = 2
    return t


def test_ari_fg_ignores_background_pixels():
    rng = np.random.default_rng(4)
    true = np.stack([_scene(rng), _scene(rng).T])
    # correct (relabelled) on the foreground, garbage on the background
    pred = np.where(true == 1, 3, np.where(true == 2, 1, 0))
    pred = np.where(true == 0, rng.integers(0, 4, size=true.shape), pred)
    assert ari_fg(true, pred) == 1.0
    assert ari_all(true, pred) < 1.0
    # a single (H, W) image works too
    assert ari_fg(true[0], pred[0]) == 1.0
    # and matches the plain ARI of the foreground pixels
    fg = true[0] > 0
    pred_bad = pred[0].copy()
    pred_bad[2, 2] = 1  # one foreground pixel of object 1 now labelled like object 2
    assert ari_fg(true[0], pred_bad) == pytest.approx(ari(true[0][fg], pred_bad[fg]))
    assert ari_all(true[0], pred_bad) == pytest.approx(ari(true[0].ravel(), pred_bad.ravel()))


def test_ari_per_image_mean_and_empty_foreground_skipped():
    rng = np.random.default_rng(5)
    t0 = _scene(rng)
    p0 = rng.integers(0, 3, size=t0.shape)
    empty = np.zeros_like(t0)  # no foreground at all
    true = np.stack([t0, empty, t0])
    pred = np.stack([p0, rng.integers(0, 3, size=t0.shape), t0])
    vals, scored = ari_per_image(true, pred, with_bkg=False)
    assert scored.tolist() == [True, False, True]
    fg = t0 > 0
    expected = (ari(t0[fg], p0[fg]) + 1.0) / 2  # image 1 skipped, image 2 perfect
    assert ari_fg(true, pred) == pytest.approx(expected)
    # with background all three images count
    a = [ari(t.ravel(), p.ravel()) for t, p in zip(true, pred)]
    assert ari_all(true, pred) == pytest.approx(np.mean(a))
    # no foreground anywhere: NaN (mean over zero images), and no warning
    assert math.isnan(ari_fg(empty[None], empty[None]))
    # single-class images (everything object 1) are the degenerate case: 1.0
    ones = np.ones((2, 4, 4), dtype=np.uint8)
    assert ari_fg(ones, ones * 0) == 1.0
    assert ari_all(ones, ones) == 1.0


def test_ari_fg_matches_per_image_loop_on_random_stack():
    rng = np.random.default_rng(6)
    true = rng.integers(0, 4, size=(30, 12, 12)).astype(np.uint8)
    pred = rng.integers(0, 5, size=(30, 12, 12)).astype(np.int32)
    per = []
    for t, p in zip(true, pred):
        fg = t > 0
        per.append(ari(t[fg], p[fg]))
    assert ari_fg(true, pred) == pytest.approx(np.mean(per), abs=1e-12)


@pytest.mark.parametrize("n_labels,offset", [(4, 0), (4, 250), (4, 5000), (100, 0)])
def test_ari_sparse_label_values(n_labels, offset):
    # direct bincount (4, 0); compaction of sparse values (4, 250/5000); tables larger than the
    # images even after compaction -> one image at a time (100, 0)
    rng = np.random.default_rng(10)
    true = rng.integers(0, n_labels, size=(6, 10, 10))
    true = np.where(true > 0, true + offset, 0)
    true[3] = offset + 1  # an image without background
    pred = rng.integers(0, min(n_labels, 3) if n_labels < 10 else n_labels, size=(6, 10, 10)) * (offset + 1)
    per_fg, per_all = [], []
    for t, p in zip(true, pred):
        fg = t > 0
        per_fg.append(ari(t[fg], p[fg]))
        per_all.append(ari(t.ravel(), p.ravel()))
    assert ari_fg(true, pred) == pytest.approx(np.mean(per_fg), abs=1e-12)
    assert ari_all(true, pred) == pytest.approx(np.mean(per_all), abs=1e-12)
    # GT with no background label at all keeps every pixel in ARI-FG
    nob = true + 1
    assert ari_fg(nob, pred) == pytest.approx(ari_all(nob, pred), abs=1e-12)


def test_ari_fg_speed_10k_images():
    rng = np.random.default_rng(7)
    true = rng.integers(0, 7, size=(10_000, 64, 64), dtype=np.uint8)
    pred = rng.integers(0, 7, size=(10_000, 64, 64), dtype=np.uint8)
    t0 = time.perf_counter()
    out = mask_scores(true, pred)
    elapsed = time.perf_counter() - t0
    assert abs(out["ari_fg"]) < 0.01 and out["n_fg_images"] == 10_000
    assert elapsed < 10.0, f"mask_scores on 10k 64x64 images took {elapsed:.2f}s"


# ---------------------------------------------------------------------------------------------
# semantic segmentation
# ---------------------------------------------------------------------------------------------

def test_semantic_scores_permuted_labels_perfect():
    rng = np.random.default_rng(8)
    true = rng.integers(0, 4, size=(5, 16, 16))
    perm = np.array([2, 0, 3, 1])
    s = semantic_scores(true, perm[true])
    for key in ("acc", "macc", "miou"):
        assert s[key] == pytest.approx(1.0), key
    assert s["mapping"] == {int(perm[c]): c for c in range(4)}
    # the "nobkg" variant drops GT row 0 and predicted column 0, so it assumes the predicted
    # background is label 0 (as in DTI-Sprites); permuting the foreground labels only is perfect
    perm = np.array([0, 3, 1, 2])
    s = semantic_scores(true, perm[true])
    for key in ("acc", "macc", "miou", "acc_nobkg", "macc_nobkg", "miou_nobkg"):
        assert s[key] == pytest.approx(1.0), key
    assert s["mapping_nobkg"] == {3: 1, 1: 2, 2: 3}


def test_semantic_scores_hand_computed():
    true = [0, 0, 0, 0, 1, 1, 2, 2]
    pred = [1, 1, 1, 0, 0, 2, 2, 2]
    # hist (GT rows, pred cols) = [[1, 3, 0],
    #                              [1, 0, 1],
    #                              [0, 0, 2]]
    # Hungarian (max): GT0 -> pred1 (3), GT1 -> pred0 (1), GT2 -> pred2 (2), total 6
    # acc = 6/8 = 0.75
    # per-class acc = [3/4, 1/2, 2/2] -> mACC = 2.25 / 3 = 0.75
    # IoU: GT0 3/(4+3-3) = 3/4 ; GT1 1/(2+2-1) = 1/3 ; GT2 2/(2+3-2) = 2/3 -> mIoU = 1.75/3
    s = semantic_scores(true, pred)
    assert s["acc"] == pytest.approx(0.75)
    assert s["acc_cls"] == pytest.approx([0.75, 0.5, 1.0])
    assert s["macc"] == pytest.approx(0.75)
    assert s["iou_cls"] == pytest.approx([0.75, 1 / 3, 2 / 3])
    assert s["miou"] == pytest.approx(1.75 / 3)
    assert s["mapping"] == {1: 0, 0: 1, 2: 2}
    # without background: hist[1:, 1:] = [[0, 1], [0, 2]] (GT 1..2 x pred 1..2)
    # Hungarian: GT1 -> pred1 (0) + GT2 -> pred2 (2) = 2 beats 1 + 0
    # acc = 2/3 ; per-class acc = [0/1, 2/2] -> 0.5 ; IoU = [0/(1+0-0), 2/(2+3-2)] -> mIoU = 1/3
    assert s["acc_nobkg"] == pytest.approx(2 / 3)
    assert s["macc_nobkg"] == pytest.approx(0.5)
    assert s["miou_nobkg"] == pytest.approx(1 / 3)
    assert s["mapping_nobkg"] == {1: 1, 2: 2}


def test_semantic_scores_extra_predicted_classes_are_errors():
    true = [0, 0, 1, 1]
    pred = [0, 0, 1, 2]
    # hist = [[2, 0, 0], [0, 1, 1]]; matched GT0 -> 0, GT1 -> 1 or 2 (tie, same numbers)
    # acc = 3/4 ; per-class acc [1, 1/2] ; IoU [2/(2+2-2), 1/(2+1-1)] = [1, 1/2] -> mIoU 0.75
    s = semantic_scores(true, pred)
    assert s["acc"] == pytest.approx(0.75)
    assert s["macc"] == pytest.approx(0.75)
    assert s["miou"] == pytest.approx(0.75)


def test_semantic_scores_degenerate_no_nan():
    # single class everywhere
    s = semantic_scores(np.zeros((2, 4, 4), int), np.zeros((2, 4, 4), int))
    assert s["acc"] == 1.0 and s["miou"] == 1.0 and s["macc"] == 1.0
    assert s["miou_nobkg"] == 0.0 and s["macc_nobkg"] == 0.0  # no foreground class: empty mean -> 0
    # a declared class absent from both sides counts 0 (the reference's NaN -> 0)
    s = semantic_scores([0, 0, 1, 1], [0, 0, 1, 1], n_classes=3)
    assert s["iou_cls"] == [1.0, 1.0, 0.0]
    assert s["miou"] == pytest.approx(2 / 3)
    for v in s.values():
        if isinstance(v, float):
            assert not math.isnan(v)
    with pytest.raises(SpritesError):
        semantic_scores([0, 1], [0, 1, 1])


def test_mask_scores_bundle():
    rng = np.random.default_rng(9)
    true = np.stack([_scene(rng), _scene(rng)])
    pred = np.where(true == 1, 2, np.where(true == 2, 1, 0))
    out = mask_scores(true, pred, true_semantic=(true > 0).astype(int), pred_semantic=(pred > 0).astype(int))
    assert out["ari_fg"] == 1.0 and out["ari"] == pytest.approx(1.0)
    assert out["miou"] == 1.0 and out["macc"] == 1.0
    assert out["n_images"] == 2 and out["n_fg_images"] == 2
    assert "miou" not in mask_scores(true, pred)
