"""IIIF sources against a real HTTP server on 127.0.0.1 (no network): v2 and v3 manifests, a fake
Image API (info.json + /full/{w},/0/default.jpg, regions), injected 429 / 500 / slow / truncated /
404 answers; throttling measured from the server's timestamps; the download cache on reruns."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import h5py
import numpy as np
import pytest
from PIL import Image

from pipeline.ingest.cropping import components
from pipeline.core.runner import run_stages, stage_status
from pipeline.ingest.sources.iiif import ManifestError, choose_size, image_request, parse_manifest, text_value
from pipeline.core.store import read_strings
from test_cropping import GLYPH_LINES, glyph_count, glyph_page
import stages

FAST = ["ingest.iiif_delay=0.02", "ingest.iiif_timeout=0.5", "ingest.iiif_retries=3"]


# ----------------------------------------------------------------------------------------------
# the fake server
# ----------------------------------------------------------------------------------------------

class FakeIIIF:
    """Manifests under /manifests/<name>.json, images under /iiif/<id>/… (Image API) and
    /static/<id>.png (no service). `faults[path]` is a list of answers to give, in turn, before
    the normal one: "429:<retry-after>", "500", "404", "slow", "truncated", "html"."""

    SLOW = 1.0

    def __init__(self):
        self.lock = threading.Lock()
        self.log: list[tuple[float, str]] = []
        self.faults: dict[str, list[str]] = {}
        self.always: dict[str, int] = {}           # path → status always answered
        self.manifests: dict[str, bytes] = {}
        self.images: dict[str, dict] = {}           # id → {"lines", "scale", "version", "info"}
        self._cache: dict[str, np.ndarray] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # bookkeeping
    def count(self, part: str = "") -> int:
        with self.lock:
            return sum(1 for _, p in self.log if part in p)

    def times(self) -> list[float]:
        with self.lock:
            return [t for t, _ in self.log]

    # content
    def add_image(self, ident: str, lines=GLYPH_LINES, scale=2.0, version=2, **info):
        self.images[ident] = {"lines": lines, "scale": scale, "version": version, "info": info}
        h, w = self.full(ident).shape[:2]
        return w, h

    def full(self, ident: str) -> np.ndarray:
        if ident not in self._cache:
            spec = self.images[ident]
            self._cache[ident] = glyph_page(spec["lines"], spec["scale"])
        return self._cache[ident]

    def service(self, ident: str) -> str:
        return f"{self.base}/iiif/{ident}"

    def add_manifest(self, name: str, doc) -> str:
        self.manifests[name] = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return f"{self.base}/manifests/{name}.json"

    def _info(self, ident: str) -> dict:
        spec = self.images[ident]
        h, w = self.full(ident).shape[:2]
        if spec["version"] == 3:
            info = {"@context": "http://iiif.io/api/image/3/context.json", "id": self.service(ident),
                    "type": "ImageService3", "protocol": "http://iiif.io/api/image", "profile": "level2"}
        else:
            info = {"@context": "http://iiif.io/api/image/2/context.json", "@id": self.service(ident),
                    "protocol": "http://iiif.io/api/image", "profile": ["http://iiif.io/api/image/2/level2.json"]}
        info.update(width=w, height=h, **spec["info"])
        return info

    def _render(self, ident: str, region: str, size: str) -> bytes:
        page = self.full(ident)
        if region not in ("full", "max"):
            x, y, w, h = (int(v) for v in region.split(","))
            page = page[y:y + h, x:x + w]
        h, w = page.shape[:2]
        if size not in ("full", "max"):
            m = re.fullmatch(r"(\d*),(\d*)", size)
            sw, sh = (int(v) if v else 0 for v in m.groups())
            sw, sh = sw or round(w * sh / h), sh or round(h * sw / w)
            max_w = self.images[ident]["info"].get("maxWidth")
            if max_w and sw > max_w:
                raise ValueError("above maxWidth")
            page = cv2.resize(page, (sw, sh), interpolation=cv2.INTER_AREA)
        buf = io.BytesIO()
        Image.fromarray(page).save(buf, format="PNG")
        return buf.getvalue()

    def handle(self, h: BaseHTTPRequestHandler):
        path = h.path
        with self.lock:
            self.log.append((time.monotonic(), path))
            fault = self.faults.get(path, []).pop(0) if self.faults.get(path) else None
        if path in self.always:
            return self._send(h, self.always[path], b"gone")
        if fault and fault.startswith("429"):
            return self._send(h, 429, b"slow down", {"Retry-After": fault.split(":")[1]})
        if fault in ("500", "404"):
            return self._send(h, int(fault), b"error")
        if fault == "slow":
            time.sleep(self.SLOW)
        try:
            body, ctype = self._route(path)
        except (KeyError, ValueError, AttributeError):
            return self._send(h, 404, b"not found")
        if fault == "html":
            body, ctype = b"<html><body>Please prove you are human</body></html>", "text/html"
        if fault == "truncated":
            h.send_response(200)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.close_connection = True
            return
        self._send(h, 200, body, {"Content-Type": ctype})

    def _route(self, path: str) -> tuple[bytes, str]:
        parts = path.strip("/").split("/")
        if parts[0] == "manifests":
            return self.manifests[parts[1][: -len(".json")]], "application/json"
        if parts[0] == "static":
            return self._render(parts[1][: -len(".png")], "full", "full"), "image/png"
        if parts[0] == "iiif" and parts[-1] == "info.json":
            return json.dumps(self._info(parts[1])).encode(), "application/json"
        if parts[0] == "iiif" and len(parts) == 6:
            return self._render(parts[1], parts[2], parts[3]), "image/jpeg"
        raise KeyError(path)

    @staticmethod
    def _send(h, status, body, headers=None):
        try:
            h.send_response(status)
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): fine


def manifest_v2(server: FakeIIIF, name: str, idents: list[str], label="Book of hours", **extra) -> dict:
    canvases = []
    for i, ident in enumerate(idents):
        h, w = server.full(ident).shape[:2]
        cid = f"{server.base}/{name}/canvas/c{i + 1}"
        canvases.append({
            "@id": cid, "@type": "sc:Canvas", "label": f"f. {i + 1}r", "width": w, "height": h,
            "images": [{"@type": "oa:Annotation", "motivation": "sc:painting", "on": cid,
                        "resource": {"@id": f"{server.service(ident)}/full/full/0/default.jpg", "@type": "dctypes:Image",
                                     "width": w, "height": h,
                                     "service": {"@context": "http://iiif.io/api/image/2/context.json",
                                                 "@id": server.service(ident),
                                                 "profile": "http://iiif.io/api/image/2/level2.json"}}}]})
    return {"@context": "http://iiif.io/api/presentation/2/context.json", "@id": f"{server.base}/manifests/{name}.json",
            "@type": "sc:Manifest", "label": label,
            "metadata": [{"label": "Date", "value": "1480"}, {"label": "Printer", "value": "<i>Vérard</i>"}],
            "sequences": [{"@type": "sc:Sequence", "canvases": canvases}], **extra}


def manifest_v3(server: FakeIIIF, name: str, idents: list[str], label="Psalter", canvas_scale=1.0) -> dict:
    items = []
    for i, ident in enumerate(idents):
        h, w = server.full(ident).shape[:2]
        cid = f"{server.base}/{name}/canvas/p{i + 1}"
        version = server.images[ident]["version"]
        items.append({
            "id": cid, "type": "Canvas", "label": {"en": [f"page {i + 1}"]},
            "width": round(w * canvas_scale), "height": round(h * canvas_scale),
            "items": [{"id": f"{cid}/page", "type": "AnnotationPage", "items": [{
                "id": f"{cid}/anno", "type": "Annotation", "motivation": "painting", "target": cid,
                "body": {"id": f"{server.service(ident)}/full/max/0/default.jpg", "type": "Image", "format": "image/jpeg",
                         "width": w, "height": h,
                         "service": [{"id": server.service(ident),
                                      "type": "ImageService3" if version == 3 else "ImageService2",
                                      "profile": "level2"}]}}]}]})
    return {"@context": "http://iiif.io/api/presentation/3/context.json", "id": f"{server.base}/manifests/{name}.json",
            "type": "Manifest", "label": {"en": [label]}, "items": items}


@pytest.fixture
def server():
    s = FakeIIIF()
    yield s
    s.close()


def _read(project) -> dict:
    with h5py.File(project.stage_path("ingest"), "r") as f:
        out = {k: read_strings(f[k]) for k in ("source", "canvas", "canvas_label", "manifest", "manifest_label",
                                               "iiif_region", "kind", "label", "skipped/source", "skipped/reason")}
        out.update({k: f[k][()] for k in ("page", "box", "size", "crops", "content_box")})
        out["metadata"] = {k: read_strings(v) for k, v in f["metadata"].items()} if "metadata" in f else {}
        out["attrs"] = dict(f.attrs)
    return out


def _ingest(project, *sets, force=False, log=None):
    lines = []
    run_stages(project, project.config(list(sets)), ["ingest"], stages=stages.STAGES, force=force,
               log=log or lines.append, progress=False)
    return lines


# ----------------------------------------------------------------------------------------------
# parsing, size negotiation (no server)
# ----------------------------------------------------------------------------------------------

class TestParse:
    def test_v2_every_canvas(self, server):
        for i in range(3):
            server.add_image(f"b{i}", GLYPH_LINES[:1], scale=1.0)
        info = parse_manifest(manifest_v2(server, "m", ["b0", "b1", "b2"]))
        assert info.version == 2 and info.canvases == 3 and len(info.images) == 3
        assert info.label == "Book of hours" and ("Printer", "Vérard") in info.metadata
        image = info.images[2]
        assert image.index == 3 and image.canvas.endswith("/canvas/c3") and image.canvas_label == "f. 3r"
        assert image.service == server.service("b2") and image.service_version == 2
        assert image.image_size == image.canvas_size != (0, 0)

    def test_v3_with_v2_service(self, server):
        server.add_image("a", GLYPH_LINES[:1], scale=1.0, version=2)
        server.add_image("b", GLYPH_LINES[:1], scale=1.0, version=3)
        info = parse_manifest(manifest_v3(server, "m", ["a", "b"]))
        assert info.version == 3 and info.label == "Psalter"
        assert [i.service_version for i in info.images] == [2, 3]
        assert [i.canvas_label for i in info.images] == ["page 1", "page 2"]

    def test_choice_and_target_and_static(self):
        doc = {"@context": "http://iiif.io/api/presentation/2/context.json", "@type": "sc:Manifest", "label": "x",
               "sequences": [{"canvases": [{"@id": "c1", "width": 200, "height": 100, "images": [
                   {"on": "c1#xywh=100,0,100,100", "resource": {"@type": "oa:Choice",
                    "default": {"@id": "http://h/a.png", "width": 50, "height": 50}, "item": []}}]}]}]}
        image = parse_manifest(doc).images[0]
        assert image.image_id == "http://h/a.png" and image.service == "" and image.target == (100, 0, 100, 100)

    def test_collection(self):
        doc = {"@context": "http://iiif.io/api/presentation/3/context.json", "type": "Collection", "label": {"none": ["C"]},
               "items": [{"id": "http://h/m1.json", "type": "Manifest"}, {"id": "http://h/m2.json", "type": "Manifest"}]}
        assert parse_manifest(doc).manifests == ["http://h/m1.json", "http://h/m2.json"]

    @pytest.mark.parametrize("doc, match", [
        ([], "not an object"),
        ({"@type": "sc:Manifest", "sequences": []}, "no canvases"),
        ({"@type": "sc:Manifest", "sequences": [{"canvases": [{"@id": "c", "images": []}]}]}, "none of the 1 canvases has an image"),
        ({"type": "Annotation"}, "not a IIIF manifest"),
    ])
    def test_errors(self, doc, match):
        with pytest.raises(ManifestError, match=match):
            parse_manifest(doc)

    def test_text_values(self):
        assert text_value({"fr": ["Heures"], "en": ["Hours"]}) == "Hours"
        assert text_value({"none": ["f. 1r"]}) == "f. 1r"
        assert text_value([{"@value": "a", "@language": "la"}, "b"]) == "a; b"
        assert text_value("<span>Vérard &amp; fils</span>") == "Vérard & fils"


class TestSize:
    def test_target_longer_side(self):
        assert choose_size((4000, 3000), 2000) == (2000, 1500)
        assert choose_size((1000, 800), 2000) == (1000, 800)   # never upscaled
        assert choose_size((4000, 3000), 0) == (4000, 3000)

    def test_server_limits(self):
        assert choose_size((4000, 3000), 2000, {"maxWidth": 1000}) == (1000, 750)
        assert choose_size((3000, 4000), 2000, {"maxWidth": 1000}) == (750, 1000)   # maxHeight = maxWidth
        assert choose_size((4000, 3000), 0, {"maxArea": 1200 * 900}) == (1200, 900)

    def test_level0_sizes(self):
        info = {"profile": ["http://iiif.io/api/image/2/level0.json"],
                "sizes": [{"width": 500, "height": 375}, {"width": 1000, "height": 750}, {"width": 4000, "height": 3000}]}
        assert choose_size((4000, 3000), 2000, info) == (1000, 750)
        assert choose_size((4000, 3000), 100, info) == (500, 375)

    def test_urls(self):
        assert image_request("http://s/i", 2, (500, 375), (4000, 3000)) == "http://s/i/full/500,/0/default.jpg"
        assert image_request("http://s/i", 3, (500, 375), (4000, 3000)) == "http://s/i/full/500,375/0/default.jpg"
        assert image_request("http://s/i", 3, (4000, 3000), (4000, 3000)) == "http://s/i/full/max/0/default.jpg"


# ----------------------------------------------------------------------------------------------
# through the stage, against the server
# ----------------------------------------------------------------------------------------------

class TestManifests:
    def test_v2_and_v3_every_canvas(self, server, make_project, quiet):
        for i in range(3):
            server.add_image(f"v2-{i}", GLYPH_LINES[: i + 1])
        server.add_image("v3-0", GLYPH_LINES[:1], version=3)
        server.add_image("v3-1", GLYPH_LINES[:2], version=2)
        m2 = server.add_manifest("hours", manifest_v2(server, "hours", ["v2-0", "v2-1", "v2-2"]))
        m3 = server.add_manifest("psalter", manifest_v3(server, "psalter", ["v3-0", "v3-1"]))
        project = make_project(".", "ingest.size=32", "ingest.iiif_size=600", *FAST,
                               f'ingest.images="{m2}"', f'ingest.sources=["{m3}"]')
        _ingest(project)
        d = _read(project)
        assert len(d["source"]) == 5 and d["kind"] == ["iiif"] * 5
        assert d["source"] == d["canvas"] and d["canvas"][0] == f"{server.base}/hours/canvas/c1"
        assert d["page"].tolist() == [1, 2, 3, 1, 2]
        assert d["manifest"] == [m2] * 3 + [m3] * 2
        assert d["manifest_label"] == ["Book of hours"] * 3 + ["Psalter"] * 2
        assert d["canvas_label"] == ["f. 1r", "f. 2r", "f. 3r", "page 1", "page 2"]
        # whole pages: the box is the full-resolution canvas, whatever size was fetched
        for i, ident in enumerate(["v2-0", "v2-1", "v2-2", "v3-0", "v3-1"]):
            h, w = server.full(ident).shape[:2]
            assert d["box"][i].tolist() == [0, 0, w, h] and d["size"][i].tolist() == [w, h]
        assert d["iiif_region"][0] == f"{server.service('v2-0')}/full/full/0/default.jpg"
        assert d["iiif_region"][3] == f"{server.service('v3-0')}/full/max/0/default.jpg"
        # sizes requested: v2 "w," and v3 "w,h", longer side 600
        assert server.count("/iiif/v2-0/full/600,/0/default.jpg") == 1
        w3, h3 = server.full("v3-0").shape[1::-1]
        assert server.count(f"/iiif/v3-0/full/600,{h3 * 600 // w3}/0/default.jpg") == 1
        assert d["metadata"]["Date"] == ["1480"] * 3 + [""] * 2
        assert d["metadata"]["Printer"][0] == "Vérard"
        assert d["skipped/source"] == []

    def test_max_width_respected(self, server, make_project):
        w, _ = server.add_image("big", GLYPH_LINES[:1], maxWidth=300)
        m = server.add_manifest("m", manifest_v2(server, "m", ["big"]))
        project = make_project(".", "ingest.size=16", "ingest.iiif_size=0", *FAST, f'ingest.images="{m}"')
        _ingest(project)
        assert server.count("/iiif/big/full/300,/0/default.jpg") == 1
        assert _read(project)["box"][0].tolist()[2] == w

    def test_local_manifest_file_and_list(self, server, make_project, tmp_path):
        server.add_image("a", GLYPH_LINES[:1])
        server.add_image("b", GLYPH_LINES[:1], version=3)
        (tmp_path / "one.json").write_text(json.dumps(manifest_v2(server, "one", ["a"])))
        m3 = server.add_manifest("two", manifest_v3(server, "two", ["b"]))
        (tmp_path / "list.txt").write_text(f"# my manifests\none.json\n\n{m3}\n{m3}\n")
        project = make_project(tmp_path / "list.txt", "ingest.size=16", *FAST)
        lines = _ingest(project)
        d = _read(project)
        assert d["canvas"] == [f"{server.base}/one/canvas/c1", f"{server.base}/two/canvas/p1"]
        assert d["manifest"][1] == m3 and d["manifest"][0].endswith("one.json")
        assert any("listed twice, read once: " + m3 in line for line in lines)
        assert server.count("/manifests/two.json") == 1

    def test_canvas_coordinates_differ_from_image_pixels(self, server, make_project):
        """A canvas twice the image's size: boxes are in canvas units, regions in image pixels."""
        w, h = server.add_image("p", GLYPH_LINES[:2])
        m = server.add_manifest("m", manifest_v3(server, "m", ["p"], canvas_scale=2.0))
        project = make_project(".", "ingest.size=16", "ingest.iiif_size=600", "ingest.crop=grid",
                               "ingest.tile=300", *FAST, f'ingest.images="{m}"')
        _ingest(project)
        d = _read(project)
        assert d["size"][0].tolist() == [2 * w, 2 * h]
        # the first tile: 300 of the 600 px fetched = half the image's width = w canvas units; the
        # page is lower than a tile, so the tile has its whole height: 2 h canvas units
        assert d["box"][0].tolist() == [0, 0, w, 2 * h]
        x, y, rw, rh = (int(v) for v in d["iiif_region"][0].split("/")[-4].split(","))
        assert (x, y, rw, rh) == (0, 0, w // 2, h)

    def test_components_scaled_back_to_full_resolution(self, server, make_project):
        server.add_image("g", GLYPH_LINES, scale=2.0)
        m = server.add_manifest("m", manifest_v2(server, "m", ["g"]))
        project = make_project(".", "ingest.size=24", "ingest.iiif_size=900", "ingest.crop=components",
                               "ingest.min_size=6", *FAST, f'ingest.images="{m}"')
        _ingest(project)
        d = _read(project)
        assert len(d["box"]) == pytest.approx(glyph_count(), rel=0.02)
        full = components(server.full("g"), margin=4)  # the same letters found at full resolution
        assert len(full) == len(d["box"])
        for got, want in zip(d["box"].tolist(), full):
            assert max(abs(a - b) for a, b in zip(got, want)) <= 6, (got, want)
        # the region URL names the same place in image pixels (canvas = image here)
        region = d["iiif_region"][5].split("/")[-4]
        assert [int(v) for v in region.split(",")] == d["box"][5].tolist()


class TestPolite:
    def _collection(self, server, n=4, prefix="t"):
        for i in range(n):
            server.add_image(f"{prefix}{i}", GLYPH_LINES[:1], scale=1.0)
        return server.add_manifest(prefix, manifest_v2(server, prefix, [f"{prefix}{i}" for i in range(n)]))

    def test_throttled_per_host(self, make_project):
        a, b = FakeIIIF(), FakeIIIF()
        try:
            ma, mb = self._collection(a, 4, "a"), self._collection(b, 4, "b")
            delay = 0.15
            project = make_project(".", "ingest.size=16", f"ingest.iiif_delay={delay}", f'ingest.images="{ma}"',
                                   f'ingest.sources=["{mb}"]')
            _ingest(project)
            for s in (a, b):
                t = s.times()
                assert len(t) == 9  # manifest + 4 × (info.json + image)
                assert min(np.diff(t)) >= delay
            # the two hosts were fetched in parallel: their request spans overlap (a load-proof
            # check, unlike a wall-clock bound)
            ta, tb = a.times(), b.times()
            assert max(ta[1], tb[1]) < min(ta[-1], tb[-1])
            assert len(_read(project)["source"]) == 8
        finally:
            a.close()
            b.close()

    def test_rerun_uses_the_cache(self, server, make_project):
        m = self._collection(server, 3)
        project = make_project(".", "ingest.size=16", *FAST, f'ingest.images="{m}"')
        _ingest(project)
        first = server.count()
        assert first == 7
        assert stage_status(project, project.config(), "ingest", stages.STAGES).state == "fresh"  # no request made
        lines = _ingest(project, force=True)
        assert server.count() == first
        assert any("0 requests, 7 answers from cache/downloads" in line for line in lines)
        downloads = project.cache_dir / "downloads"
        assert len([p for p in downloads.rglob("*") if p.is_file()]) == 7
        assert not list(downloads.rglob("*.part-*"))
        # a new crop size: new crops, still no request
        _ingest(project, "ingest.size=24")
        assert server.count() == first

    def test_transient_failures_are_retried(self, server, make_project):
        m = self._collection(server, 4)
        image = "/iiif/t{}/full/full/0/default.jpg"
        server.faults = {
            "/iiif/t0/info.json": ["429:1"],
            image.format(1): ["500", "500"],
            image.format(2): ["slow"],
            image.format(3): ["truncated", "429:0"],
        }
        project = make_project(".", "ingest.size=16", *FAST, "ingest.iiif_size=0", f'ingest.images="{m}"')
        _ingest(project)
        d = _read(project)
        assert len(d["source"]) == 4 and d["skipped/source"] == []
        with server.lock:
            log = list(server.log)
        info0 = [t for t, p in log if p == "/iiif/t0/info.json"]
        assert len(info0) == 2 and info0[1] - info0[0] >= 1.0     # Retry-After: 1 was respected
        assert server.count(image.format(1)) == 3 and server.count(image.format(3)) == 3
        assert server.count(image.format(2)) == 2                 # timed out once, then fetched

    def test_bad_input_reported_rest_ingested_rerun_retries_only_failures(self, server, make_project, tmp_path):
        from test_pdf import empty_pdf
        folder = tmp_path / "scans"
        folder.mkdir()
        cv2.imwrite(str(folder / "page.png"), glyph_page(GLYPH_LINES[:1]))
        (folder / "unreadable.png").write_bytes(b"not a png")
        (folder / "empty.pdf").write_bytes(empty_pdf())
        good = self._collection(server, 3, "g")
        server.add_image("huge", GLYPH_LINES, scale=3.0)
        server.add_image("flaky", GLYPH_LINES[:1], scale=1.0)
        mixed = server.add_manifest("mixed", manifest_v2(server, "mixed", ["huge", "flaky"]))
        notjson = server.add_manifest("notjson", b"<html>Service unavailable</html>")
        noimages = server.add_manifest("noimages", {"@context": "http://iiif.io/api/presentation/3/context.json",
                                                    "type": "Manifest", "items": [{"id": "c", "type": "Canvas", "items": []}]})
        missing = f"{server.base}/manifests/gone.json"
        server.always["/iiif/g1/full/full/0/default.jpg"] = 404
        server.faults["/iiif/flaky/full/full/0/default.jpg"] = ["429:0"] * 10   # a server busy for a while
        project = make_project(folder, "ingest.size=16", *FAST, "ingest.iiif_size=0", "ingest.iiif_retries=2",
                               "ingest.max_pixels=1000000",
                               f'ingest.sources=["{good}", "{mixed}", "{notjson}", "{noimages}", "{missing}"]')
        lines = _ingest(project)
        d = _read(project)
        skipped = dict(zip(d["skipped/source"], d["skipped/reason"]))
        assert "not a readable image" in skipped["unreadable.png"]
        assert skipped["empty.pdf"] == "the PDF has no pages"
        assert "not JSON" in skipped[notjson]
        assert "none of the 1 canvases has an image" in skipped[noimages]
        assert "HTTP 404" in skipped[missing]
        assert "HTTP 404" in skipped[f"{server.base}/g/canvas/c2"]
        assert "too large" in skipped[f"{server.base}/mixed/canvas/c1"]
        assert "HTTP 429" in skipped[f"{server.base}/mixed/canvas/c2"]
        assert len(skipped) == 8
        assert d["source"] == ["page.png", f"{server.base}/g/canvas/c1", f"{server.base}/g/canvas/c3"]
        assert any("skipped" in line for line in lines)
        # rerun: only what failed is asked again; what succeeded comes from the cache
        del server.always["/iiif/g1/full/full/0/default.jpg"]
        server.faults.clear()
        before = {p for _, p in server.log}
        count = server.count()
        _ingest(project, "ingest.max_pixels=100000000", force=True)
        with server.lock:
            again = [p for _, p in server.log[count:]]
        # (an answer that is not JSON is asked twice: a second chance for a transient error page)
        assert sorted(again) == sorted(["/manifests/notjson.json"] * 2 + ["/manifests/gone.json",
                                        "/iiif/g1/full/full/0/default.jpg", "/iiif/huge/full/full/0/default.jpg",
                                        "/iiif/flaky/full/full/0/default.jpg"])
        assert "/manifests/noimages.json" in before and "/manifests/noimages.json" not in again  # valid JSON: cached
        d = _read(project)
        assert len(d["source"]) == 6

    def test_no_request_on_status(self, server, make_project):
        m = self._collection(server, 1)
        project = make_project(".", "ingest.size=16", *FAST, f'ingest.images="{m}"')
        assert stage_status(project, project.config(), "ingest", stages.STAGES).state == "missing"
        assert server.count() == 0


class TestBoxesOnCanvases:
    def test_csv_and_annotations_give_the_same_crops(self, server, make_project, tmp_path):
        server.add_image("p", GLYPH_LINES, scale=2.0)
        m = server.add_manifest("m", manifest_v3(server, "m", ["p"]))
        canvas = f"{server.base}/m/canvas/p1"
        wanted = components(server.full("p"))[:5]
        (tmp_path / "boxes.csv").write_text("source,x,y,w,h,label\n" + "".join(
            f"{canvas},{x},{y},{w},{h},L{i}\n" for i, (x, y, w, h) in enumerate(wanted)))
        page = {"@context": "http://www.w3.org/ns/anno.jsonld", "type": "AnnotationPage", "items": [
            {"type": "Annotation", "body": {"type": "TextualBody", "value": f"L{i}"},
             "target": {"source": canvas, "selector": {"type": "FragmentSelector", "value": f"xywh={x},{y},{w},{h}"}}}
            for i, (x, y, w, h) in enumerate(wanted)]}
        (tmp_path / "boxes.json").write_text(json.dumps(page))
        results = []
        for name, file in (("csv", "boxes.csv"), ("anno", "boxes.json")):
            project = make_project(".", "ingest.size=16", "ingest.iiif_size=900", "ingest.crop=boxes", *FAST,
                                   f'ingest.images="{m}"', f'ingest.boxes="{tmp_path / file}"', name=name)
            _ingest(project)
            results.append(_read(project))
        a, b = results
        assert np.array_equal(a["crops"], b["crops"]) and np.array_equal(a["box"], b["box"])
        assert a["box"].tolist() == [list(w) for w in wanted]
        assert a["label"] == b["label"] == [f"L{i}" for i in range(5)]
        x, y, w, h = wanted[0]
        assert a["iiif_region"][0] == f"{server.service('p')}/{x},{y},{w},{h}/full/0/default.jpg"
        assert server.count("/iiif/p/full/") == 2  # the page, once per project (each has its own download cache)
