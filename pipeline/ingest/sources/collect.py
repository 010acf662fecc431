"""From `ingest.images` + `ingest.sources` to the list of pages to cut.

A source is written as a string; what it is follows from its shape:

| source                         | kind                                                        |
|--------------------------------|-------------------------------------------------------------|
| `http://…`, `https://…`        | a IIIF manifest (or collection) URL                         |
| a folder                       | its images and PDFs, recursively (hidden files skipped)     |
| a glob (`scans/**/*.jpg`)      | the matching images and PDFs                                |
| `*.pdf`                        | a PDF: every page                                           |
| `*.json`, `*.jsonld`           | a IIIF manifest (or collection) file                        |
| `*.txt`                        | a list of sources, one a line (`#` comments), relative to the list's folder |
| an image file                  | that image                                                  |

Relative paths are relative to the project folder. `source` values of local pages are relative to
the **images root**, the deepest folder holding every local source (the folder itself for a
single folder, as before); a PDF page is `book.pdf#page=3` (1-based); a IIIF page is its canvas id.

No network is touched by `local_inputs` (what `sprites status` digests): a manifest URL enters the
digest as its URL, a local manifest file by the hash of its content. A remote manifest is fetched
once into the download cache; delete `cache/downloads` to fetch a changed one again.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from pipeline.errors import SpritesError
from pipeline.ingest.images import DOCUMENT_EXTENSIONS, IMAGE_EXTENSIONS, list_images
from pipeline.ingest.sources.boxes import Box, read_boxes
from pipeline.ingest.sources.http import Fetcher, FetchError, is_url
from pipeline.ingest.sources.iiif import ManifestError, parse_manifest
from pipeline.ingest.sources.pages import Page

__all__ = ["Spec", "LocalInputs", "project_path", "resolve_specs", "local_inputs", "Plan", "plan_pages",
           "check_options", "DEFAULT_IMAGES"]

DEFAULT_IMAGES = "images"
MANIFEST_EXTENSIONS = (".json", ".jsonld")
LIST_EXTENSIONS = (".txt",)


@dataclass(frozen=True)
class Spec:
    kind: str        # files (folder, glob or image file) | pdf | manifest | list
    location: str    # absolute path, glob or URL
    given: str       # as written by the user


def check_options(cfg, project_root: Path) -> None:
    """Checks across ingest keys, made before any work (errors name the key and the fix)."""
    def need(ok, message):
        if not ok:
            raise SpritesError(message)
    need(cfg.pdf_dpi >= 18 and cfg.pdf_dpi <= 1200, f"ingest.pdf_dpi = {cfg.pdf_dpi} is out of range: use 72–600 (150–300 is typical)")
    need(cfg.iiif_size >= 0, f"ingest.iiif_size must be 0 (full size) or a size in px; got {cfg.iiif_size}")
    need(cfg.iiif_delay >= 0, f"ingest.iiif_delay must be at least 0 seconds; got {cfg.iiif_delay}")
    need(cfg.iiif_retries >= 0, f"ingest.iiif_retries must be at least 0; got {cfg.iiif_retries}")
    need(cfg.iiif_timeout > 0, f"ingest.iiif_timeout must be more than 0 seconds; got {cfg.iiif_timeout}")
    need(cfg.min_size >= 1, f"ingest.min_size must be at least 1 px; got {cfg.min_size}")
    need(cfg.max_size == 0 or cfg.max_size >= cfg.min_size, f"ingest.max_size = {cfg.max_size} is below ingest.min_size = {cfg.min_size} (0 = no limit)")
    need(cfg.max_aspect >= 1, f"ingest.max_aspect must be at least 1; got {cfg.max_aspect}")
    need(cfg.margin >= 0 and cfg.merge_distance >= 0, "ingest.margin and ingest.merge_distance must be at least 0")
    need(cfg.tile >= 8, f"ingest.tile must be at least 8 px; got {cfg.tile}")
    need(0 <= cfg.overlap < cfg.tile, f"ingest.overlap = {cfg.overlap} must be at least 0 and below ingest.tile = {cfg.tile}")
    if cfg.crop == "boxes":
        need(bool(cfg.boxes), 'ingest.crop = "boxes" needs ingest.boxes = "FILE" (a CSV source,x,y,w,h[,label] or a W3C annotation JSON)')
    for key in ("boxes", "metadata"):
        value = getattr(cfg, key)
        if value and not project_path(value, project_root).is_file():
            raise SpritesError(f"ingest.{key}: no such file {project_path(value, project_root)}")


def project_path(value: str, base: Path) -> Path:
    """A path as written in sprites.toml (`~` expanded), relative to `base` (the project folder)."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else Path(base) / p


def _classify(value: str, base: Path, depth: int = 0) -> list[Spec]:
    value = value.strip()
    if is_url(value):
        return [Spec("manifest", value, value)]
    path = project_path(value, base)
    if glob.has_magic(value):
        return [Spec("files", str(path), value)]
    if path.is_dir():
        return [Spec("files", str(path), value)]
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in DOCUMENT_EXTENSIONS:
            return [Spec("pdf", str(path), value)]
        if suffix in MANIFEST_EXTENSIONS:
            return [Spec("manifest", str(path), value)]
        if suffix in LIST_EXTENSIONS:
            if depth >= 3:
                raise SpritesError(f"{path}: lists of sources nest too deep (a list naming a list naming a list…)")
            specs = []
            for line in path.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    specs += _classify(line, path.parent, depth + 1)
            return specs
        if suffix in IMAGE_EXTENSIONS:
            return [Spec("files", str(path), value)]
        raise SpritesError(f"source {value}: not a known kind of source (a folder, a glob, an image, a PDF, a IIIF manifest .json or URL, or a .txt list)")
    raise SpritesError(f"images not found: {path} is neither a folder, a file nor a glob that matches; set ingest.images (or ingest.sources) in sprites.toml")


def resolve_specs(root: Path, cfg) -> list[Spec]:
    """The sources of a project: `ingest.images` first (when set), then `ingest.sources`."""
    values = [cfg.images] if cfg.images else []
    if cfg.sources and cfg.images == DEFAULT_IMAGES and not (Path(root) / DEFAULT_IMAGES).exists():
        values = []  # the untouched default beside explicit sources
    values += list(cfg.sources)
    if not values:
        raise SpritesError("no sources: set ingest.images (or ingest.sources) in sprites.toml")
    return [s for v in values for s in _classify(v, Path(root))]


@dataclass
class LocalInputs:
    root: Path                                   # the images root
    files: list[tuple[str, str]]                 # (source-relative path, absolute path), images and PDFs
    ignored: list[tuple[str, str]]               # (relative path, reason)
    manifests: list[tuple[str, str]]             # (manifest key as stored, location: URL or absolute path)
    specs: list[Spec] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)   # sources given twice (read once)

    def keys(self) -> list:
        """The digest material: (path, size, mtime) of files, URL or content hash of manifests."""
        out = []
        for rel, path in self.files:
            st = os.stat(path)
            out.append((rel, st.st_size, st.st_mtime_ns))
        for key, location in self.manifests:
            if is_url(location):
                out.append(("manifest", location))
            else:
                out.append(("manifest", key, hashlib.sha256(Path(location).read_bytes()).hexdigest()))
        return out


def _rel(path: str, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _relative_to(root: str):
    """A fast `_rel` for many absolute paths under one root (plain string work, no pathlib)."""
    prefix = root.rstrip(os.sep) + os.sep
    slash = os.sep != "/"

    def rel(path: str) -> str:
        if path.startswith(prefix):
            out = path[len(prefix):]
            return out.replace(os.sep, "/") if slash else out
        return _rel(path, Path(root))
    return rel


def _project_files(project: Path, listing_root: Path):
    """A test `own(rel)`: is this file of the listing the project's own (its config, cache, report,
    exports)? Such files are never images of the collection, e.g. when the project folder lies
    inside the scanned folder."""
    project, listing_root = Path(os.path.abspath(project)), Path(os.path.abspath(listing_root))
    if project == listing_root:
        own_parts = {"cache", "report", "exports", "templates", "sprites.toml"}

        def own(rel: str) -> bool:
            first = rel.split("/", 1)[0]
            return first in own_parts or first.startswith("report.")
        return own
    if listing_root in project.parents:
        inside = "/".join(project.relative_to(listing_root).parts) + "/"
        return lambda rel: (rel + "/").startswith(inside)
    return lambda rel: False


def local_inputs(root: Path, cfg) -> LocalInputs:
    """List the local files of every source (no network, no PDF opened)."""
    specs = resolve_specs(root, cfg)
    listings, local_roots = [], []
    for spec in specs:
        if spec.kind == "files":
            listing = list_images(spec.location)
            listings.append(listing)
            local_roots.append(os.path.abspath(listing.root))
        elif spec.kind == "pdf":
            local_roots.append(os.path.dirname(os.path.abspath(spec.location)))
    images_root = Path(os.path.commonpath(local_roots)) if local_roots else Path(root)
    files, ignored, seen, duplicates = [], [], set(), []
    rel_to_root = _relative_to(os.path.abspath(images_root))

    def add(path: str):
        path = os.path.normpath(path) if os.path.isabs(path) else os.path.abspath(path)
        if path not in seen:
            seen.add(path)
            files.append((rel_to_root(path), path))
        elif spec.kind == "pdf":
            duplicates.append(spec.given)

    listing_iter = iter(listings)
    manifests = []
    for spec in specs:
        if spec.kind == "files":
            listing = next(listing_iter)
            own = _project_files(Path(root), Path(listing.root))
            base = os.path.abspath(listing.root)
            for rel in listing.files:
                if not own(rel):
                    add(os.path.join(base, rel))
            ignored += [(_rel(os.path.join(listing.root, r), images_root), why) for r, why in listing.ignored if not own(r)]
        elif spec.kind == "pdf":
            add(spec.location)
        elif spec.kind == "manifest":
            key = spec.location if is_url(spec.location) else _manifest_key(spec.location, images_root)
            if (key, spec.location) not in manifests:
                manifests.append((key, spec.location))
            else:
                duplicates.append(spec.given)
    return LocalInputs(images_root, files, ignored, manifests, specs, duplicates)


def _manifest_key(path: str, images_root: Path) -> str:
    rel = os.path.relpath(os.path.abspath(path), images_root)
    return Path(rel).as_posix() if not rel.startswith("..") else Path(os.path.abspath(path)).as_posix()


# ---------------------------------------------------------------------------------------------
# planning: pages of files, PDFs and manifests
# ---------------------------------------------------------------------------------------------

@dataclass
class ManifestRecord:
    key: str                       # URL or path, as stored in `manifest`
    label: str = ""
    version: int = 0
    canvases: int = 0
    metadata: list[tuple[str, str]] = field(default_factory=list)
    error: str = ""


@dataclass
class Plan:
    root: Path
    pages: list[Page]
    skipped: list[tuple[str, str]]                     # (source, reason)
    inputs: LocalInputs
    manifests: list[ManifestRecord] = field(default_factory=list)
    unused_boxes: list[str] = field(default_factory=list)   # box sources matching no page
    notes: list[str] = field(default_factory=list)           # warnings for the log


def _sha1_file(path: str) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pdf_pages(rel: str, path: str) -> tuple[list[Page], str | None]:
    from pipeline.ingest.sources.pdf import PdfError, page_count
    try:
        n = page_count(path)
    except PdfError as e:
        return [], str(e)
    if n == 0:
        return [], "the PDF has no pages"
    checksum = _sha1_file(path)
    return [Page(f"{rel}#page={i}", "pdf", path, rel, i, checksum) for i in range(1, n + 1)], None


def _load_manifest(location: str, fetcher: Fetcher) -> object:
    if is_url(location):
        return fetcher.fetch_json(location)
    import json
    try:
        return json.loads(Path(location).read_text(encoding="utf-8-sig"))
    except ValueError as e:
        raise ManifestError(f"not a IIIF manifest (not JSON: {e})") from None
    except OSError as e:
        raise ManifestError(f"cannot read the file ({e.strerror or e})") from None


def plan_pages(project_root: Path, cfg, fetcher: Fetcher, log: Callable[[str], None] = print,
               progress: bool = False, inputs: LocalInputs | None = None) -> Plan:
    """Every page of every source, manifests read (from the cache when fetched before); `inputs`
    is the listing already made for the fingerprint (None: list now)."""
    from tqdm import tqdm

    inputs = inputs if inputs is not None else local_inputs(project_root, cfg)
    plan = Plan(inputs.root, [], list(inputs.ignored), inputs)
    plan.notes += [f"source listed twice, read once: {d}" for d in inputs.duplicates]
    for rel, path in inputs.files:
        if path.lower().endswith(DOCUMENT_EXTENSIONS):
            pages, error = _pdf_pages(rel, path)
            if error:
                plan.skipped.append((rel, error))
            plan.pages += pages
        else:
            plan.pages.append(Page(rel, "image", path, rel))
    seen_canvases: dict[tuple[str, str], str] = {}
    todo = list(inputs.manifests)
    seen_manifests: set[str] = set()
    bar = tqdm(total=len(todo), desc="manifests", unit="manifest", disable=not progress or len(todo) < 2, mininterval=0.5)
    while todo:
        key, location = todo.pop(0)
        bar.update(1)
        if location in seen_manifests:
            plan.notes.append(f"source listed twice, read once: {key}")
            continue
        seen_manifests.add(location)
        record = ManifestRecord(key)
        plan.manifests.append(record)
        try:
            info = parse_manifest(_load_manifest(location, fetcher))
        except (FetchError, ManifestError) as e:
            record.error = str(e)
            plan.skipped.append((key, f"manifest: {e}"))
            continue
        record.label, record.version, record.canvases, record.metadata = info.label, info.version, info.canvases, info.metadata
        if info.manifests:  # a collection: read its manifests next, in order
            todo = [(m, m) for m in info.manifests] + todo
            bar.total += len(info.manifests)
            continue
        duplicates = 0
        for image in info.images:
            source = image.canvas or f"{key}#canvas={image.index}"
            ident = (source, image.image_id or image.service)
            if ident in seen_canvases:
                duplicates += 1
                continue
            seen_canvases[ident] = key
            plan.pages.append(Page(
                source, "iiif", file="", page=image.index, manifest=key, manifest_label=info.label,
                canvas=image.canvas, canvas_label=image.canvas_label, service=image.service,
                service_version=image.service_version, level0=image.level0, image_id=image.image_id,
                full_size=image.image_size, canvas_size=image.canvas_size, target=image.target))
        if duplicates:
            plan.notes.append(f"manifest {key}: {duplicates} canvas images already came from another manifest "
                              "(a duplicate manifest?); ingested once")
    bar.close()
    if cfg.crop == "boxes":
        _attach_boxes(plan, read_boxes(project_path(cfg.boxes, project_root)))
    return plan


def _attach_boxes(plan: Plan, boxes: dict[str, list[Box]]) -> None:
    """Give each page its boxes; pages without any are dropped (nothing to cut, nothing to fetch)."""
    used: set[str] = set()
    kept = []
    for page in plan.pages:
        keys = [page.source, page.canvas, page.image_id]
        if page.kind != "iiif":
            keys.append(Path(page.path).as_posix() + (f"#page={page.page}" if page.kind == "pdf" else ""))
        found: list[Box] = []
        for k in keys:
            if k and k in boxes and k not in used:
                found += boxes[k]
                used.add(k)
        if found:
            kept.append(replace(page, boxes=tuple(found)))
    if plan.pages and not kept:
        raise SpritesError(f"none of the {len(plan.pages)} pages is named in ingest.boxes: its sources look like "
                           f"{next(iter(boxes), '?')!r}, the pages' like {plan.pages[0].source!r} "
                           "(a path relative to the images root, book.pdf#page=3, or a canvas id)")
    plan.notes.append(f"{len(kept)} of {len(plan.pages)} pages have boxes")
    plan.pages = kept
    plan.unused_boxes = [k for k in boxes if k not in used]
