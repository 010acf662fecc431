"""Where crops come from: folders and globs of images, PDFs, IIIF manifests (v2 and v3), lists of
these; and hand-drawn boxes. See `collect` for how a source string is read, `pages` for how a page
becomes crops with provenance, `iiif` and `http` for the network side, `pdf` for rendering.
"""

from pipeline.ingest.sources.collect import Plan, Spec, check_options, local_inputs, plan_pages, resolve_specs
from pipeline.ingest.sources.download import download_pages
from pipeline.ingest.sources.http import Fetcher, FetchError
from pipeline.ingest.sources.pages import CutOptions, Page, PageResult, cut_page

__all__ = ["Plan", "Spec", "check_options", "download_pages", "local_inputs", "plan_pages", "resolve_specs",
           "Fetcher", "FetchError", "CutOptions", "Page", "PageResult", "cut_page"]
