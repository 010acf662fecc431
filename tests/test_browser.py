"""The report in a real headless Chromium from file://: pages load without console errors or
broken images, internal links lead somewhere, hostile file names stay text, keys turn pages.

Needs Debian's `chromium` and the `playwright` Python package (no `playwright install`)."""

from __future__ import annotations

import pytest

from browser import load, local_target, open_browser, unavailable
from report_fixtures import glyphs_project, hostile_project

pytestmark = [pytest.mark.browser, pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]


@pytest.fixture(scope="module")
def browser():
    with open_browser() as context:
        yield context


@pytest.fixture(scope="session")
def glyphs(tmp_path_factory):
    return glyphs_project(tmp_path_factory)


@pytest.fixture(scope="session")
def hostile(tmp_path_factory):
    return hostile_project(tmp_path_factory)


def _assert_clean(check):
    assert check.errors == [], (check.url, check.errors)
    assert check.broken_images == [], (check.url, check.broken_images)
    assert check.dialogs == [], (check.url, check.dialogs)


def test_every_page_loads_clean(browser, glyphs):
    report = glyphs.report_dir
    pages = [report / "index.html", report / "reconstructions.html", report / "uncertain.html",
             *sorted((report / "sprites").glob("*.html"))]
    for page in pages:
        check = load(browser, page)
        _assert_clean(check)
        assert check.images > 0 or "No crop" in check.text, page


def _follow_links(browser, page, report):
    check = load(browser, page)
    _assert_clean(check)
    seen = set()
    for href in check.links:
        target = local_target(href)
        assert target is not None, f"{page.name} links outside the file system: {href}"
        assert target.exists(), f"{page.name}: broken link {href}"
        fragment = href.partition("#")[2]
        if fragment and target.suffix == ".html":
            assert f'id="{fragment}"' in target.read_text(encoding="utf-8"), f"{page.name}: no #{fragment} in {target.name}"
        if target.suffix == ".html" and target not in seen:
            seen.add(target)
            _assert_clean(load(browser, target))
    return seen


def test_links_from_index_and_a_sprite_page(browser, glyphs):
    report = glyphs.report_dir
    seen = _follow_links(browser, report / "index.html", report)
    assert report / "reconstructions.html" in seen and report / "sprites" / "sprite_000.html" in seen
    seen = _follow_links(browser, report / "sprites" / "sprite_000.html", report)
    assert report / "index.html" in seen
    seen = _follow_links(browser, report / "reconstructions.html", report)   # gallery anchors #c<id>
    assert any(p.parent.name == "sprites" for p in seen)


def test_hostile_names_render_as_text(browser, hostile):
    report = hostile.report_dir
    pages = [report / "index.html", report / "reconstructions.html", report / "uncertain.html",
             *sorted((report / "sprites").glob("*.html"))]
    text = ""
    for page in pages:
        check = load(browser, page)
        _assert_clean(check)          # no alert() dialog, no error
        text += check.text
    assert "<script>alert(1)</script>.png" in text
    assert "a & b.png" in text and "Évangéliaire ß.png" in text
    # the source links of the hostile files open the right image
    sprite_pages = sorted((report / "sprites").glob("*.html"))
    targets = {local_target(h) for p in sprite_pages for h in load(browser, p).links}
    assert any(t is not None and t.name == "script>.png" and t.is_file() for t in targets)


def test_arrow_keys_turn_pages(browser, hostile):
    sprites = hostile.report_dir / "sprites"
    first = next(p for p in sorted(sprites.glob("sprite_*.html"))
                 if (sprites / p.name.replace(".html", "_p2.html")).exists())
    page = browser.new_page()
    try:
        page.goto(first.resolve().as_uri())
        page.keyboard.press("ArrowRight")
        page.wait_for_url("**/*_p2.html")
        page.keyboard.press("ArrowLeft")
        page.wait_for_url(f"**/{first.name}")
    finally:
        page.close()


def test_curation_controls_write_the_toml_fragment(browser, glyphs, tmp_path):
    import tomllib
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto((glyphs.report_dir / "sprites" / "sprite_000.html").resolve().as_uri())
        page.click("details.curate summary")
        form = page.locator("form.curate-form")
        assert form.is_visible()
        page.fill("form.curate-form input[name=name]", 'long "s"')
        page.check("form.curate-form input[name=merge]")
        page.fill("form.curate-form input[name=merge_with]", "2, 1 2 0")
        fragment = page.inner_text("details.curate [data-role=fragment]")
        assert fragment.strip() == '[sprite.0]\nname = "long \\"s\\""\nmerge = [1, 2]'
        assert tomllib.loads(fragment) == {"sprite": {"0": {"name": 'long "s"', "merge": [1, 2]}}}
        page.fill("form.curate-form input[name=merge_with]", "2, x")
        assert "Not a sprite number: x" in page.inner_text("form.curate-form [data-role=problem]")
        page.check("form.curate-form input[name=drop]")
        page.fill("form.curate-form input[name=note]", "smudges")
        fragment = page.inner_text("details.curate [data-role=fragment]")
        assert tomllib.loads(fragment) == {"sprite": {"0": {"drop": True, "note": "smudges"}}}
        with page.expect_download() as download:
            page.click("form.curate-form [data-action=download]")
        saved = tmp_path / "fragment.toml"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "curation-sprite-0.toml"
        assert saved.read_text(encoding="utf-8") == fragment.strip() + "\n"
        page.click("form.curate-form [data-action=copy]")
        page.wait_for_function("document.querySelector('[data-role=copied]').textContent.length > 0")
    finally:
        page.close()
    assert errors == []


def test_pages_read_without_javascript(browser, glyphs):
    page = browser.new_page()
    try:
        # the same Chromium with scripts off for this page (one Playwright per process)
        browser.new_cdp_session(page).send("Emulation.setScriptExecutionDisabled", {"value": True})
        for name in ("index.html", "sprites/sprite_000.html"):
            page.goto((glyphs.report_dir / name).resolve().as_uri())
            page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=15000)
            assert page.evaluate("Array.from(document.images).filter(i => !(i.naturalWidth > 0)).length") == 0
            assert page.evaluate("document.images.length") > 0
        page.click("details.curate summary")
        assert not page.locator("form.curate-form").is_visible()          # the form needs JavaScript
        assert page.inner_text("details.curate [data-role=fragment]").startswith("[sprite.0]")
        assert page.locator(".crop-card").count() > 0
    finally:
        page.close()


def test_deviation_maps_drawn_by_the_browser_follow_the_formula(browser, glyphs):
    """The sprite page's deviation switch shows, per card, |crop − reconstruction| averaged over the
    channels, smoothed and coloured paper → red (pipeline.trust.deviation), drawn by the browser."""
    import cv2
    import h5py
    import numpy as np
    from pipeline.trust.deviation import PAPER, RED, SCALE, deviation_maps
    page = browser.new_page()
    try:
        page.goto((glyphs.report_dir / "sprites" / "sprite_000.html").resolve().as_uri())
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=15000)
        card = page.locator(".crop-card").first
        assert not card.locator(".dev").is_visible()
        page.click("label[for=show-deviation]")
        assert card.locator(".dev").is_visible()
        i = int(card.get_attribute("id")[1:])
        shot = cv2.imdecode(np.frombuffer(card.locator(".dev").screenshot(), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    finally:
        page.close()
    with h5py.File(glyphs.stage_path("ingest"), "r") as ing, h5py.File(glyphs.stage_path("decompose"), "r") as dec:
        crop, recon = ing["crops"][i:i + 1], dec["recon"][i:i + 1]
    S = crop.shape[-1]
    t = np.clip(deviation_maps(crop, recon)[0] / SCALE, 0, 1)[..., None]               # (S, S, 1)
    expected = np.array(PAPER) * (1 - t) + np.array(RED) * t                            # (S, S, 3)
    drawn = cv2.resize(shot.astype(np.float32), (S, S), interpolation=cv2.INTER_AREA)
    assert t.max() > 0.2, "the card's crop should differ somewhere from its reconstruction"
    assert np.abs(drawn - expected).mean() < 8, np.abs(drawn - expected).mean()
