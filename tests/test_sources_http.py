"""pipeline.ingest.sources.http.Fetcher against the local fake IIIF server: cache, retries, Retry-After,
errors that are not retried, answers that are not what was asked for."""

from __future__ import annotations

import email.utils
import time

import pytest

from pipeline.ingest.sources.http import Fetcher, FetchError, _retry_after, url_key
from test_iiif import FakeIIIF


@pytest.fixture
def server():
    s = FakeIIIF()
    s.add_manifest("m", {"hello": "world"})
    yield s
    s.close()


@pytest.fixture
def fetcher(tmp_path):
    return Fetcher(tmp_path / "downloads", delay=0.01, retries=2, timeout=0.5, log=lambda *a: None)


def test_cached_atomically_by_url_hash(server, fetcher, tmp_path):
    url = f"{server.base}/manifests/m.json"
    assert fetcher.fetch_json(url) == {"hello": "world"}
    path = tmp_path / "downloads" / url_key(url)[:2] / f"{url_key(url)}.json"
    assert path.read_bytes() == server.manifests["m"]
    assert not list((tmp_path / "downloads").rglob("*.part-*"))
    assert fetcher.fetch_json(url) == {"hello": "world"}
    assert server.count() == 1 and fetcher.requests == 1 and fetcher.cache_hits == 1
    # a new Fetcher (a rerun) finds it too
    again = Fetcher(tmp_path / "downloads", delay=0.01)
    again.fetch_json(url)
    assert again.requests == 0 and server.count() == 1


def test_not_found_is_not_retried_nor_cached(server, fetcher):
    url = f"{server.base}/manifests/none.json"
    with pytest.raises(FetchError, match="HTTP 404"):
        fetcher.fetch_json(url)
    assert server.count() == 1 and fetcher.cached(url, ".json") is None


def test_server_errors_retried_then_given_up(server, fetcher):
    url = f"{server.base}/manifests/m.json"
    server.faults["/manifests/m.json"] = ["500"] * 3
    with pytest.raises(FetchError, match="HTTP 500 Internal Server Error after 3 attempts"):
        fetcher.fetch_json(url)
    assert server.count() == 3 and fetcher.cached(url, ".json") is None
    assert fetcher.fetch_json(url) == {"hello": "world"}  # the next call tries again


def test_backoff_grows(server, tmp_path):
    server.faults["/manifests/m.json"] = ["500", "500"]
    Fetcher(tmp_path / "d", delay=0.1, retries=3).fetch_json(f"{server.base}/manifests/m.json")
    t = server.times()
    assert t[1] - t[0] >= 0.25 and t[2] - t[1] >= 0.5  # max(delay, 0.25) × 2^k


def test_long_retry_after_blocks_the_host(server, fetcher):
    server.faults["/manifests/m.json"] = ["429:100000"]
    with pytest.raises(FetchError, match="asks to wait 100000 s; rerun later"):
        fetcher.fetch_json(f"{server.base}/manifests/m.json")
    with pytest.raises(FetchError, match="rerun later"):
        fetcher.fetch(f"{server.base}/manifests/other.json")
    assert server.count() == 1  # the second URL was not even asked


def test_html_instead_of_json(server, fetcher):
    server.faults["/manifests/m.json"] = ["html", "html"]
    with pytest.raises(FetchError, match="not JSON .*Please prove you are human"):
        fetcher.fetch_json(f"{server.base}/manifests/m.json")
    assert server.count() == 2


def test_unknown_host_fails_fast(fetcher):
    start = time.monotonic()
    with pytest.raises(FetchError):
        fetcher.fetch("http://127.0.0.1:9/nothing-listens-here")  # connection refused → retried, then given up
    assert time.monotonic() - start < 5


def test_retry_after_values():
    assert _retry_after("3") == 3.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < _retry_after(later) <= 31


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "downloads" / "ab"
    folder.mkdir(parents=True)
    (folder / f"abc.img.part-{dead.stdout.strip()}-1").write_bytes(b"half")
    (folder / "abc.img").write_bytes(b"whole")
    Fetcher(tmp_path / "downloads")
    assert [p.name for p in folder.iterdir()] == ["abc.img"]
