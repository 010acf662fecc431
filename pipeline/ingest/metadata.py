"""A scholar's metadata spreadsheet joined to the crops (`ingest.metadata = "meta.csv"`).

The CSV's first column is named `source` or `id`; each row is matched to the crops by that key,
the most specific match winning:

1. the crop's `source` (an image's path relative to the images root, `book.pdf#page=3`, a canvas id);
2. its canvas id;
3. its file (`book.pdf`: every page of the PDF) or its manifest (URL or file: every canvas);
4. for an `id` column only, the file name without folder and extension (`img001`) — used only
   when no two files share it (PixPlot's basename joins break on `a/1.png` vs `b/1.png`).

Every other column becomes a string dataset `metadata/<column>` in ingest.h5, aligned with the
crops ('' where a crop has no row). Rows that match no crop and sources with no row are reported,
not dropped silently.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pipeline.errors import SpritesError

__all__ = ["Metadata", "Join", "read_metadata", "join_metadata", "column_name", "manifest_columns"]


@dataclass
class Metadata:
    path: Path
    key: str                                   # 'source' or 'id'
    columns: list[str]                         # the other columns, as stored (dataset names)
    rows: list[tuple[str, list[str]]]          # (key value, values)
    duplicates: list[str] = field(default_factory=list)   # keys given twice (the first row is kept)


@dataclass
class Join:
    columns: dict[str, list[str]]              # column → one value per crop
    matched: int                               # crops with a row
    unmatched_rows: list[str]                  # key values of rows that match no crop
    unmatched_sources: list[str]               # distinct sources without a row
    ambiguous_ids: list[str] = field(default_factory=list)  # ids that name several files


def column_name(name: str, taken: set[str]) -> str:
    """A column header as an HDF5 dataset name: no '/', never empty or '.', unique."""
    base = name.strip().replace("/", "_") or "column"
    if base in (".", ".."):
        base = "column"
    out, k = base, 2
    while out in taken:
        out, k = f"{base}_{k}", k + 1
    taken.add(out)
    return out


def read_metadata(path: Path) -> Metadata:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise SpritesError(f"ingest.metadata: cannot read {path} ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise SpritesError(f"ingest.metadata: {path} is not UTF-8 text; save the spreadsheet as CSV UTF-8") from None
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    rows = [r for r in csv.reader(text.splitlines(), dialect=dialect) if any(c.strip() for c in r)]
    if not rows:
        raise SpritesError(f"ingest.metadata: {path} is empty; its first row names the columns, the first being source or id")
    header = [h.strip() for h in rows[0]]
    key = header[0].lower()
    if key not in ("source", "id"):
        raise SpritesError(f"ingest.metadata: the first column of {path} must be named source (a path relative to the "
                           f"images, book.pdf#page=3, a canvas id) or id; it is {header[0]!r}")
    taken: set[str] = set()
    columns = [column_name(h or f"column_{i + 2}", taken) for i, h in enumerate(header[1:])]
    out, seen, duplicates = [], set(), []
    for r in rows[1:]:
        value = r[0].strip() if r else ""
        if not value:
            continue
        if value in seen:
            duplicates.append(value)
            continue
        seen.add(value)
        values = [(r[i + 1].strip() if i + 1 < len(r) else "") for i in range(len(columns))]
        out.append((value, values))
    return Metadata(path, key, columns, out, duplicates)


def _stem(path: str) -> str:
    if not path or "://" in path:
        return ""
    return PurePosixPath(path.split("#", 1)[0]).stem


def join_metadata(meta: Metadata, crops: list[tuple[str, str, str, str]]) -> Join:
    """`crops`: per crop (source, canvas, file, manifest), '' where it does not apply."""
    index = {value: i for i, (value, _) in enumerate(meta.rows)}
    stems: dict[str, set[str]] = {}
    if meta.key == "id":
        for source, _, file, _ in set(crops):
            stem = _stem(file or source)
            if stem:
                stems.setdefault(stem, set()).add(file or source)
    ambiguous = sorted(s for s, files in stems.items() if len(files) > 1 and s in index)
    columns = {c: [""] * len(crops) for c in meta.columns}
    used = [False] * len(meta.rows)
    memo: dict[tuple, int | None] = {}
    missing: dict[str, None] = {}
    matched = 0
    for n, keys in enumerate(crops):
        if keys not in memo:
            source, canvas, file, manifest = keys
            candidates = [source, canvas, file, manifest]
            if meta.key == "id":
                stem = _stem(file or source)
                if stem and len(stems.get(stem, ())) == 1:
                    candidates.append(stem)
            memo[keys] = next((index[k] for k in candidates if k and k in index), None)
        row = memo[keys]
        if row is None:
            missing.setdefault(keys[0])
            continue
        matched += 1
        used[row] = True
        for c, v in zip(meta.columns, meta.rows[row][1]):
            columns[c][n] = v
    unmatched_rows = [meta.rows[i][0] for i in range(len(meta.rows)) if not used[i]]
    return Join(columns, matched, unmatched_rows, list(missing), ambiguous)


def manifest_columns(metadata: dict[str, list[tuple[str, str]]], manifests: list[str],
                     taken: set[str]) -> dict[str, list[str]]:
    """IIIF manifests' `metadata` (label, value) pairs as columns aligned with the crops.

    `metadata`: manifest key → its pairs; `manifests`: each crop's manifest key ('' for none);
    `taken`: column names already used (the scholar's CSV wins over a manifest's label).
    """
    columns: dict[str, list[str]] = {}
    labels = dict.fromkeys(label for pairs in metadata.values() for label, _ in pairs)
    for label in labels:
        if column_name(label, set()) in taken:
            continue
        values = {key: "; ".join(v for lbl, v in pairs if lbl == label) for key, pairs in metadata.items()}
        columns[column_name(label, taken)] = [values.get(m, "") for m in manifests]
    return columns
