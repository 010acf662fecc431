"""The stage runner: which stages are fresh, stale (and why) or missing, and running them in order.

The stages themselves (modules declaring NAME, DEPS, PARAMS, VERSION and run(ctx)) are handed in
by the caller — the CLI passes `stages.STAGES` — so the library never imports them.

A stage is fresh when its artifact `cache/<stage>.h5` is complete and its fingerprint matches
sha256({stage, code version, the values of its config sections, the run ids of its upstream
artifacts, a digest of its raw inputs}). Upstream *run ids* (not fingerprints) enter so that a
forced rerun upstream makes everything downstream stale.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Sequence

from pipeline.core.config import Config
from pipeline.errors import SpritesError
from pipeline.core.fingerprint import diff_values, stable_hash
from pipeline.core.project import Project
from pipeline.core.store import clean_temporaries, stage_attrs

__all__ = ["Context", "StageStatus", "stage_status", "run_stages", "resolve_targets"]


@dataclass
class Context:
    """What a stage's `run(ctx)` gets."""
    project: Project
    config: Config
    stage: ModuleType
    fingerprint: str
    meta: dict[str, Any]
    log: Callable[[str], None] = print
    progress: bool = True

    @property
    def output(self):
        return self.project.stage_path(self.stage.NAME)

    def upstream(self, name: str):
        return self.project.stage_path(name)


@dataclass
class StageStatus:
    name: str
    state: str                      # fresh | stale | missing
    reasons: list[str] = field(default_factory=list)
    fingerprint: str | None = None  # the expected one, when computable
    meta: dict[str, Any] | None = None
    blocking: list[str] = field(default_factory=list)   # why it cannot run yet (an upstream is missing)


Stages = Sequence[ModuleType]


def _registry(stages: Stages) -> dict[str, ModuleType]:
    return {s.NAME: s for s in stages}


def resolve_targets(targets: list[str], stages: Stages) -> list[str]:
    """The stages to run for `targets` ("all", or names), upstream ones included, in order."""
    registry = _registry(stages)
    if not targets or targets == ["all"]:
        return list(registry)
    for t in targets:
        if t not in registry:
            from pipeline.core.config import _unknown
            raise _unknown("stage", t, ["all", *registry])
    order = list(registry)
    wanted: set[str] = set()

    def add(name):
        wanted.add(name)
        for d in registry[name].DEPS:
            add(d)
    for t in targets:
        add(t)
    return [s for s in order if s in wanted]


def _expected(project: Project, cfg: Config, stage: ModuleType) -> tuple[str | None, dict[str, Any], list[str]]:
    """(fingerprint or None when an upstream artifact is missing, meta to store, blocking reasons)."""
    names = [n for s in stage.PARAMS for n in (cfg.model_sections() if s == "model" else [s])]
    params = {s: cfg.section(s, results_only=True) for s in names}
    deps, blocking = {}, []
    for d in stage.DEPS:
        attrs = stage_attrs(project.stage_path(d))
        if attrs is None:
            blocking.append(f"upstream {d} has not run yet")
        else:
            deps[d] = attrs.get("run_id")
    inputs = stage.inputs(project, cfg) if hasattr(stage, "inputs") else {}
    meta = {"stage": stage.NAME, "stage_version": stage.VERSION, "params_json": params,
            "deps_json": deps, "inputs_json": inputs, "config_json": cfg.to_dict()}
    if blocking:
        return None, meta, blocking
    fp = stable_hash({k: meta[k] for k in ("stage", "stage_version", "params_json", "deps_json", "inputs_json")})
    meta["fingerprint"] = fp
    return fp, meta, []


def stage_status(project: Project, cfg: Config, name: str, stages: Stages) -> StageStatus:
    stage = _registry(stages)[name]
    fp, meta, blocking = _expected(project, cfg, stage)
    attrs = stage_attrs(project.stage_path(name))
    if attrs is None:
        return StageStatus(name, "missing", blocking or ["never run (or its last run did not finish)"], fp, meta, blocking)
    if fp is not None and attrs.get("fingerprint") == fp:
        return StageStatus(name, "fresh", [], fp, meta, blocking)
    reasons = list(blocking)
    if int(attrs.get("stage_version", -1)) != stage.VERSION:
        reasons.append(f"code version {attrs.get('stage_version')} → {stage.VERSION}")
    reasons += [f"config {c}" for c in diff_values(json.loads(attrs.get("params_json", "{}")), meta["params_json"])]
    old_deps = json.loads(attrs.get("deps_json", "{}"))
    for d, run_id in meta["deps_json"].items():
        if old_deps.get(d) != run_id:
            reasons.append(f"upstream {d} was rerun")
    old_inputs = json.loads(attrs.get("inputs_json", "{}"))
    if old_inputs != meta["inputs_json"]:
        explain = getattr(stage, "explain_inputs", None)
        reasons.append(explain(project, cfg, old_inputs, meta["inputs_json"]) if explain else "inputs changed")
    return StageStatus(name, "stale", reasons or ["fingerprint changed"], fp, meta, blocking)


def run_stages(project: Project, cfg: Config, targets: list[str], *, stages: Stages, force: bool = False,
               log: Callable[[str], None] = print, progress: bool = True) -> list[str]:
    """Run the stale stages among `targets` (and their stale upstreams), in order; returns those run."""
    registry = _registry(stages)
    names = resolve_targets(targets, stages)
    # --force reruns the stages named (all of them for "all"), not the fresh upstream ones they need
    forced = (set(names) if not targets or targets == ["all"] else set(targets)) if force else set()
    project.cache_dir.mkdir(parents=True, exist_ok=True)
    clean_temporaries(project.cache_dir)
    ran = []
    for name in names:
        status = stage_status(project, cfg, name, stages)
        if status.state == "fresh" and name not in forced:
            log(f"{name}: up to date, skipped")
            continue
        why = "forced" if status.state == "fresh" else "; ".join(status.reasons)
        log(f"{name}: running ({why})")
        fp, meta, blocking = status.fingerprint, status.meta, status.blocking   # inputs listed once
        if blocking:
            raise SpritesError(f"cannot run {name}: {'; '.join(blocking)}")
        meta["run_id"] = uuid.uuid4().hex
        start = time.perf_counter()
        registry[name].run(Context(project, cfg, registry[name], fp, meta, log, progress))
        log(f"{name}: done in {time.perf_counter() - start:.1f} s")
        ran.append(name)
    if not ran:
        log("nothing to do: every stage is up to date (use --force to rerun)")
    return ran
