"""Writing a generated example collection: streamed, deterministic and atomic.

Everything is first written under `root/.example.partial/` (PNG images one by one, masks to a
chunked HDF5 file in blocks of `BLOCK` images, so memory stays bounded whatever the count), then
`images/` and `ground_truth/` are renamed into place, `ground_truth/` last: a collection whose
`ground_truth/labels.csv` exists is complete. An interrupted generation leaves only the hidden
partial folder, which the next generation removes. `write_pages` does the same for pages holding
several labelled boxes each (`labels.csv`: `source,x,y,w,h,label`).

Same arrays → same bytes: PNGs are encoded by OpenCV with fixed settings and the HDF5 datasets
are created without timestamps.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import h5py
import numpy as np

__all__ = ["Sample", "Page", "write_collection", "write_pages", "make_rng", "class_labels", "PARTIAL"]

PARTIAL = ".example.partial"
BLOCK = 64  # images per HDF5 chunk and per buffered mask write


@dataclass
class Sample:
    """One generated image. `image` is H×W (grey) or H×W×3 RGB uint8; `source` the path relative
    to `images/` (POSIX); `semantic`/`instance` H×W uint8 masks (objects/scenes examples only)."""
    source: str
    image: np.ndarray
    label: int
    semantic: np.ndarray | None = None
    instance: np.ndarray | None = None


@dataclass
class Page:
    """One generated page holding several labelled shapes. `image` is H×W (grey) or H×W×3 RGB
    uint8; `source` the path relative to `images/` (POSIX); `boxes` (n, 4) integer x, y, w, h in
    the page's pixels and `labels` (n,) their class indices."""
    source: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def make_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(int(seed)))


def _encode_png(image: np.ndarray) -> bytes:
    if image.ndim == 3:
        image = np.ascontiguousarray(image[..., ::-1])  # RGB → OpenCV's BGR
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 arrays
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _check_free(path: Path) -> None:
    """Refuse to overwrite a user's folder; silently drop an empty one."""
    from pipeline.errors import SpritesError
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()
    elif path.exists():
        raise SpritesError(f"{path} already exists: choose an empty project folder, "
                           "or pass --force to replace the example")


class _MaskWriter:
    """Appends semantic/instance masks to chunked, compressed HDF5 datasets in blocks."""

    def __init__(self, path: Path, count: int, size: int):
        self.file = h5py.File(path, "w", libver="earliest", track_order=False)
        opts = dict(shape=(count, size, size), dtype=np.uint8, chunks=(min(BLOCK, max(count, 1)), size, size),
                    compression="gzip", compression_opts=4, track_times=False)
        self.sem = self.file.create_dataset("semantic", **opts)
        self.ins = self.file.create_dataset("instance", **opts)
        self.buf_sem = np.zeros((BLOCK, size, size), np.uint8)
        self.buf_ins = np.zeros((BLOCK, size, size), np.uint8)
        self.start = self.fill = 0

    def add(self, semantic: np.ndarray, instance: np.ndarray) -> None:
        self.buf_sem[self.fill] = semantic
        self.buf_ins[self.fill] = instance
        self.fill += 1
        if self.fill == BLOCK:
            self.flush()

    def flush(self) -> None:
        if self.fill:
            end = self.start + self.fill
            self.sem[self.start:end] = self.buf_sem[:self.fill]
            self.ins[self.start:end] = self.buf_ins[:self.fill]
            self.start, self.fill = end, 0

    def close(self, sources: list[str], classes: list[str]) -> None:
        self.flush()
        self.file.create_dataset("source", data=np.array(sources, dtype=object),
                                 dtype=h5py.string_dtype("utf-8"), track_times=False)
        self.file.attrs.create("classes", data=np.array(classes, dtype=object), dtype=h5py.string_dtype("utf-8"))
        self.file.close()


def class_labels(frequency: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """The class of each of `count` items: quotas by `frequency` (largest remainder, every class at
    least once when count allows), shuffled."""
    share = frequency / frequency.sum() * count
    quota = np.floor(share).astype(int)
    quota[np.argsort(quota - share, kind="stable")[:count - quota.sum()]] += 1
    if count >= len(frequency):
        while (quota == 0).any():
            quota[np.argmax(quota)] -= 1
            quota[np.argmin(quota)] += 1
    return rng.permutation(np.repeat(np.arange(len(frequency)), quota))


def _write_atomically(root: Path, write: Callable[[Path], None]) -> None:
    """`write(partial)` fills `partial/images` and `partial/ground_truth`, which are then renamed
    into `root`, `ground_truth/` last (see the module doc)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    images_dir, truth_dir = root / "images", root / "ground_truth"
    _check_free(images_dir)
    _check_free(truth_dir)
    partial = root / PARTIAL
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "images").mkdir(parents=True)
    (partial / "ground_truth").mkdir()
    try:
        write(partial)
        os.replace(partial / "images", images_dir)
        os.replace(partial / "ground_truth", truth_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def write_collection(root: Path, samples: Iterable[Sample], count: int, size: int, classes: list[str],
                     readme: str, masks: bool) -> None:
    """Stream `count` samples into `root/images/` and `root/ground_truth/` (see the module doc)."""
    _write_atomically(root, lambda partial: _write_all(partial, samples, count, size, classes, readme, masks))


def _write_all(partial: Path, samples: Iterable[Sample], count: int, size: int, classes: list[str],
               readme: str, masks: bool) -> None:
    truth = partial / "ground_truth"
    writer = _MaskWriter(truth / "masks.h5", count, size) if masks else None
    sources: list[str] = []
    labels: list[int] = []
    made_dirs: set[str] = set()
    try:
        for sample in _take(samples, count):
            folder, _, _ = sample.source.rpartition("/")
            if folder and folder not in made_dirs:
                (partial / "images" / folder).mkdir(parents=True, exist_ok=True)
                made_dirs.add(folder)
            (partial / "images" / sample.source).write_bytes(_encode_png(sample.image))
            sources.append(sample.source)
            labels.append(int(sample.label))
            if writer is not None:
                writer.add(sample.semantic, sample.instance)
        if writer is not None:
            writer.close(sources, classes)
            writer = None
    finally:
        if writer is not None:
            writer.file.close()
    if len(set(sources)) != len(sources):  # pragma: no cover - generators name files by index
        raise RuntimeError("duplicate image names in a generated example")
    with open(truth / "labels.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["source", "label"])
        out.writerows(zip(sources, labels))
    (truth / "classes.txt").write_text("".join(c + "\n" for c in classes), encoding="utf-8")
    (truth / "README.md").write_text(readme.strip() + "\n", encoding="utf-8")


def write_pages(root: Path, pages: Iterable[Page], classes: list[str], readme: str) -> None:
    """Stream pages into `root/images/` and their boxes into `root/ground_truth/labels.csv`
    (`source,x,y,w,h,label`, one row per box), with `classes.txt` and `README.md`; written under
    the partial folder and renamed into place as `write_collection` does, `ground_truth/` last."""
    _write_atomically(root, lambda partial: _write_pages(partial, pages, classes, readme))


def _write_pages(partial: Path, pages: Iterable[Page], classes: list[str], readme: str) -> None:
    truth = partial / "ground_truth"
    rows: list[list] = []
    sources: set[str] = set()
    made_dirs: set[str] = set()
    for page in pages:
        if page.source in sources:  # pragma: no cover - generators name pages by index
            raise RuntimeError("duplicate page names in a generated example")
        sources.add(page.source)
        folder, _, _ = page.source.rpartition("/")
        if folder and folder not in made_dirs:
            (partial / "images" / folder).mkdir(parents=True, exist_ok=True)
            made_dirs.add(folder)
        (partial / "images" / page.source).write_bytes(_encode_png(page.image))
        for (x, y, w, h), label in zip(np.asarray(page.boxes).tolist(), np.asarray(page.labels).tolist()):
            rows.append([page.source, int(x), int(y), int(w), int(h), int(label)])
    with open(truth / "labels.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["source", "x", "y", "w", "h", "label"])
        out.writerows(rows)
    (truth / "classes.txt").write_text("".join(c + "\n" for c in classes), encoding="utf-8")
    (truth / "README.md").write_text(readme.strip() + "\n", encoding="utf-8")


def _take(samples: Iterable[Sample], count: int) -> Iterator[Sample]:
    n = 0
    for sample in samples:
        if n == count:
            break
        yield sample
        n += 1
    if n != count:  # pragma: no cover - generators are infinite or exact
        raise RuntimeError(f"generator produced {n} images, expected {count}")
