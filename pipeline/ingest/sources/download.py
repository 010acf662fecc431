"""Downloading the page images of IIIF canvases, politely, into the project's download cache.

For each canvas image with an Image API service: its `info.json` (full size, server limits), then
the image at the negotiated size (`pipeline.ingest.sources.iiif.choose_size`); without a service, the
image resource itself. One thread per host, each host's requests one after the other, spaced by
`pipeline.ingest.sources.http.Fetcher`. A download that is not a readable image (or a decompression bomb)
fails and is not cached.
"""

from __future__ import annotations

import io
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from pipeline.ingest.sources.http import Fetcher, FetchError
from pipeline.ingest.sources.iiif import choose_size, host_of, image_request, info_version
from pipeline.ingest.sources.pages import Page

__all__ = ["download_pages"]


# ---------------------------------------------------------------------------------------------

def _image_validator(max_pixels: int):
    from PIL import Image

    def check(body: bytes) -> str | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(body))
                w, h = img.size
                if w * h > max_pixels:
                    raise FetchError(f"too large ({w}×{h} px > ingest.max_pixels = {max_pixels})")
                img.load()
        except Image.DecompressionBombError as e:
            raise FetchError(f"decompression bomb guard: {e}") from None
        except FetchError:
            raise
        except Exception as e:
            return f"not a readable image ({type(e).__name__}: {e})"
        return None
    return check


def _download(page: Page, fetcher: Fetcher, iiif_size: int, check) -> Page:
    full = page.full_size
    version = page.service_version
    if page.service:
        try:
            info = fetcher.fetch_json(page.service + "/info.json")
        except FetchError as e:
            raise FetchError(f"info.json: {e}") from None
        if not isinstance(info, dict):
            raise FetchError(f"info.json is not a JSON object ({page.service}/info.json)")
        version = info_version(info, version)
        W, H = int(info.get("width") or 0), int(info.get("height") or 0)
        if W and H:
            full = (W, H)
        if not (full[0] and full[1]) and page.canvas_size[0]:
            full = page.canvas_size
        size = choose_size(full, iiif_size, info)
        url = image_request(page.service, version, size, full)
    else:
        url = page.image_id
    path = fetcher.fetch(url, ".img", check)
    return replace(page, path=str(path), url=url, full_size=full, service_version=version)


def download_pages(pages: list[Page], fetcher: Fetcher, iiif_size: int, max_pixels: int,
                   progress: bool = True) -> tuple[list[Page | None], list[tuple[str, str]]]:
    """Fetch (or find in the cache) the image of every IIIF page: one thread per host, each
    host's requests one after the other (`Fetcher` spaces them). Returns the pages with their
    local `path` (None where the download failed) and the failures as (source, reason)."""
    from tqdm import tqdm

    out: list[Page | None] = list(pages)
    todo = [i for i, p in enumerate(pages) if p.kind == "iiif"]
    failures: dict[int, str] = {}
    if not todo:
        return out, []
    by_host: dict[str, list[int]] = {}
    for i in todo:
        by_host.setdefault(host_of(pages[i].service or pages[i].image_id), []).append(i)
    check = _image_validator(max_pixels)
    stop = threading.Event()
    lock = threading.Lock()
    bar = tqdm(total=len(todo), desc="download", unit="page", disable=not progress, mininterval=0.5)

    def work(indices):
        for i in indices:
            if stop.is_set():
                return
            try:
                out[i] = _download(pages[i], fetcher, iiif_size, check)
            except FetchError as e:
                out[i] = None
                failures[i] = str(e)
            with lock:
                bar.update(1)

    try:
        with ThreadPoolExecutor(max_workers=min(8, len(by_host)), thread_name_prefix="iiif") as pool:
            futures = [pool.submit(work, idx) for idx in by_host.values()]
            try:
                for f in futures:
                    f.result()
            except BaseException:  # Ctrl-C: the threads stop at their next request
                stop.set()
                fetcher.stop.set()
                raise
    finally:
        bar.close()
    return out, [(pages[i].source, f"image download failed: {failures[i]}") for i in sorted(failures)]
