"""The report stage: pages, galleries, pagination, freshness, hostile file names."""

from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path
from urllib.parse import unquote

import h5py
import numpy as np
import pytest

from pipeline.report.charts import loss_chart
from pipeline.report.render import file_href, pager, quote_path
from pipeline.core.store import read_strings, stage_attrs
from report_fixtures import (HOSTILE_NAMES, copy_project, gallery_ids, glyphs_project, hostile_project,
                             quiet_run)


@pytest.fixture(scope="session")
def glyphs(tmp_path_factory):
    return glyphs_project(tmp_path_factory)


@pytest.fixture(scope="session")
def hostile(tmp_path_factory):
    return hostile_project(tmp_path_factory)


def _decomposed(project):
    with h5py.File(project.stage_path("decompose"), "r") as f:
        return f["front"][()], f["error"][()]


def test_report_files_exist(glyphs):
    report = glyphs.report_dir
    for name in ("index.html", "reconstructions.html", "sprites/sprite_000.html", "img/sprites/sprite_000.png"):
        assert (report / name).is_file(), name
    n = len(_decomposed(glyphs)[0])
    for folder in ("crops", "recon", "aligned"):
        assert len(list((report / "img" / folder).glob("*.png"))) == n
    assert not list(glyphs.root.glob("report.tmp-*")) and not list(glyphs.root.glob("report.old-*"))
    attrs = stage_attrs(glyphs.stage_path("report"))
    assert attrs is not None and attrs["stage"] == "report"


def test_index_shows_sprites_run_and_config(glyphs):
    text = (glyphs.report_dir / "index.html").read_text(encoding="utf-8")
    for k in range(3):
        assert f'href="sprites/sprite_{k:03d}.html"' in text
    assert "<svg" in text and "<polyline" in text or "<circle" in text   # loss curve
    assert "<details>" in text and "[model]" in text                      # the full config
    assert "clustering" in text and "Final training loss" in text
    assert "https://" not in text.replace("Monnier", "") and "<link rel=\"stylesheet\"" not in text  # offline
    assert re.search(r'<img [^>]*alt="sprite 0"', text)


def test_every_image_has_alt_text(glyphs):
    for page in [glyphs.report_dir / "index.html", glyphs.report_dir / "reconstructions.html",
                 *(glyphs.report_dir / "sprites").glob("*.html")]:
        for tag in re.findall(r"<img [^>]*>", page.read_text(encoding="utf-8")):
            assert re.search(r'alt="[^"]+"', tag), (page.name, tag)


def test_sprite_pages_list_their_crops_by_error(glyphs):
    front, error = _decomposed(glyphs)
    for k in range(3):
        ids = gallery_ids(glyphs.report_dir, k)
        assert sorted(ids) == sorted(np.flatnonzero(front == k).tolist())
        assert all(error[a] <= error[b] for a, b in zip(ids, ids[1:]))


def test_cards_link_to_source_images(glyphs):
    page = glyphs.report_dir / "sprites" / "sprite_000.html"
    text = page.read_text(encoding="utf-8")
    hrefs = re.findall(r'<div class="source"><a href="([^"]+)"', text)
    assert hrefs
    for href in hrefs:
        assert not href.startswith(("/", "file:"))                        # relative: the folder moves
        assert (page.parent / unquote(html.unescape(href))).resolve().is_file()


def test_reconstructions_sample_is_deterministic(glyphs):
    text = (glyphs.report_dir / "reconstructions.html").read_text(encoding="utf-8")
    ids = [int(i) for i in re.findall(r'<article class="crop-card recon-card" id="c(\d+)"', text)]
    n = len(_decomposed(glyphs)[0])
    expected = np.unique(np.linspace(0, n - 1, min(48, n)).round().astype(int)).tolist()
    assert ids == expected
    for src in re.findall(r'src="(img/sample/[^"]+)"', text):
        assert (glyphs.report_dir / src).is_file()


def test_rerun_skips_fresh_report(glyphs):
    assert quiet_run(glyphs) == []


def test_per_page_reruns_only_report_and_paginates(glyphs, tmp_path):
    project = copy_project(glyphs, tmp_path / "copy")
    assert quiet_run(project, "report.per_page=5") == ["report"]
    with h5py.File(project.stage_path("report"), "r") as f:
        assert bool(f.attrs["thumbnails_reused"])
        pages = read_strings(f["pages"])
    front, error = _decomposed(project)
    k = int(np.bincount(front[front >= 0]).argmax())
    count = int((front == k).sum())
    sprites = project.report_dir / "sprites"
    n_pages = math.ceil(count / 5)
    assert (sprites / f"sprite_{k:03d}_p{n_pages}.html").exists()
    assert not (sprites / f"sprite_{k:03d}_p{n_pages + 1}.html").exists()
    assert f"sprites/sprite_{k:03d}_p{n_pages}.html" in pages
    second = (sprites / f"sprite_{k:03d}_p2.html").read_text(encoding="utf-8")
    assert len(re.findall(r'class="crop-card"', second)) == 5
    assert 'rel="prev" href="sprite_%03d.html"' % k in second and 'rel="next"' in second
    ids = gallery_ids(project.report_dir, k)
    assert len(ids) == count and all(error[a] <= error[b] for a, b in zip(ids, ids[1:]))
    assert (project.report_dir / "img" / "crops").is_dir()   # thumbnails moved into the new report


def test_a_crash_keeps_the_previous_report(glyphs, tmp_path, monkeypatch):
    import stages.report
    project = copy_project(glyphs, tmp_path / "copy")
    before = (project.report_dir / "index.html").read_text(encoding="utf-8")

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash while rendering")
    monkeypatch.setattr(stages.report, "render_report", boom)
    with pytest.raises(RuntimeError):
        quiet_run(project, "report.per_page=7")
    assert (project.report_dir / "index.html").read_text(encoding="utf-8") == before
    assert len(list((project.report_dir / "img" / "crops").glob("*.png"))) == len(_decomposed(project)[0])
    assert not list(project.root.glob("report.tmp-*")) and not list(project.root.glob("report.old-*"))
    monkeypatch.undo()
    assert quiet_run(project, "report.per_page=7") == ["report"]


def test_project_templates_override_and_enter_the_fingerprint(glyphs, tmp_path):
    project = copy_project(glyphs, tmp_path / "copy")
    (project.root / "templates").mkdir()
    (project.root / "templates" / "_keys.html").write_text("<!-- my own keys -->\n", encoding="utf-8")
    assert quiet_run(project) == ["report"]
    assert "<!-- my own keys -->" in (project.report_dir / "index.html").read_text(encoding="utf-8")
    assert quiet_run(project) == []


def test_hostile_names_are_text_and_quoted_links(hostile):
    pages = [hostile.report_dir / "index.html", hostile.report_dir / "reconstructions.html",
             *(hostile.report_dir / "sprites").glob("*.html")]
    texts = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in texts
    assert "<script>alert(1)" not in texts
    assert "a &amp; b.png" in texts and "Évangéliaire ß.png" in texts
    assert "%3Cscript%3Ealert%281%29%3C/script%3E.png" in texts
    assert "a%20%26%20b.png" in texts and "%C3%89vang%C3%A9liaire%20%C3%9F.png" in texts
    with h5py.File(hostile.stage_path("ingest"), "r") as f:
        root = Path(f.attrs["images_root"])
        sources = read_strings(f["source"])
    assert set(HOSTILE_NAMES) <= set(sources)
    for page in pages:
        for href in re.findall(r'<div class="source"><a href="([^"]+)"', page.read_text(encoding="utf-8")):
            assert (page.parent / unquote(html.unescape(href))).resolve().is_file(), href


def test_quote_path_and_file_href(tmp_path):
    assert quote_path("a b/<c>&d.png") == "a%20b/%3Cc%3E%26d.png"
    assert quote_path(os.path.join("x", "é.png")) == "x/%C3%A9.png"
    assert file_href(tmp_path / "images" / "a b.png", tmp_path / "report" / "sprites") == "../../images/a%20b.png"


def test_pager_and_charts():
    p = pager(5, 10, lambda n: f"p{n}.html")
    numbers = [i.get("number") for i in p["links"]]
    assert numbers == [1, None, 3, 4, 5, 6, 7, None, 10]
    assert p["prev"] == "p4.html" and p["next"] == "p6.html"
    assert pager(1, 1, str)["prev"] is None
    assert loss_chart([], []) is None
    chart = loss_chart(list(range(1000)), [1 / (i + 1) for i in range(1000)])
    assert len(chart["points"].split()) <= 402 and chart["yticks"]


def test_index_lists_the_reseedings(glyphs, tmp_path):
    import json
    project = copy_project(glyphs, tmp_path / "copy")
    events = [[120, 2.5, 1, 0, "rarely used"], [300, 6.25, 2, 0, "it drew the same shape as sprite 1"]]
    with h5py.File(project.stage_path("train"), "r+") as f:
        f.attrs["reseeds_json"] = json.dumps(events)
    assert quiet_run(project, "report.per_page=9") == ["report"]
    text = (project.report_dir / "index.html").read_text(encoding="utf-8")
    assert "2 sprites re-seeded during training" in text
    rows = re.findall(r"<tr><td>([\d.]+)</td><td><a href=\"sprites/sprite_(\d+).html\">Sprite \d+</a></td>"
                      r"<td><a href=\"sprites/sprite_(\d+).html\">Sprite \d+</a></td><td>([^<]+)</td></tr>", text)
    assert rows == [("2.5", "001", "000", "rarely used"), ("6.25", "002", "000", "it drew the same shape as sprite 1")]


def test_index_shows_how_the_sprites_formed(glyphs):
    with h5py.File(glyphs.stage_path("train"), "r") as f:
        epochs = f["snapshots/epoch"][()]
        K = f["snapshots/colours"].shape[1]
    assert len(epochs) >= 1 and np.all(np.diff(epochs) > 0)
    text = (glyphs.report_dir / "index.html").read_text(encoding="utf-8")
    assert f"How the sprites formed: {len(epochs)} pictures" in text
    shots = re.findall(r'src="(img/snapshots/s\d\d_sprite_\d{3}\.png)"', text)
    assert len(shots) == len(epochs) * K and all((glyphs.report_dir / s).is_file() for s in shots)
