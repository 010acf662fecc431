"""A polite, caching HTTP client for IIIF (standard library only: urllib.request).

* **Cache**: every successful download is kept in `DIR/cache/downloads/<h[:2]>/<h><ext>` with
  h = sha256(URL), written atomically (temporary file + `os.replace`), so a rerun or an interrupted
  run never fetches it again. Failed or invalid downloads are never cached: a rerun retries them.
* **Throttling per host**: requests to one host (`host:port`) are serialised, and the next one
  starts at least `delay` seconds after the previous one *ended* (so the spacing the server sees is
  at least `delay`). Different hosts proceed in parallel (one thread each, see `pipeline.ingest.sources.iiif`).
* **Retries** with exponential backoff on timeouts, dropped connections, truncated bodies, 408,
  5xx, and 429 (waiting `Retry-After` seconds — a number or an HTTP date — when the server sends
  it). Other 4xx answers (403, 404…) fail at once. A Retry-After longer than `MAX_RETRY_AFTER`
  blocks the host for the rest of the run (every URL on it fails fast with that reason; rerun later).
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import io
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline import __version__

__all__ = ["Fetcher", "FetchError", "is_url", "url_key", "MAX_RETRY_AFTER"]

MAX_RETRY_AFTER = 300.0       # seconds; a server asking for a longer pause blocks its host for this run
MAX_BYTES = 512 << 20         # a single download larger than this is refused
USER_AGENT = f"sprites-dh/{__version__} (IIIF ingest for research; polite: one request at a time per host)"


class FetchError(Exception):
    """A download that failed for good (after retries); the message is the reason shown to the user."""


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.reason, self.wait = reason, wait


@dataclass
class _Host:
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_time: float = 0.0        # time.monotonic() before which no request may start
    blocked: str | None = None    # set when the host asked us to go away for too long


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Fetcher:
    """`fetch(url, validate)` → the path of the cached body; raises FetchError with a reason.

    `validate(bytes)` returns None when the body is usable, else a reason (an HTML error page
    instead of JSON, a truncated image…): such bodies are retried once and never cached.
    """

    def __init__(self, cache_dir: Path, delay: float = 1.0, retries: int = 5, timeout: float = 60.0,
                 log: Callable[[str], None] = print):
        self.cache_dir = Path(cache_dir)
        self.delay, self.retries, self.timeout = max(0.0, delay), max(0, retries), timeout
        self.log = log
        self.stop = threading.Event()   # set it to make every waiting or retrying download give up
        _remove_stale_parts(self.cache_dir)
        self.requests = 0           # requests sent in this run (cache hits excluded)
        self.cache_hits = 0
        self._hosts: dict[str, _Host] = {}
        self._hosts_lock = threading.Lock()
        self._count_lock = threading.Lock()

    def path_for(self, url: str, ext: str = "") -> Path:
        key = url_key(url)
        return self.cache_dir / key[:2] / f"{key}{ext}"

    def cached(self, url: str, ext: str = "") -> Path | None:
        path = self.path_for(url, ext)
        return path if path.is_file() else None

    def _host(self, url: str) -> _Host:
        netloc = urllib.parse.urlsplit(url).netloc.lower()
        with self._hosts_lock:
            return self._hosts.setdefault(netloc, _Host())

    def fetch(self, url: str, ext: str = "", validate: Callable[[bytes], str | None] | None = None) -> Path:
        path = self.path_for(url, ext)
        if path.is_file():
            with self._count_lock:
                self.cache_hits += 1
            return path
        body = self._download(url, validate)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.part-{os.getpid()}-{threading.get_ident()}")
        try:
            tmp.write_bytes(body)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def fetch_json(self, url: str) -> object:
        """A JSON document (manifest, info.json), fetched once and cached."""
        path = self.fetch(url, ".json", _validate_json)
        return json.loads(path.read_bytes())

    def _download(self, url: str, validate) -> bytes:
        host = self._host(url)
        with host.lock:  # one request at a time per host, `delay` apart
            if host.blocked:
                raise FetchError(host.blocked)
            invalid_once = False
            attempt = 0
            while True:
                wait = host.next_time - time.monotonic()
                if (wait > 0 and self.stop.wait(wait)) or self.stop.is_set():
                    raise FetchError("interrupted")
                try:
                    body = self._request(url)
                    reason = validate(body) if validate else None
                    if reason is None:
                        host.next_time = time.monotonic() + self.delay
                        return body
                    if invalid_once:
                        raise FetchError(f"{reason} ({url})")
                    invalid_once = True
                    raise _Retry(reason)
                except _Retry as r:
                    attempt += 1
                    if r.wait is not None and r.wait > MAX_RETRY_AFTER:
                        host.blocked = (f"{r.reason}: the server asks to wait {r.wait:.0f} s; "
                                        f"rerun later (downloads so far are cached)")
                        raise FetchError(host.blocked) from None
                    if attempt > self.retries:
                        host.next_time = time.monotonic() + self.delay
                        raise FetchError(f"{r.reason} after {attempt} attempts ({url})") from None
                    backoff = min(60.0, max(self.delay, 0.25) * 2 ** (attempt - 1))
                    pause = max(self.delay, r.wait) if r.wait is not None else backoff
                    host.next_time = time.monotonic() + pause
                except FetchError:
                    host.next_time = time.monotonic() + self.delay
                    raise

    def _request(self, url: str) -> bytes:
        with self._count_lock:
            self.requests += 1
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                expected = response.headers.get("Content-Length")
                buf = io.BytesIO()
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    buf.write(chunk)
                    if buf.tell() > MAX_BYTES:
                        raise FetchError(f"download larger than {MAX_BYTES >> 20} MiB refused ({url})")
                body = buf.getvalue()
        except urllib.error.HTTPError as e:
            status = f"HTTP {e.code} {e.reason}"
            if e.code == 429 or e.code == 503:
                raise _Retry(status, _retry_after(e.headers.get("Retry-After"))) from None
            if e.code == 408 or e.code >= 500:
                raise _Retry(status) from None
            raise FetchError(f"{status} ({url})") from None
        except (TimeoutError, socket.timeout):
            raise _Retry(f"no answer within {self.timeout:g} s (ingest.iiif_timeout)") from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (TimeoutError, socket.timeout)):
                raise _Retry(f"no answer within {self.timeout:g} s (ingest.iiif_timeout)") from None
            if isinstance(e.reason, socket.gaierror):
                raise FetchError(f"unknown host ({e.reason}) ({url})") from None
            raise _Retry(f"connection failed ({e.reason})") from None
        except (http.client.HTTPException, ConnectionError, OSError) as e:
            raise _Retry(f"connection broken ({type(e).__name__}: {e})") from None
        if expected is not None and expected.isdigit() and len(body) != int(expected):
            raise _Retry(f"truncated response ({len(body)} of {expected} bytes)")
        return body


def _remove_stale_parts(folder: Path) -> None:
    """Temporary files left by a killed run (`<name>.part-<pid>-<thread>` whose process is gone)."""
    for part in folder.glob("*/*.part-*"):
        pid = part.name.rsplit(".part-", 1)[-1].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running (another ingest of this project?)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except PermissionError:
            continue


def _validate_json(body: bytes) -> str | None:
    try:
        json.loads(body)
    except ValueError:
        start = body[:80].decode("utf-8", "replace").strip().replace("\n", " ")
        return f"not JSON (the server answered {start[:60]!r}…)"
    return None
