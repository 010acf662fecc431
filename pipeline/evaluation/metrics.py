"""Evaluation metrics for clustering, semantic and instance segmentation (pure numpy / scipy).

Definitions follow the DTI-Clustering / DTI-Sprites evaluation (reference notes §13,
`src/utils/metrics.py` of the reference code), reimplemented from the written definitions:

* clustering (§13.1): confusion matrix M (rows = ground-truth classes, columns = clusters);
  one-to-one Hungarian mapping when #clusters == #classes, otherwise many-to-one majority
  mapping; accuracy = matched mass / N; NMI with arithmetic averaging; ARI.
* semantic segmentation (§13.2): one global confusion matrix over all pixels, Hungarian matching
  on -hist, accuracy, per-class accuracy, mACC, IoU, mIoU; "with background" and "without
  background" (hist[1:, 1:]) variants.
* instance segmentation (§13.3): per-image ARI with exact binomials, mean over images; ARI-FG
  drops the pixels whose ground-truth label is 0 before building the table.

Label conventions: the functions built on `confusion` (clustering accuracy, mappings, semantic
and instance scores) take non-negative integer labels (bool and integral floats are accepted);
`nmi` and `ari` accept any hashable numpy labels. No function emits a numpy warning or returns
NaN for degenerate but valid inputs (constant labelings, empty classes, images without
foreground); the one exception is a mean over *zero* images (see `ari_fg`), which is NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.errors import SpritesError

__all__ = [
    "confusion",
    "cluster_mapping",
    "clustering_accuracy",
    "nmi",
    "ari",
    "ari_per_image",
    "ari_fg",
    "ari_all",
    "semantic_scores",
    "clustering_scores",
    "mask_scores",
]

# Pixels (and table cells) per chunk when building contingency tables (bounds temporary memory).
_CHUNK_PIXELS = 1 << 22
# Above this many cells per contingency table, sparse label values are compacted first.
_MAX_CELLS = 1 << 12


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _check_labels(a: Any, name: str) -> np.ndarray:
    """Validate non-negative integer labels without copying (bool and integral floats accepted)."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        if a.size and not (np.all(np.isfinite(a)) and np.array_equal(a, np.round(a))):
            raise SpritesError(f"{name}: labels must be integers, got non-integral float values")
    elif a.dtype.kind not in "biu":
        raise SpritesError(f"{name}: labels must be integers, got dtype {a.dtype}")
    if a.dtype.kind != "b" and a.size and a.min() < 0:
        raise SpritesError(f"{name}: labels must be >= 0 (got {a.min()}); relabel first")
    return a


def _same_shape(true: np.ndarray, pred: np.ndarray) -> None:
    """Raise when ground truth and prediction do not line up element for element."""
    if true.shape != pred.shape:
        raise SpritesError(f"ground truth shape {true.shape} != prediction shape {pred.shape}")


def _max_label(a: np.ndarray) -> int:
    """Largest label, -1 for an empty array."""
    return int(a.max()) if a.size else -1


def _comb2(x: np.ndarray) -> np.ndarray:
    """Exact C(x, 2) in int64 (§13.3: exact binomials)."""
    x = np.asarray(x, dtype=np.int64)
    return x * (x - 1) // 2


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (the reference's NaN -> 0), without warnings."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _ari_from_tables(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ARI of each contingency table in a (B, T, P) stack, and its pixel count (§13.3 formula)."""
    tables = np.asarray(tables, dtype=np.int64)
    a = tables.sum(axis=2)
    b = tables.sum(axis=1)
    n = a.sum(axis=1)
    s_ij = _comb2(tables).sum(axis=(1, 2))
    s_a = _comb2(a).sum(axis=1)
    s_b = _comb2(b).sum(axis=1)
    c_n = _comb2(n)
    # Degenerate case (denominator 0): S_a == S_b and S_a in {0, C(n, 2)}; decided on exact ints.
    degenerate = (s_a == s_b) & ((s_a == c_n) | (s_a == 0))
    c_safe = np.where(c_n == 0, 1, c_n).astype(np.float64)
    expected = s_a.astype(np.float64) * s_b.astype(np.float64) / c_safe
    num = s_ij - expected
    den = 0.5 * (s_a + s_b) - expected
    den = np.where(degenerate, 1.0, den)
    return np.where(degenerate, 1.0, num / den), n


def _dense(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique values and the dense index of every element."""
    uniq, inv = np.unique(np.asarray(a).ravel(), return_inverse=True)
    return uniq, inv.ravel()


def _contingency_any(true: Any, pred: Any) -> np.ndarray:
    """Contingency table of two labelings with arbitrary label values."""
    true = np.asarray(true).ravel()
    pred = np.asarray(pred).ravel()
    _same_shape(true, pred)
    _, ti = _dense(true)
    _, pi = _dense(pred)
    n_t = int(ti.max()) + 1 if ti.size else 0
    n_p = int(pi.max()) + 1 if pi.size else 0
    return np.bincount(ti * n_p + pi, minlength=n_t * n_p).reshape(n_t, n_p)


# ----------------------------------------------------------------------------------------------
# clustering (§13.1)
# ----------------------------------------------------------------------------------------------

def confusion(true: Any, pred: Any, n_true: int | None = None, n_pred: int | None = None) -> np.ndarray:
    """Confusion matrix M[t, p] = #{i: true_i = t, pred_i = p} via np.bincount (§13.1)."""
    true = _check_labels(true, "true").ravel()
    pred = _check_labels(pred, "pred").ravel()
    _same_shape(true, pred)
    t = _max_label(true) + 1 if n_true is None else int(n_true)
    p = _max_label(pred) + 1 if n_pred is None else int(n_pred)
    if true.size and _max_label(true) >= t:
        raise SpritesError(f"true label {_max_label(true)} >= n_true = {t}")
    if pred.size and _max_label(pred) >= p:
        raise SpritesError(f"pred label {_max_label(pred)} >= n_pred = {p}")
    m = np.zeros(t * p, dtype=np.int64)
    for s in range(0, true.size, _CHUNK_PIXELS):  # chunked: bounded int64 temporaries
        key = true[s:s + _CHUNK_PIXELS].astype(np.int64) * p
        key += pred[s:s + _CHUNK_PIXELS].astype(np.int64)
        m += np.bincount(key, minlength=t * p)
    return m.reshape(t, p)


def _mapping_from_confusion(m: np.ndarray) -> np.ndarray:
    """Class index for each column of M: Hungarian if square, else per-column majority (§13.1)."""
    n_classes, n_clusters = m.shape
    if n_classes == n_clusters:
        rows, cols = linear_sum_assignment(-m)
        mapping = np.empty(n_clusters, dtype=np.int64)
        mapping[cols] = rows
        return mapping
    if n_classes == 0:
        return np.zeros(n_clusters, dtype=np.int64)
    return np.argmax(m, axis=0).astype(np.int64)


def cluster_mapping(true: Any, pred: Any, n_classes: int | None = None,
                    n_clusters: int | None = None) -> dict[int, int]:
    """Cluster -> class map: one-to-one Hungarian on -M if #clusters == #classes, else majority (§13.1).

    The counts default to max label + 1; pass the declared number of clusters K as `n_clusters`
    to reproduce the reference exactly when some cluster is empty.
    """
    m = confusion(true, pred, n_classes, n_clusters)
    return {k: int(c) for k, c in enumerate(_mapping_from_confusion(m))}


def _mapped_confusion(m: np.ndarray) -> np.ndarray:
    """Columns of M summed into their mapped class: M'[:, c] = sum_{k -> c} M[:, k] (§13.1)."""
    mapping = _mapping_from_confusion(m)
    n_classes = m.shape[0]
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    if n_classes:
        np.add.at(out.T, mapping, m.T)
    return out


def clustering_accuracy(true: Any, pred: Any, n_classes: int | None = None,
                        n_clusters: int | None = None) -> float:
    """Clustering accuracy trace(M') / N after the §13.1 cluster -> class mapping."""
    m = confusion(true, pred, n_classes, n_clusters)
    total = int(m.sum())
    if total == 0:
        raise SpritesError("clustering_accuracy: no samples")
    return float(np.trace(_mapped_confusion(m)) / total)


def nmi(true: Any, pred: Any) -> float:
    """Normalised mutual information I(Y;Ŷ) / ((H(Y)+H(Ŷ))/2), natural log (§13.1, sklearn 'arithmetic')."""
    c = _contingency_any(true, pred)
    n_t, n_p = c.shape
    if n_t == n_p and n_t <= 1:
        return 1.0  # both constant (or empty): identical partitions
    n = float(c.sum())
    a = c.sum(axis=1).astype(np.float64)
    b = c.sum(axis=0).astype(np.float64)
    nz = c > 0
    nij = c[nz].astype(np.float64)
    outer = np.outer(a, b)[nz]
    mi = float(np.sum(nij / n * (np.log(nij) + np.log(n) - np.log(outer))))
    mi = max(mi, 0.0)
    if mi == 0.0:
        return 0.0
    h_t = float(-np.sum(a / n * np.log(a / n)))
    h_p = float(-np.sum(b / n * np.log(b / n)))
    norm = max(0.5 * (h_t + h_p), np.finfo(np.float64).eps)
    return float(min(mi / norm, 1.0))


def ari(true: Any, pred: Any) -> float:
    """Adjusted Rand index (S_ij − E) / (½(S_a+S_b) − E), exact binomials; 1.0 if degenerate (§13.3)."""
    c = _contingency_any(true, pred)
    if c.size == 0:
        return 1.0  # no samples: the degenerate case of §13.3 (S_a = S_b = C(n,2) = S_ij = 0)
    value, _ = _ari_from_tables(c[None])
    return float(value[0])


def clustering_scores(true: Any, pred: Any, n_classes: int | None = None,
                      n_clusters: int | None = None) -> dict[str, Any]:
    """Clustering bundle for `sprites eval`: acc, avg_acc (mean per-class acc), nmi, ari, n (§13.1)."""
    m = confusion(true, pred, n_classes, n_clusters)
    total = int(m.sum())
    if total == 0:
        raise SpritesError("clustering_scores: no samples")
    mm = _mapped_confusion(m)
    per_class = _safe_div(np.diag(mm), mm.sum(axis=1))
    return {
        "acc": float(np.trace(mm) / total),
        "avg_acc": float(per_class.mean()) if per_class.size else 0.0,
        "nmi": nmi(true, pred),
        "ari": ari(true, pred),
        "n": total,
        "n_classes": int(m.shape[0]),
        "n_clusters": int(m.shape[1]),
        "mapping": {k: int(c) for k, c in enumerate(_mapping_from_confusion(m))},
    }


# ----------------------------------------------------------------------------------------------
# instance segmentation (§13.3)
# ----------------------------------------------------------------------------------------------

def _as_images(a: Any) -> np.ndarray:
    """(H, W) or flat -> (1, P); (N, H, W, ...) -> (N, P)."""
    a = np.asarray(a)
    if a.ndim <= 2:
        return a.reshape(1, -1)
    return a.reshape(a.shape[0], -1)


def _compact(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel to 0..k-1 keeping order (label 0 stays 0 when present)."""
    if a.dtype.kind in "biu" and int(a.max()) < 1 << 16:  # lookup table over present values
        present = np.bincount(a.ravel()) > 0
        lut = np.cumsum(present) - 1
        return lut[a], int(present.sum())
    uniq = np.unique(a)
    return np.searchsorted(uniq, a).astype(np.int64), int(uniq.size)


def _per_image_ari(true: Any, pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-image ARI with background, its pixel count, ARI-FG and its foreground count (§13.3).

    Contingency tables are built for a chunk of images at a time with one np.bincount, and the
    ARI-FG table is the same table without its GT-background row 0 (dropping GT-0 pixels).
    """
    t_img = _as_images(true)
    p_img = _as_images(pred)
    _same_shape(t_img, p_img)
    n_img, n_pix = t_img.shape
    if t_img.size == 0:
        ones, zeros = np.ones(n_img), np.zeros(n_img, dtype=np.int64)
        return ones, zeros, ones.copy(), zeros.copy()
    _check_labels(t_img, "true_instance")
    _check_labels(p_img, "pred_instance")
    n_t = int(t_img.max()) + 1
    n_p = int(p_img.max()) + 1
    if n_t * n_p > _MAX_CELLS:  # sparse label values (e.g. 255): compact them, order kept
        has_bkg = bool((t_img == 0).any())
        t_img, n_t = _compact(t_img)
        if not has_bkg:  # keep "row 0 = GT background" meaning: shift so no label becomes 0
            t_img = t_img + 1
            n_t += 1
        p_img, n_p = _compact(p_img)
    cell = n_t * n_p
    v_all = np.empty(n_img)
    n_all = np.empty(n_img, dtype=np.int64)
    v_fg = np.empty(n_img)
    n_fg = np.empty(n_img, dtype=np.int64)
    if cell > max(n_pix, _MAX_CELLS):  # tables sparser than the images: one image at a time
        for i in range(n_img):
            t, p = t_img[i], p_img[i]
            fg = t != 0
            v_all[i], n_all[i] = _ari_from_tables(_contingency_any(t, p)[None])[0][0], n_pix
            n_fg[i] = int(fg.sum())
            v_fg[i] = _ari_from_tables(_contingency_any(t[fg], p[fg])[None])[0][0] if n_fg[i] else 1.0
        return v_all, n_all, v_fg, n_fg
    step = max(1, min(_CHUNK_PIXELS // max(n_pix, 1), _CHUNK_PIXELS // cell))
    for s in range(0, n_img, step):
        e = min(n_img, s + step)
        key = t_img[s:e].astype(np.int64) * n_p
        key += p_img[s:e].astype(np.int64)
        key += (np.arange(e - s, dtype=np.int64) * cell)[:, None]
        tables = np.bincount(key.ravel(), minlength=(e - s) * cell).reshape(e - s, n_t, n_p)
        v_all[s:e], n_all[s:e] = _ari_from_tables(tables)
        v_fg[s:e], n_fg[s:e] = _ari_from_tables(tables[:, 1:, :])
    return v_all, n_all, v_fg, n_fg


def ari_per_image(true_instance: Any, pred_instance: Any, with_bkg: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-image ARI (§13.3) and a mask of the images scored; with_bkg=False drops GT-0 pixels (ARI-FG).

    An image is skipped (mask False, value NaN) when it has no pixel left to score, i.e. no
    foreground pixel in ARI-FG mode (the reference would score such an image 1.0 through its
    degenerate-case rule, which inflates the mean).
    """
    v_all, n_all, v_fg, n_fg = _per_image_ari(true_instance, pred_instance)
    values, n = (v_all, n_all) if with_bkg else (v_fg, n_fg)
    scored = n > 0
    return np.where(scored, values, np.nan), scored


def _mean_scored(values: np.ndarray, n: np.ndarray) -> float:
    """Mean over the images with at least one scored pixel; NaN over zero images."""
    scored = n > 0
    return float(values[scored].mean()) if scored.any() else float("nan")


def ari_fg(true_instance: Any, pred_instance: Any) -> float:
    """ARI-FG: per image, drop pixels whose GT label is 0, ARI on the rest, mean over images (§13.3).

    Images without any foreground pixel are skipped; if no image has foreground the result is
    NaN (a mean over zero images). Inputs: (H, W) for one image or (N, H, W) for a stack.
    """
    _, _, v_fg, n_fg = _per_image_ari(true_instance, pred_instance)
    return _mean_scored(v_fg, n_fg)


def ari_all(true_instance: Any, pred_instance: Any) -> float:
    """ARI with background pixels included (reference `eval_with_bkg: True`), mean over images (§13.3)."""
    v_all, n_all, _, _ = _per_image_ari(true_instance, pred_instance)
    return _mean_scored(v_all, n_all)


# ----------------------------------------------------------------------------------------------
# semantic segmentation (§13.2)
# ----------------------------------------------------------------------------------------------

def _semantic_from_hist(hist: np.ndarray) -> dict[str, Any]:
    """Hungarian on −hist permutes predicted columns, then acc, per-class acc/IoU, mACC, mIoU (§13.2).

    hist is (T, P) with P >= T; predicted classes left unmatched keep their pixels in the row
    sums and the total, so they count as errors.
    """
    n_t = hist.shape[0]
    total = int(hist.sum())
    if n_t == 0:
        return {"acc": 0.0, "macc": 0.0, "miou": 0.0, "acc_cls": [], "iou_cls": [], "mapping": {}}
    rows, cols = linear_sum_assignment(-hist)
    matched = np.zeros(n_t, dtype=np.int64)  # predicted column matched to each GT class
    matched[rows] = cols
    diag = hist[np.arange(n_t), matched]
    row_sum = hist.sum(axis=1)
    col_sum = hist.sum(axis=0)[matched]
    acc_cls = _safe_div(diag, row_sum)
    iou_cls = _safe_div(diag, row_sum + col_sum - diag)
    return {
        "acc": float(diag.sum() / total) if total else 0.0,
        "macc": float(acc_cls.mean()),
        "miou": float(iou_cls.mean()),
        "acc_cls": [float(x) for x in acc_cls],
        "iou_cls": [float(x) for x in iou_cls],
        "mapping": {int(c): int(r) for r, c in enumerate(matched)},
    }


def semantic_scores(true: Any, pred: Any, n_classes: int | None = None) -> dict[str, Any]:
    """Semantic scores from one global pixel confusion matrix with Hungarian matching (§13.2).

    `true`, `pred`: (N, H, W) or flat label arrays, 0 = background. `n_classes` = number of GT
    classes including background (default max GT label + 1); the predicted side may have more
    classes than the ground truth (the extra ones count as errors). Returns acc, macc, miou,
    acc_cls, iou_cls and mapping (predicted -> GT class) with background, and the same keys
    suffixed `_nobkg` computed on hist[1:, 1:] (GT-background rows and predicted-background
    columns dropped, as the reference does). Mean accuracies and IoUs average over all GT
    classes, a class absent from both sides counting 0 (the reference's NaN -> 0).
    """
    t = _check_labels(true, "true").ravel()
    p = _check_labels(pred, "pred").ravel()
    _same_shape(t, p)
    if t.size == 0:
        raise SpritesError("semantic_scores: no pixels")
    n_t = _max_label(t) + 1 if n_classes is None else int(n_classes)
    n_p = max(_max_label(p) + 1, n_t)
    hist = confusion(t, p, n_t, n_p)
    out: dict[str, Any] = {"n_pixels": int(t.size), "n_classes": n_t, "n_pred_classes": _max_label(p) + 1}
    out.update(_semantic_from_hist(hist))
    nob = _semantic_from_hist(hist[1:, 1:])
    # hist[1:, 1:] indices are shifted by one: report real labels in the mapping
    nob["mapping"] = {c + 1: r + 1 for c, r in nob["mapping"].items()}
    out.update({f"{k}_nobkg": v for k, v in nob.items()})
    return out


# ----------------------------------------------------------------------------------------------
# bundle for multi-object evaluation
# ----------------------------------------------------------------------------------------------

def mask_scores(true_instance: Any, pred_instance: Any, true_semantic: Any = None,
                pred_semantic: Any = None, n_classes: int | None = None) -> dict[str, Any]:
    """Multi-object bundle for `sprites eval`: ari_fg, ari (with bkg) (§13.3) and semantic miou/macc (§13.2).

    Always: ari_fg, ari, n_images, n_fg_images. Only when both semantic maps are given: acc,
    macc, miou, iou_cls and their `_nobkg` variants (see `semantic_scores`).
    """
    v_all, n_all, v_fg, n_fg = _per_image_ari(true_instance, pred_instance)
    out: dict[str, Any] = {
        "ari_fg": _mean_scored(v_fg, n_fg),
        "ari": _mean_scored(v_all, n_all),
        "n_images": int(v_all.size),
        "n_fg_images": int((n_fg > 0).sum()),
    }
    if true_semantic is not None and pred_semantic is not None:
        sem = semantic_scores(true_semantic, pred_semantic, n_classes)
        for key in ("acc", "macc", "miou", "iou_cls", "acc_nobkg", "macc_nobkg", "miou_nobkg"):
            out[key] = sem[key]
    return out
