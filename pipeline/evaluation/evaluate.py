"""`sprites eval`: score a project's decomposition against ground truth (reference notes §13).

Inputs
  * `cache/ingest.h5` (`source` per crop, `content_box`) and `cache/decompose.h5` (`front`,
    `instance`, `semantic` per crop, attribute `sprites` = K); both rows are crop ids.
  * a labels CSV with a header holding the columns `source` and `label` (other columns ignored;
    `,` `;` or tab separated; UTF-8, a BOM is fine) — or, for crops cut from pages (several per
    source), `source,x,y,w,h,label`: one labelled box per row in the source's pixels, and each crop
    takes the label of the box of its page that overlaps it most (intersection over union ≥ 0.5;
    crops overlapping none are counted as without ground truth) — and/or a masks HDF5 file with the datasets
    `source` (N strings), `instance` (N×H×W: 0 background, 1..n objects) and `semantic`
    (N×H×W: 0 background, class + 1; optional), as the built-in examples write them in
    `ground_truth/`.
  * Without --labels and --masks, `DIR/ground_truth/labels.csv` and `DIR/ground_truth/masks.h5`
    are used when they exist.

Joining: by `source`, the image path relative to the images folder (backslashes and a leading
`./` are normalised; an absolute path under the images folder is made relative). Every crop of a
matched image gets that image's ground truth. Crops without ground truth and ground-truth rows
without a crop are counted in `counts` (with a few examples), never silently dropped; if nothing
matches it is an error.

Clustering (labels; §13.1) compares `front` (the sprite of the front-most non-empty layer) with
the label:
  * a label that is empty or negative (e.g. -1) marks an unlabelled image: its crops are left out
    and counted as `unlabelled`;
  * labels may be integers (class ids) or names (mapped to ids in sorted order);
  * n_classes = max(largest label + 1, lines of a `classes.txt` beside the CSV);
    n_clusters = K (decompose.h5 attribute `sprites`); the cluster → class mapping is Hungarian
    when K = n_classes, majority otherwise, computed on the crops with a sprite;
  * a crop whose every layer is empty (`front` = −1) is kept and counted (`empty`): it counts as
    an error in `acc`/`avg_acc` and as a cluster of its own in NMI and ARI.

Masks (§13.2, §13.3) compare decompose `instance` / `semantic` with the ground truth, per crop:
  * a ground-truth mask at the crop size S×S for a crop that is its whole image is used as it is
    (crop coordinates, as in the examples); otherwise the mask is taken to be in image coordinates
    (at any resolution: it is scaled by mask size / image `size`): the crop's `box` is cut from it
    and resized (nearest) into the crop's `content_box` (where the image lies in the padded crop),
    background around it — a note in the result says how many masks were so treated; rotated
    crops are left out of the mask scores (noted);
  * `ari_fg`: per image, GT-background pixels dropped, mean over images with foreground; as in
    the papers' protocol, a foreground pixel the model left to the background counts for the layer
    whose colour is closest there (decompose's `instance_fg`; `instance` for older runs);
    `ari`: all pixels; `fg_iou`: foreground (instance > 0) against the ground truth's foreground,
    intersection over union over all pixels of all matched crops; `miou`/`macc` (with background) and `miou_nobkg`/`macc_nobkg` from one
    pixel confusion matrix with Hungarian matching (predicted background is not reassigned).

The result is written to `DIR/exports/eval.json` (atomically) and returned.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import SpritesError
from pipeline.core.project import Project

__all__ = ["evaluate", "read_labels", "read_box_labels", "read_masks", "format_summary", "EVAL_NAME", "BOX_IOU"]

EVAL_NAME = "eval.json"
_EXAMPLES = 5          # unmatched names listed in the result
_CHUNK = 2048          # crops per chunk when scoring masks
BOX_IOU = 0.5          # a crop stands for a labelled box when their boxes overlap this much (intersection over union)


# ----------------------------------------------------------------------------------------------
# ground truth readers
# ----------------------------------------------------------------------------------------------

def _norm(source: str) -> str:
    s = str(source).strip().replace("\\", "/")
    while s.startswith("./"):
        s = s[2:]
    return s


def _decode(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _label_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """A labels CSV's lower-cased header and its rows (blank rows dropped), with clear errors."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpritesError(f"labels file {path} not found") from None
    except UnicodeDecodeError:
        raise SpritesError(f"labels file {path} is not UTF-8 text: save it as CSV (UTF-8)") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise SpritesError(f"labels file {path} is empty: it needs a header line `source,label` and one row per image")
    head = lines[0]
    delimiter = max([",", ";", "\t"], key=head.count) if any(d in head for d in ",;\t") else ","
    reader = csv.reader(lines, delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in ("source", "label") if c not in header]
    if missing:
        raise SpritesError(
            f"labels file {path}: no {' and no '.join(repr(m) for m in missing)} column in the header "
            f"(found: {', '.join(repr(h) for h in header) or 'nothing'}); the first line must name the columns, "
            f"e.g. `source,label`, with source = the image path relative to the images folder")
    used = max(header.index(c) for c in ("source", "label", "x", "y", "w", "h") if c in header)
    rows = []
    for n, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) <= used:
            raise SpritesError(f"labels file {path}, line {n}: expected at least {used + 1} columns, got {len(row)}")
        if not _norm(row[header.index("source")]):
            raise SpritesError(f"labels file {path}, line {n}: empty source")
        rows.append([c.strip() for c in row])
    if not rows:
        raise SpritesError(f"labels file {path} has a header but no rows")
    return header, rows


def _class_ids(path: Path, raw: list[str]) -> tuple[list[int], list[str] | None, int]:
    """Label texts → class ids (−1 = unlabelled), the class names if labels were names, n_classes."""
    def as_int(v: str) -> int | None:
        try:
            return int(v)
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                return None
            return int(f) if f.is_integer() else None

    values = [v for v in raw if v]
    names: list[str] | None = None
    if all(as_int(v) is not None for v in values):
        ids = [max(as_int(v), -1) if v else -1 for v in raw]
    else:  # class names
        names = sorted({v for v in values if v != "-1"})
        index = {n: i for i, n in enumerate(names)}
        ids = [index.get(v, -1) for v in raw]
    n_classes = max(ids) + 1
    classes_txt = Path(path).with_name("classes.txt")
    if names is None and classes_txt.exists():
        declared = [ln for ln in classes_txt.read_text(encoding="utf-8").splitlines() if ln.strip()]
        n_classes = max(n_classes, len(declared))
    return ids, names, n_classes


def read_labels(path: Path) -> tuple[dict[str, int], list[str] | None, int]:
    """labels CSV → ({source: class id, −1 = unlabelled}, class names if labels were names, n_classes)."""
    header, rows = _label_rows(path)
    i_src, i_lab = header.index("source"), header.index("label")
    raw: dict[str, str] = {}
    for n, row in enumerate(rows):
        src, lab = _norm(row[i_src]), row[i_lab]
        if src in raw and raw[src] != lab:
            raise SpritesError(f"labels file {path}: {src} appears twice with different labels ({raw[src]!r}, {lab!r}); "
                               f"to label several crops of one page, give their boxes (columns x,y,w,h)")
        raw[src] = lab
    ids, names, n_classes = _class_ids(path, list(raw.values()))
    return dict(zip(raw, ids)), names, n_classes


def has_boxes(path: Path) -> bool:
    header, _ = _label_rows(path)
    return all(c in header for c in ("x", "y", "w", "h"))


def read_box_labels(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, list[str] | None, int]:
    """A labels CSV with boxes (`source,x,y,w,h,label`: one labelled box of a page per row, in the
    source's pixels, as `ingest.boxes` takes them) → sources, boxes (R, 4), class ids (R,), the
    class names if labels were names, n_classes."""
    header, rows = _label_rows(path)
    cols = [header.index(c) for c in ("x", "y", "w", "h")]
    boxes = np.zeros((len(rows), 4), dtype=np.float64)
    for n, row in enumerate(rows):
        try:
            boxes[n] = [float(row[c]) for c in cols]
        except ValueError:
            raise SpritesError(f"labels file {path}, row {n + 2}: x, y, w, h must be numbers, got "
                               f"{', '.join(row[c] for c in cols)}") from None
    ids, names, n_classes = _class_ids(path, [row[header.index("label")] for row in rows])
    return [_norm(row[header.index("source")]) for row in rows], boxes, np.asarray(ids, np.int64), names, n_classes


def read_masks(path: Path) -> dict[str, Any]:
    """masks HDF5 → {"file", "source": [str], "instance": dataset-like, "semantic": … or None, "classes"}.

    The arrays are loaded (uint8); call only for files of ground truth.
    """
    import h5py
    path = Path(path)
    if not path.exists():
        raise SpritesError(f"masks file {path} not found")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SpritesError(f"masks file {path} is not a readable HDF5 file ({e})") from None
    with f:
        missing = [k for k in ("source", "instance") if k not in f]
        if missing:
            found = ", ".join(sorted(f.keys())) or "nothing"
            raise SpritesError(
                f"masks file {path}: missing dataset(s) {', '.join(missing)} (found: {found}); it needs "
                f"`source` (N image paths relative to the images folder), `instance` (N×H×W uint8, 0 = background, "
                f"1..n = objects) and optionally `semantic` (N×H×W uint8, 0 = background, class + 1)")
        sources = [_norm(s) for s in _decode(f["source"][()])]
        out: dict[str, Any] = {"file": str(path), "source": sources, "semantic": None}
        for key in ("instance", "semantic"):
            if key not in f:
                continue
            ds = f[key]
            if ds.ndim != 3 or ds.shape[0] != len(sources):
                raise SpritesError(f"masks file {path}: `{key}` has shape {ds.shape}, expected ({len(sources)}, H, W) "
                                   f"(one H×W mask per source)")
            if ds.dtype.kind not in "biu":
                raise SpritesError(f"masks file {path}: `{key}` must hold integer labels, got {ds.dtype}")
            arr = ds[()]
            if arr.size and arr.min() < 0:
                raise SpritesError(f"masks file {path}: `{key}` has negative labels")
            out[key] = arr
        if out["semantic"] is not None and out["semantic"].shape != out["instance"].shape:
            raise SpritesError(f"masks file {path}: `semantic` {out['semantic'].shape} and `instance` "
                               f"{out['instance'].shape} differ in shape")
        classes = f.attrs.get("classes")
        out["classes"] = _decode(classes) if classes is not None else None
    if len(set(sources)) != len(sources):
        dup = next(s for s in sources if sources.count(s) > 1)
        raise SpritesError(f"masks file {path}: source {dup} appears more than once")
    return out


# ----------------------------------------------------------------------------------------------
# joining
# ----------------------------------------------------------------------------------------------

def _relativise(source: str, root: str | None) -> str:
    if root and os.path.isabs(source):
        try:
            rel = os.path.relpath(source, root)
        except ValueError:
            return source
        if not rel.startswith(".."):
            return _norm(rel)
    return source


def _join(crop_sources: list[str], truth_sources: list[str], root: str | None, what: str, file: str
          ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(crop ids, truth row per crop id) for the crops whose source is in the truth; counts."""
    index = {_relativise(s, root): i for i, s in enumerate(truth_sources)}
    crops, rows = [], []
    for c, s in enumerate(crop_sources):
        r = index.get(s)
        if r is not None:
            crops.append(c)
            rows.append(r)
    matched_rows = set(rows)
    no_truth = [s for s in crop_sources if s not in index]
    no_crop = [s for s in index if index[s] not in matched_rows]
    counts = {
        "crops": len(crop_sources),
        "ground_truth_rows": len(truth_sources),
        "matched_crops": len(crops),
        "crops_without_ground_truth": len(no_truth),
        "ground_truth_without_crop": len(no_crop),
    }
    if no_truth:
        counts["examples_crops_without_ground_truth"] = no_truth[:_EXAMPLES]
    if no_crop:
        counts["examples_ground_truth_without_crop"] = no_crop[:_EXAMPLES]
    if not crops:
        raise SpritesError(
            f"none of the {len(truth_sources)} sources in {file} matches one of the {len(crop_sources)} crops "
            f"(e.g. {what} source {truth_sources[0]!r} vs crop source {crop_sources[0] if crop_sources else '—'!r}); "
            f"sources must be image paths relative to the images folder")
    return np.asarray(crops, dtype=np.int64), np.asarray(rows, dtype=np.int64), counts


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boxes x, y, w, h: a (4,), b (R, 4) → (R,) intersection over union."""
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1, y1 = np.minimum(a[0] + a[2], b[:, 0] + b[:, 2]), np.minimum(a[1] + a[3], b[:, 1] + b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / np.maximum(a[2] * a[3] + b[:, 2] * b[:, 3] - inter, 1e-9)


def _join_boxes(crop_sources: list[str], crop_boxes: np.ndarray, truth_sources: list[str], truth_boxes: np.ndarray,
                root: str | None, file: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(crop ids, truth row per crop id) for crops cut from pages: a crop takes the labelled box of
    its page it overlaps most, when their intersection over union reaches BOX_IOU."""
    by_source: dict[str, list[int]] = {}
    for r, s in enumerate(truth_sources):
        by_source.setdefault(_relativise(s, root), []).append(r)
    crops, rows = [], []
    for c, s in enumerate(crop_sources):
        candidates = by_source.get(s)
        if not candidates:
            continue
        iou = _iou(crop_boxes[c].astype(np.float64), truth_boxes[candidates])
        best = int(np.argmax(iou))
        if iou[best] >= BOX_IOU:
            crops.append(c)
            rows.append(candidates[best])
    taken = np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(truth_sources))
    counts = {
        "crops": len(crop_sources),
        "ground_truth_rows": len(truth_sources),
        "matched_crops": len(crops),
        "crops_without_ground_truth": len(crop_sources) - len(crops),
        "ground_truth_without_crop": int((taken == 0).sum()),
        "ground_truth_with_several_crops": int((taken > 1).sum()),
        "box_iou": BOX_IOU,
    }
    if not crops:
        raise SpritesError(f"none of the {len(truth_sources)} labelled boxes in {file} overlaps a crop of its page "
                           f"(intersection over union ≥ {BOX_IOU}): boxes are x, y, w, h in the pixels of the source "
                           f"image, sources paths relative to the images folder")
    return np.asarray(crops, dtype=np.int64), np.asarray(rows, dtype=np.int64), counts


# ----------------------------------------------------------------------------------------------
# scores
# ----------------------------------------------------------------------------------------------

def _clustering(front: np.ndarray, labels: np.ndarray, n_classes: int, K: int) -> dict[str, Any]:
    from pipeline.evaluation.metrics import ari, clustering_scores, nmi
    labelled = labels >= 0
    y, p = labels[labelled].astype(np.int64), front[labelled].astype(np.int64)
    n = int(y.size)
    out: dict[str, Any] = {"n": n, "unlabelled": int((~labelled).sum()), "empty": int((p < 0).sum()),
                           "n_classes": int(n_classes), "n_clusters": int(K)}
    if n == 0:
        raise SpritesError("no labelled crop to score: every matched label is empty or negative")
    if p.max(initial=-1) >= K:
        raise SpritesError(f"cache/decompose.h5: sprite {int(p.max())} >= K = {K}: the file is inconsistent; rerun `sprites run decompose --force`")
    has = p >= 0
    mapping = np.full(K, -1, dtype=np.int64)
    if has.any():
        base = clustering_scores(y[has], p[has], n_classes, K)
        for k, c in base["mapping"].items():
            mapping[int(k)] = int(c)
    mapped = np.where(has, mapping[np.where(has, p, 0)], -1)
    correct = mapped == y
    per_class = [float(correct[y == c].mean()) for c in range(n_classes) if (y == c).any()]
    out.update({
        "acc": float(correct.mean()),
        "avg_acc": float(np.mean(per_class)),
        "nmi": nmi(y, p),
        "ari": ari(y, p),
        "mapping": {int(k): int(c) for k, c in enumerate(mapping)},
    })
    return out


def _to_crop(mask: np.ndarray, size: int, geom: dict[str, np.ndarray], i: int) -> np.ndarray:
    """A mask in image coordinates → the crop's coordinates: cut the crop's box (scaled to the
    mask's resolution), nearest-resize it into the crop's content box, background (0) around."""
    import cv2
    mh, mw = mask.shape
    W, H = (int(v) for v in geom["size"][i]) if geom.get("size") is not None else (mw, mh)
    W, H = W or mw, H or mh
    bx, by, bw, bh = (int(v) for v in geom["box"][i]) if geom.get("box") is not None else (0, 0, W, H)
    if bw <= 0 or bh <= 0:
        bx, by, bw, bh = 0, 0, W, H
    sx, sy = mw / W, mh / H
    x0, y0 = max(0, round(bx * sx)), max(0, round(by * sy))
    x1, y1 = min(mw, max(x0 + 1, round((bx + bw) * sx))), min(mh, max(y0 + 1, round((by + bh) * sy)))
    cut = np.ascontiguousarray(mask[y0:y1, x0:x1], dtype=np.uint8)
    cx, cy, cw, ch = (int(v) for v in geom["content_box"][i]) if geom.get("content_box") is not None else (0, 0, size, size)
    if cw <= 0 or ch <= 0:
        cx, cy, cw, ch = 0, 0, size, size
    out = np.zeros((size, size), dtype=np.uint8)
    if cut.size:
        out[cy:cy + ch, cx:cx + cw] = cv2.resize(cut, (cw, ch), interpolation=cv2.INTER_NEAREST)
    return out


def _as_is(geom: dict[str, Any], ids: np.ndarray, mask_shape: tuple[int, int], size: int) -> np.ndarray:
    """Per crop: True when the ground-truth mask is already in the crop's coordinates (the mask is
    S×S and the crop is its whole image), False when it must be cut and resized."""
    if tuple(mask_shape) != (size, size):
        return np.zeros(ids.size, dtype=bool)
    if geom.get("box") is None or geom.get("size") is None:
        return np.ones(ids.size, dtype=bool)
    box, wh = geom["box"][ids], geom["size"][ids]
    return (box[:, 0] == 0) & (box[:, 1] == 0) & (box[:, 2] == wh[:, 0]) & (box[:, 3] == wh[:, 1])


def _rows(ds, ids: np.ndarray) -> np.ndarray:
    """Rows `ids` (sorted, unique) of an HDF5 dataset: one contiguous read when they are dense."""
    lo, hi = int(ids[0]), int(ids[-1]) + 1
    if hi - lo <= 4 * ids.size:
        return ds[lo:hi][ids - lo]
    return ds[ids.tolist()]


def _truth_rows(gt: np.ndarray, r: np.ndarray, same: np.ndarray, ids: np.ndarray, size: int,
                geom: dict[str, Any]) -> np.ndarray:
    """Ground-truth masks of rows `r` in the coordinates of crops `ids`."""
    if same.all():
        return gt[r]
    return np.stack([gt[j] if ok else _to_crop(gt[j], size, geom, int(i)) for j, ok, i in zip(r, same, ids)])


def _mask_scores(dec, crop_ids: np.ndarray, rows: np.ndarray, truth: dict[str, Any], size: int,
                 geom: dict[str, Any], K: int, notes: list[str], family: np.ndarray | None = None) -> dict[str, Any]:
    """`family` (K,): score the predicted semantic masks with each sprite replaced by its family."""
    from pipeline.evaluation.metrics import _semantic_from_hist, ari_per_image, confusion
    gt_inst = truth["instance"]
    gt_sem = truth["semantic"]
    if "instance" not in dec:
        raise SpritesError("cache/decompose.h5 has no `instance` masks: rerun `sprites run decompose --force`")
    h, w = gt_inst.shape[1:]
    rotated = geom.get("rotation")
    if rotated is not None:
        keep = np.abs(rotated[crop_ids]) < 1e-6
        if not keep.all():
            notes.append(f"{int((~keep).sum())} rotated crops left out of the mask scores (their ground truth "
                         f"cannot be cut as an upright box)")
            crop_ids, rows = crop_ids[keep], rows[keep]
            if not crop_ids.size:
                raise SpritesError("every matched crop is rotated: the mask scores need upright crops")
    as_is = _as_is(geom, crop_ids, (h, w), size)
    if not as_is.all():
        notes.append(f"{int((~as_is).sum())} ground-truth masks ({w}×{h} px) were taken as image coordinates: "
                     f"cut to each crop's box and resized (nearest) into its {size}×{size} crop, background around")
    with_sem = gt_sem is not None and "semantic" in dec
    if gt_sem is not None and "semantic" not in dec:
        notes.append("cache/decompose.h5 has no `semantic` masks: semantic scores skipped")
    if gt_sem is None:
        notes.append(f"{truth['file']} has no `semantic` dataset: semantic scores (mIoU, mACC) skipped")
    n_t = 0
    if with_sem:
        n_t = max(int(gt_sem[rows].max(initial=0)) + 1, len(truth["classes"] or []) + 1)
        n_p = max(K + 1, n_t)
        hist = np.zeros((n_t, n_p), dtype=np.int64)
    order = np.argsort(crop_ids, kind="stable")  # h5py reads need increasing indices
    crop_ids, rows, as_is = crop_ids[order], rows[order], as_is[order]
    v_all, v_fg, ok_all, ok_fg = [], [], [], []
    fg_inter = fg_union = 0
    for lo in range(0, crop_ids.size, _CHUNK):
        ids, r, same = crop_ids[lo:lo + _CHUNK], rows[lo:lo + _CHUNK], as_is[lo:lo + _CHUNK]
        p_inst = _rows(dec["instance"], ids)
        p_fg = _rows(dec["instance_fg"], ids) if "instance_fg" in dec else p_inst
        t_inst = _truth_rows(gt_inst, r, same, ids, size, geom)
        fg_inter += int(((p_inst > 0) & (t_inst > 0)).sum())
        fg_union += int(((p_inst > 0) | (t_inst > 0)).sum())
        a, sa = ari_per_image(t_inst, p_inst, with_bkg=True)
        f, sf = ari_per_image(t_inst, p_fg, with_bkg=False)
        v_all.append(a), ok_all.append(sa), v_fg.append(f), ok_fg.append(sf)
        if with_sem:
            p_sem = _rows(dec["semantic"], ids)
            if family is not None:
                p_sem = np.concatenate([[0], np.asarray(family) + 1])[p_sem]
            t_sem = _truth_rows(gt_sem, r, same, ids, size, geom)
            top = int(p_sem.max(initial=0)) + 1
            if top > n_p:  # more predicted classes than K + 1: widen the table
                hist = np.pad(hist, ((0, 0), (0, top - n_p)))
                n_p = top
            hist += confusion(t_sem, p_sem, n_t, n_p)
    if int(gt_inst[rows].max(initial=0)) <= 1:
        notes.append("one object per ground-truth image: ARI-FG is 1 when the prediction labels all of the object's "
                     "pixels alike and about 0 otherwise; mIoU is the telling figure")
    v_all, v_fg = np.concatenate(v_all), np.concatenate(v_fg)
    ok_all, ok_fg = np.concatenate(ok_all), np.concatenate(ok_fg)
    out: dict[str, Any] = {
        "ari_fg": float(v_fg[ok_fg].mean()) if ok_fg.any() else float("nan"),
        "ari": float(v_all[ok_all].mean()) if ok_all.any() else float("nan"),
        "fg_iou": fg_inter / fg_union if fg_union else float("nan"),
        "n_images": int(crop_ids.size),
        "n_fg_images": int(ok_fg.sum()),
    }
    if with_sem:
        sem = _semantic_from_hist(hist)
        nob = _semantic_from_hist(hist[1:, 1:])
        out.update({"acc": sem["acc"], "miou": sem["miou"], "macc": sem["macc"],
                    "miou_nobkg": nob["miou"], "macc_nobkg": nob["macc"], "acc_nobkg": nob["acc"],
                    "n_classes": n_t, "iou_cls": sem["iou_cls"]})
    return out


# ----------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------

def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _freshness(project: Project, stages) -> dict[str, Any]:
    """fresh | stale (+ reasons) for decompose; 'unknown' when the config cannot be read (or no
    stages were given to judge by)."""
    if stages is None:
        return {"state": "unknown", "reasons": ["no stage list given"]}
    try:
        from pipeline.core.runner import stage_status
        st = stage_status(project, project.config(), "decompose", stages)
        return {"state": st.state, "reasons": list(st.reasons)}
    except Exception as e:  # noqa: BLE001 - freshness is informative only
        return {"state": "unknown", "reasons": [str(e)]}


def evaluate(project: Project | str | Path, labels: Path | str | None = None,
             masks: Path | str | None = None, stages=None) -> dict[str, Any]:
    """Score the project's decomposition against the ground truth; write exports/eval.json.
    `stages` (the pipeline's, as the CLI hands them) let the result say whether decompose is fresh."""
    import h5py
    from pipeline.core.store import read_strings, stage_attrs

    if not isinstance(project, Project):
        project = Project.open(project)
    if labels is None and masks is None:
        gt_labels = project.ground_truth_dir / "labels.csv"
        gt_masks = project.ground_truth_dir / "masks.h5"
        labels = gt_labels if gt_labels.exists() else None
        masks = gt_masks if gt_masks.exists() else None
        if labels is None and masks is None:
            raise SpritesError(f"no ground truth given and none in {project.ground_truth_dir}: pass --labels "
                               f"labels.csv (columns source,label) or --masks masks.h5 (datasets source, instance, semantic)")
    labels = Path(labels) if labels is not None else None
    masks = Path(masks) if masks is not None else None

    dec_path, ing_path = project.stage_path("decompose"), project.stage_path("ingest")
    dec_attrs, ing_attrs = stage_attrs(dec_path), stage_attrs(ing_path)
    if dec_attrs is None or ing_attrs is None:
        raise SpritesError(f"no complete cache/{'decompose' if dec_attrs is None else 'ingest'}.h5 in {project.root}: "
                           f"run `sprites run all --project {project.root}` first")
    dec_deps = json.loads(dec_attrs.get("deps_json", "{}"))
    if dec_deps.get("ingest") not in (None, ing_attrs.get("run_id")):
        raise SpritesError("cache/decompose.h5 was made from an earlier ingest (the crops have changed since): "
                           f"run `sprites run all --project {project.root}` first")
    # read the truth first: a bad file fails fast
    label_map = names = None
    n_classes = 0
    boxed = labels is not None and has_boxes(labels)
    if boxed:
        box_sources, truth_boxes, box_ids, names, n_classes = read_box_labels(labels)
    elif labels is not None:
        label_map, names, n_classes = read_labels(labels)
    truth_masks = read_masks(masks) if masks is not None else None

    with h5py.File(ing_path, "r") as f:
        crop_sources = [_norm(s) for s in read_strings(f["source"])]
        size = int(f["crops"].shape[-1])
        geom = {k: (f[k][()] if k in f else None) for k in ("box", "size", "content_box", "rotation")}
        root = f.attrs.get("images_root")
        root = root.decode() if isinstance(root, bytes) else root

    result: dict[str, Any] = {
        "project": str(project.root),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "decompose": {"fingerprint": dec_attrs.get("fingerprint"), "created_utc": dec_attrs.get("created_utc"),
                      **_freshness(project, stages)},
        "counts": {},
        "notes": [],
    }
    family = _families(project)
    if family is not None:
        result["families"] = {"count": int(len(np.unique(family))), "family_of_sprite": family.tolist()}
    with h5py.File(dec_path, "r") as dec:
        K = int(dec.attrs.get("sprites", 0))
        n_dec = dec["front"].shape[0] if "front" in dec else -1
        if n_dec != len(crop_sources):
            raise SpritesError(f"cache/decompose.h5 has {n_dec} rows but cache/ingest.h5 {len(crop_sources)} crops: "
                               f"run `sprites run all --project {project.root}` first")
        result["sprites"] = K
        result["layers"] = int(dec.attrs.get("layers", 0))
        if labels is not None:
            if boxed:   # several labelled crops per page
                crop_ids, rows, counts = _join_boxes(crop_sources, geom["box"], box_sources, truth_boxes, root, str(labels))
                values = box_ids
            else:
                src = list(label_map)
                crop_ids, rows, counts = _join(crop_sources, src, root, "labels", str(labels))
                values = np.array([label_map[s] for s in src], dtype=np.int64)
            front = dec["front"][()].astype(np.int64)[crop_ids]
            scores = _clustering(front, values[rows], n_classes, K)
            if names is not None:
                scores["class_names"] = names
            counts.update(unlabelled=scores["unlabelled"], empty=scores["empty"])
            result["labels_file"] = str(labels)
            result["counts"]["labels"] = counts
            result["clustering"] = scores
            if family is not None:
                # families numbered 0 … F − 1, so that F families for F classes are mapped one-to-one
                ids, compact = np.unique(family, return_inverse=True)
                fam_front = np.where(front >= 0, compact[np.maximum(front, 0)], -1)
                result["families"]["clustering"] = _clustering(fam_front, values[rows], n_classes, len(ids))
        if truth_masks is not None:
            crop_ids, rows, counts = _join(crop_sources, truth_masks["source"], root, "masks", str(masks))
            result["masks_file"] = str(masks)
            result["counts"]["masks"] = counts
            result["masks"] = _mask_scores(dec, crop_ids, rows, truth_masks, size, geom, K, result["notes"])
            if family is not None and "macc" in result["masks"]:
                fam = _mask_scores(dec, crop_ids, rows, truth_masks, size, geom, K, [], family)
                result["families"]["masks"] = {k: fam[k] for k in ("acc", "miou", "macc", "miou_nobkg", "macc_nobkg") if k in fam}
    if result["decompose"]["state"] == "stale":
        result["notes"].append("decompose is stale (" + "; ".join(result["decompose"]["reasons"]) +
                               "): these scores are for the last decomposition; `sprites run all` updates it")
    result = _json_safe(result)
    path = project.exports_dir / EVAL_NAME
    _write_json(path, result)
    result["path"] = str(path)
    return result


def _families(project: Project) -> np.ndarray | None:
    """(K,) the family of each sprite from exports/catalogue.json (written by the report), or None."""
    try:
        data = json.loads((project.exports_dir / "catalogue.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    family = data.get("family_of_sprite")
    return np.asarray(family, dtype=np.int64) if family else None


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def format_summary(result: dict[str, Any]) -> list[str]:
    """One readable line per metric group, then the counts and notes."""
    lines = []
    c = result.get("clustering")
    if c:
        extra = []
        if c.get("unlabelled"):
            extra.append(f"{c['unlabelled']} unlabelled left out")
        if c.get("empty"):
            extra.append(f"{c['empty']} empty counted wrong")
        lines.append(f"clustering: acc {_pct(c['acc'])} %  nmi {_pct(c['nmi'])}  ari {_pct(c['ari'])}  "
                     f"(n = {c['n']}, K = {c['n_clusters']}, {c['n_classes']} classes"
                     + (", " + ", ".join(extra) if extra else "") + ")")
    m = result.get("masks")
    if m:
        line = f"masks: ari-fg {_pct(m['ari_fg'])}  ari {_pct(m['ari'])}  fg-iou {_pct(m.get('fg_iou'))}"
        if "miou" in m:
            line += (f"  miou {_pct(m['miou'])}  macc {_pct(m['macc'])}"
                     f"  (no bkg: miou {_pct(m['miou_nobkg'])}  macc {_pct(m['macc_nobkg'])})")
        lines.append(line + f"  (n = {m['n_images']} images)")
    f = result.get("families")
    if f and (f.get("clustering") or f.get("masks")):
        parts = [f"families: {f['count']}"]
        if f.get("clustering"):
            parts.append(f"acc {_pct(f['clustering']['acc'])} %  nmi {_pct(f['clustering']['nmi'])}")
        if f.get("masks"):
            parts.append(f"miou {_pct(f['masks'].get('miou'))}  macc {_pct(f['masks'].get('macc'))}")
        lines.append("  ".join(parts))
    for kind, counts in result.get("counts", {}).items():
        missing = []
        if counts.get("crops_without_ground_truth"):
            missing.append(f"{counts['crops_without_ground_truth']} crops without ground truth")
        if counts.get("ground_truth_without_crop"):
            missing.append(f"{counts['ground_truth_without_crop']} {kind} rows without a crop")
        if missing:
            lines.append(f"{kind}: matched {counts['matched_crops']} of {counts['crops']} crops; " + ", ".join(missing))
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return lines
