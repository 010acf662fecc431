"""IIIF Presentation manifests (v2 and v3, collections too) and the Image API (v2 and v3).

Every canvas of a manifest is read (not only the first), with every image painted on it.

* **Presentation 2**: `sequences[0].canvases[].images[]` (`motivation sc:painting`) →
  `resource` (`@id`, `width`, `height`, `service`; an `oa:Choice` uses its `default`), painted
  `on` the canvas or on a `#xywh=` part of it.
* **Presentation 3**: `items[]` (Canvas) → `items[]` (AnnotationPage) → `items[]` (Annotation,
  `motivation painting`) → `body` (`id`, `width`, `height`, `service[]` of type `ImageService2`
  or `ImageService3` — a v3 manifest may well point at a v2 image service), `target`.
* **Image API**: the service's `info.json` is read (and cached) for the full size and the server's
  limits; the page image is then requested as `{base}/full/{w},/0/default.jpg` (v2) or
  `{base}/full/{w},{h}/0/default.jpg` (v3) with the longer side at most `ingest.iiif_size` and
  `maxWidth` / `maxHeight` (which defaults to `maxWidth`) / `maxArea` respected; a level-0 server
  gets one of its listed `sizes`. Without an image service the resource itself is downloaded.

Coordinates: crops are cut from the fetched image and their boxes are scaled back to the
full-resolution **canvas** coordinates (through the image's full size and, when the image paints
only a part of the canvas, that part's `xywh`). `iiif_region` is the Image API URL of the crop's
region in full-resolution *image* pixels, ready to open in a browser or a viewer.
"""

from __future__ import annotations

import html
import math
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CanvasImage", "ManifestInfo", "ManifestError", "parse_manifest", "text_value",
           "choose_size", "image_request", "region_url", "parse_xywh", "service_version"]


class ManifestError(Exception):
    """The document is not a usable IIIF manifest; the message says why."""


@dataclass
class CanvasImage:
    """One image painted on one canvas."""
    canvas: str                      # canvas id (URI)
    canvas_label: str
    index: int                       # 1-based position of the canvas in the manifest
    canvas_size: tuple[int, int]     # canvas width, height (0, 0 when not given)
    image_id: str                    # the image resource's id (a URL)
    image_size: tuple[int, int]      # the resource's width, height from the manifest (0, 0 unknown)
    service: str = ""                # Image API base URL ('' = no service: download image_id)
    service_version: int = 2
    level0: bool = False
    target: tuple[int, int, int, int] | None = None   # the part of the canvas painted (xywh), None = all


@dataclass
class ManifestInfo:
    version: int                     # Presentation API version (2 or 3)
    label: str
    metadata: list[tuple[str, str]] = field(default_factory=list)
    images: list[CanvasImage] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)   # for a collection: its manifests' URLs
    canvases: int = 0


# ---------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------

_TAG = re.compile(r"<[^>]+>")


def text_value(value: Any) -> str:
    """A label or metadata value in any of the shapes v2 and v3 allow, as plain text.

    v2: a string, a `{"@value", "@language"}` object, or a list of them; v3: a language map
    `{"en": ["…"], "none": ["…"]}` (English first, then `none`, then the others). HTML is stripped.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)):
        text = str(value)
    elif isinstance(value, list):
        parts = [text_value(v) for v in value]
        text = "; ".join(p for p in parts if p)
    elif isinstance(value, dict):
        if "@value" in value or "value" in value and not isinstance(value.get("value"), (list, dict)):
            text = text_value(value.get("@value", value.get("value")))
        else:
            langs = sorted(value, key=lambda k: (k not in ("en", "none"), k != "en", k))
            text = text_value(value[langs[0]]) if langs else ""
            return text
    else:
        return ""
    return html.unescape(_TAG.sub("", text)).strip()


def _id(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        return str(obj.get("id") or obj.get("@id") or "")
    return ""


def _type(obj: dict) -> str:
    t = obj.get("type") or obj.get("@type") or ""
    if isinstance(t, list):
        t = t[0] if t else ""
    return str(t).split(":")[-1]


def _int(value: Any) -> int:
    try:
        return max(0, int(round(float(value))))
    except (TypeError, ValueError):
        return 0


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


_XYWH = re.compile(r"xywh=(?:(pixel|percent):)?\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)")


def parse_xywh(text: str) -> tuple[str, tuple[float, float, float, float]] | None:
    """'…#xywh=10,20,30,40' or 'xywh=percent:1,2,3,4' → ('pixel' | 'percent', (x, y, w, h))."""
    m = _XYWH.search(text or "")
    if not m:
        return None
    return (m.group(1) or "pixel"), tuple(float(v) for v in m.groups()[1:])


# ---------------------------------------------------------------------------------------------
# manifests
# ---------------------------------------------------------------------------------------------

def _contexts(doc: dict) -> str:
    ctx = doc.get("@context", "")
    return " ".join(c if isinstance(c, str) else "" for c in _as_list(ctx))


def presentation_version(doc: dict) -> int:
    ctx = _contexts(doc)
    if "presentation/3" in ctx:
        return 3
    if "presentation/2" in ctx or "sequences" in doc or "@type" in doc:
        return 2
    return 3 if "items" in doc else 2


def service_version(service: dict) -> int:
    """2 or 3, from the service's type, context or profile (info.json, when read, has the last word)."""
    t = _type(service)
    if t == "ImageService3":
        return 3
    if t == "ImageService2" or t == "ImageService1":
        return 2
    ctx = _contexts(service) + " " + " ".join(p for p in _as_list(service.get("profile")) if isinstance(p, str))
    if "image/3" in ctx:
        return 3
    if "image/2" in ctx or "image/1" in ctx:
        return 2
    return 2


def _image_service(resource: dict) -> dict | None:
    for service in _as_list(resource.get("service")):
        if not isinstance(service, dict):
            continue
        t = _type(service)
        profile = " ".join(p for p in _as_list(service.get("profile")) if isinstance(p, str))
        ctx = _contexts(service)
        if t.startswith("ImageService") or "image" in ctx or "level" in profile or "image/" in profile:
            return service
    return None


def _level0(service: dict) -> bool:
    profile = " ".join(p for p in _as_list(service.get("profile")) if isinstance(p, str))
    return "level0" in profile


def _target(on: Any, canvas_id: str) -> tuple[int, int, int, int] | None:
    """The xywh part of the canvas an image is painted on, or None for the whole canvas."""
    for t in _as_list(on):
        if isinstance(t, str):
            got = parse_xywh(t.partition("#")[2])
        elif isinstance(t, dict):
            selector = t.get("selector") or {}
            got = None
            for s in _as_list(selector):
                if isinstance(s, dict):
                    got = parse_xywh(str(s.get("value", "")))
                    if got:
                        break
            if not got:
                got = parse_xywh(_id(t).partition("#")[2])
        else:
            got = None
        if got and got[0] == "pixel":
            x, y, w, h = got[1]
            return int(x), int(y), int(w), int(h)
    return None


def _image_from_resource(resource: Any) -> dict | None:
    if not isinstance(resource, dict):
        return None
    t = _type(resource)
    if t == "Choice":  # v2 oa:Choice (default + item) or v3 Choice (items, first = default)
        default = resource.get("default") or (_as_list(resource.get("items")) or [None])[0]
        if default is None:
            default = (_as_list(resource.get("item")) or [None])[0]
        return _image_from_resource(default)
    if t == "SpecificResource":
        return _image_from_resource(resource.get("source") or resource.get("full"))
    return resource


def _canvas_image(canvas: dict, index: int, resource: dict, on: Any) -> CanvasImage | None:
    resource = _image_from_resource(resource)
    if resource is None:
        return None
    image_id = _id(resource)
    service = _image_service(resource)
    if not image_id and service is None:
        return None
    cid = _id(canvas)
    return CanvasImage(
        canvas=cid, canvas_label=text_value(canvas.get("label")), index=index,
        canvas_size=(_int(canvas.get("width")), _int(canvas.get("height"))),
        image_id=image_id, image_size=(_int(resource.get("width")), _int(resource.get("height"))),
        service=_service_base(_id(service)) if service else "",
        service_version=service_version(service) if service else 2,
        level0=_level0(service) if service else False,
        target=_target(on, cid))


def _service_base(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/info.json")] if url.endswith("/info.json") else url


def _metadata(doc: dict) -> list[tuple[str, str]]:
    pairs = []
    for item in _as_list(doc.get("metadata")):
        if isinstance(item, dict):
            label, value = text_value(item.get("label")), text_value(item.get("value"))
            if label:
                pairs.append((label, value))
    return pairs


def parse_manifest(doc: Any) -> ManifestInfo:
    """Canvases and their images (or, for a collection, its manifests) of a v2 or v3 document."""
    if not isinstance(doc, dict):
        raise ManifestError("not a IIIF manifest (the JSON is not an object)")
    version = presentation_version(doc)
    kind = _type(doc)
    info = ManifestInfo(version=version, label=text_value(doc.get("label")), metadata=_metadata(doc))
    if kind == "Collection":
        members = _as_list(doc.get("manifests")) + _as_list(doc.get("members")) + _as_list(doc.get("items"))
        info.manifests = [_id(m) for m in members if _id(m) and _type(m) in ("Manifest", "Collection", "")]
        if not info.manifests:
            raise ManifestError("IIIF collection lists no manifests")
        return info
    if kind not in ("Manifest", ""):
        raise ManifestError(f"not a IIIF manifest (its type is {kind!r})")
    if version == 2:
        sequences = _as_list(doc.get("sequences"))
        canvases = _as_list(sequences[0].get("canvases")) if sequences and isinstance(sequences[0], dict) else []
        for i, canvas in enumerate(c for c in canvases if isinstance(c, dict)):
            for anno in _as_list(canvas.get("images")):
                if isinstance(anno, dict):
                    image = _canvas_image(canvas, i + 1, anno.get("resource"), anno.get("on"))
                    if image:
                        info.images.append(image)
        info.canvases = len(canvases)
    else:
        canvases = [c for c in _as_list(doc.get("items")) if isinstance(c, dict) and _type(c) in ("Canvas", "")]
        for i, canvas in enumerate(canvases):
            for page in _as_list(canvas.get("items")):
                for anno in _as_list(page.get("items") if isinstance(page, dict) else None):
                    if not isinstance(anno, dict):
                        continue
                    motivation = " ".join(str(m) for m in _as_list(anno.get("motivation")))
                    if motivation and "painting" not in motivation:
                        continue
                    for body in _as_list(anno.get("body")):
                        body = _image_from_resource(body)
                        if isinstance(body, dict) and _type(body) not in ("Image", "", "ImageService3", "ImageService2"):
                            continue  # sound, video, text
                        image = _canvas_image(canvas, i + 1, body, anno.get("target"))
                        if image:
                            info.images.append(image)
        info.canvases = len(canvases)
    if info.canvases == 0:
        raise ManifestError("the manifest lists no canvases (no sequences[0].canvases in v2, no items in v3)")
    if not info.images:
        raise ManifestError(f"none of the {info.canvases} canvases has an image")
    return info


# ---------------------------------------------------------------------------------------------
# Image API
# ---------------------------------------------------------------------------------------------

def choose_size(full: tuple[int, int], target: int, info: dict | None = None) -> tuple[int, int]:
    """The (w, h) to request: longer side ≤ `target` (0 = full size), within the server's limits.

    `maxWidth`, `maxHeight` (= `maxWidth` when absent) and `maxArea` bound the size; a level-0
    server (fixed `sizes` only) gets the largest listed size that fits, else the smallest listed.
    """
    info = info or {}
    W, H = full
    if W <= 0 or H <= 0:
        return 0, 0
    scale = 1.0 if target <= 0 else min(1.0, target / max(W, H))
    max_w = _int(info.get("maxWidth"))
    max_h = _int(info.get("maxHeight")) or max_w
    max_area = _int(info.get("maxArea"))
    if max_w:
        scale = min(scale, max_w / W)
    if max_h:
        scale = min(scale, max_h / H)
    if max_area:
        scale = min(scale, math.sqrt(max_area / (W * H)))
    w, h = max(1, math.floor(W * scale + 1e-9)), max(1, math.floor(H * scale + 1e-9))
    sizes = [(_int(s.get("width")), _int(s.get("height"))) for s in _as_list(info.get("sizes")) if isinstance(s, dict)]
    sizes = [s for s in sizes if s[0] and s[1]]
    if sizes and _level0(info):
        fitting = [s for s in sizes if s[0] <= w and s[1] <= h]
        return max(fitting) if fitting else min(sizes)
    return w, h


def image_request(base: str, version: int, size: tuple[int, int], full: tuple[int, int]) -> str:
    """The Image API URL of the whole image at `size` (the full size when it equals `full` or is unknown)."""
    w, h = size
    if not w or (w, h) == tuple(full):
        return f"{base}/full/{'max' if version >= 3 else 'full'}/0/default.jpg"
    return f"{base}/full/{w},{h}/0/default.jpg" if version >= 3 else f"{base}/full/{w},/0/default.jpg"


def region_url(base: str, version: int, region: tuple[int, int, int, int] | None) -> str:
    """The Image API URL of a region (full-resolution image pixels) at full size; '' without a service."""
    if not base:
        return ""
    part = "full" if region is None else ",".join(str(int(v)) for v in region)
    return f"{base}/{part}/{'max' if version >= 3 else 'full'}/0/default.jpg"


def info_version(info: dict, default: int) -> int:
    ctx = _contexts(info) + " " + str(info.get("protocol", ""))
    if _type(info) == "ImageService3" or "image/3" in ctx:
        return 3
    if _type(info) == "ImageService2" or "image/2" in ctx or "image/1" in ctx:
        return 2
    return default


def host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc.lower()
