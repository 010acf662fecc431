"""`sprites bench`: throughput and quality figures (benchmarks, not tests).

* `speed`: one training step — exactly `zero_grad`, forward, backward, Adam step
  (`make_optimizer`) on a pre-built `torch.rand` batch, no data loading — timed for the model of
  a reference case, warm-up iterations then the median of `steps`; beside it the reference
  code's figure measured the same way (reference notes §16: batch 32, 2 threads); then the
  inference throughput of `model.eval(); model.decompose(x)` with batch 64 (the decompose default), and the peak RSS.
* `quality`: an example project trained for a wall-clock budget, all stages, `sprites eval`.
* `ingest`: a generated collection of PNG images through `sprites run ingest` in a subprocess:
  images/s and peak memory of the ingest's own processes.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.errors import SpritesError

__all__ = ["SPEED_CASES", "PRESET_CASES", "speed_bench", "quality_bench", "ingest_bench",
           "QUALITY_MINUTES", "format_speed"]


# ----------------------------------------------------------------------------------------------
# speed
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpeedCase:
    name: str
    preset: str
    example: str | None          # example whose config is applied over the preset
    model: dict                  # further model overrides
    channels: int
    size: int
    reference: float | None      # reference img/s (§16.2), None when there is none
    description: str


SPEED_CASES: dict[str, SpeedCase] = {
    "clustering-28": SpeedCase(
        "clustering-28", "clustering", None,
        {"sprites": 10, "transforms": ["color", "projective", "tps"], "curriculum": []}, 1, 28, 134.0,
        "28×28 grey, K=10, clustering preset, color+projective+tps all active"),
    "tetrominoes": SpeedCase(
        "tetrominoes", "scenes", "tetrominoes", {}, 3, 35, 50.0,
        "tetrominoes example config, 35×35 RGB, sprites unfrozen"),
    "multi-dsprites": SpeedCase(
        "multi-dsprites", "scenes", "multi-dsprites", {}, 3, 64, 20.0,
        "multi-dsprites example config, 64×64 RGB, sprites unfrozen"),
    "objects-64": SpeedCase(
        "objects-64", "objects", "coins", {}, 3, 64, None,
        "coins example config (objects preset), 64×64 RGB"),
}

PRESET_CASES = {
    "clustering": ["clustering-28"],
    "scenes": ["tetrominoes", "multi-dsprites"],
    "objects": ["objects-64"],
    "all": list(SPEED_CASES),
}


def case_config(case: SpeedCase):
    """The Config of a speed case: preset, then the example's recommended config, then overrides."""
    from pipeline.core.config import config_from_dict
    data: dict[str, dict] = {}
    if case.example:
        from pipeline.examples import EXAMPLES
        ex = EXAMPLES[case.example]
        data = {s: dict(v) for s, v in ex.config.items()}
    data.setdefault("model", {}).update(case.model)
    data.setdefault("ingest", {}).update({"size": case.size, "channels": case.channels})
    return config_from_dict(data, preset=case.preset)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux ≥ 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak RSS of this process in MB: VmHWM (resettable) or getrusage's ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _median_time(fn: Callable[[], Any], warmup: int, steps: int) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


VARIANTS = ("eager", "channels-last", "compile")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise SpritesError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}")


def speed_case(case: SpeedCase, batch: int = 32, steps: int = 10, warmup: int = 3,
               decompose_batch: int = 64, decompose_steps: int = 3, seed: int = 0,
               variant: str = "eager") -> dict[str, Any]:
    """Time one case: training step (median s/iter) and decompose (crops/s).

    `variant` measures the options the issue asks to weigh: `channels-last` runs the encoder on
    NHWC tensors, `compile` wraps the encoder in `torch.compile` (its compile time, the first
    warm-up step, is reported apart). Training itself runs eager: see the README's figures."""
    import torch
    from pipeline.models.base import Clock
    from pipeline.models.fit import make_optimizer
    from pipeline.models.sprites.model import SpriteModel
    resettable = _reset_peak_rss()
    cfg = case_config(case)
    torch.manual_seed(seed)
    x = torch.rand(batch, case.channels, case.size, case.size)
    model = SpriteModel(cfg.model, case.channels, case.size, init_images=x[:cfg.model.sprites],
                        mean_image=x.mean(0))
    model.train()
    optimizer = make_optimizer(model, cfg.train)
    model.start_training(cfg.train, {})
    clock = Clock(0, 0, 1e9, 1)   # every transformation of the curriculum active, sprites unfrozen
    _check_variant(variant)
    compile_s = None
    if variant == "channels-last":
        model.encoder.to(memory_format=torch.channels_last)
        model.encoder.register_forward_pre_hook(
            lambda _, args: (args[0].contiguous(memory_format=torch.channels_last),))
    elif variant == "compile":
        model.encoder.trunk = torch.compile(model.encoder.trunk)
        t0 = time.perf_counter()
        model.training_step(x, clock).backward()
        compile_s = time.perf_counter() - t0

    def step():
        optimizer.zero_grad(set_to_none=True)
        model.training_step(x, clock).backward()
        optimizer.step()

    t, times = _median_time(step, warmup, steps)
    out: dict[str, Any] = {
        "case": case.name, "description": case.description, "batch": batch, "steps": steps, "warmup": warmup,
        "variant": variant, "compile_s": compile_s,
        "s_per_iter": t, "img_per_s": batch / t, "times": times,
        "reference_img_per_s": case.reference,
        "ratio": (batch / t) / case.reference if case.reference else None,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if decompose_steps > 0:
        xd = torch.rand(decompose_batch, case.channels, case.size, case.size)
        model.eval()
        td, _ = _median_time(lambda: model.decompose_batch(xd), 1, decompose_steps)
        out.update({"decompose_batch": decompose_batch, "decompose_s_per_batch": td,
                    "decompose_crops_per_s": decompose_batch / td})
    out["peak_rss_mb"] = _peak_rss_mb()
    out["peak_rss_scope"] = "this case" if resettable else "process so far"
    return out


def with_model_overrides(case: SpeedCase, sets: tuple[str, ...]) -> SpeedCase:
    """`case` with `--set model.KEY=VALUE` overrides, named after them (only model keys change a
    training step's cost; checked against the config like any project's)."""
    from pipeline.core.config import parse_override
    model, names = dict(case.model), []
    for text in sets:
        section, key, value = parse_override(text)
        if section != "model":
            raise SpritesError(f"--set {text}: bench speed takes model keys only (e.g. --set model.rotations=8)")
        model[key] = value
        names.append(f"{key}={value}")
    new = dataclasses.replace(case, model=model, name=f"{case.name} [{', '.join(names)}]")
    case_config(new)  # unknown keys and bad values fail here, before any timing
    return new


def unfit_reason(case: SpeedCase) -> str | None:
    """Why the model of `case` cannot be built (e.g. an override that does not suit its crop size), or None."""
    from pipeline.models.sprites.model import check_model_config
    try:
        check_model_config(case_config(case).model, case.size)
    except SpritesError as e:
        return str(e)
    return None


def speed_bench(preset: str = "all", threads: int = 0, batch: int = 32, steps: int = 10, warmup: int = 3,
                decompose_steps: int = 3, log: Callable[[str], None] = print,
                variants: tuple[str, ...] = ("eager",), sets: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run the speed cases of `preset`; `log` gets one formatted line per case as it finishes.
    With `sets` (model overrides), each case is also timed with them, right after itself."""
    import torch
    from pipeline.models.device import set_threads
    if preset not in PRESET_CASES:
        raise SpritesError(f"unknown preset {preset!r}: choose one of {', '.join(PRESET_CASES)}")
    if steps < 1 or warmup < 0 or batch < 1:
        raise SpritesError("--steps and --batch must be at least 1, --warmup at least 0")
    cases = [[SPEED_CASES[name]] + ([with_model_overrides(SPEED_CASES[name], sets)] if sets else [])
             for name in PRESET_CASES[preset]]   # built first: a bad --set fails before anything is printed
    n = set_threads(threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result: dict[str, Any] = {
        "torch": torch.__version__, "threads": n, "cpus": os.cpu_count(),
        "load_before": list(load) if load else None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cases": [],
    }
    log(f"torch {torch.__version__}, {n} threads ({os.cpu_count()} CPUs), "
        f"load average {load[0]:.2f}" if load else f"torch {torch.__version__}, {n} threads")
    log(f"training step = zero_grad + forward + backward + Adam, batch {batch}, "
        f"{warmup} warm-up + median of {steps}; decompose batch 64")
    log(SPEED_HEADER)
    for variant in variants:  # before any case runs
        _check_variant(variant)
    for group in cases:
        for case in group:
            reason = unfit_reason(case)
            if reason:   # an override that suits the other cases only (e.g. a crop size it does not divide)
                log(f"{case.name}: skipped: {reason}")
                result.setdefault("skipped", []).append({"case": case.name, "reason": reason})
                continue
            for variant in variants:  # interleaved per case, so their ratios come from one run
                r = speed_case(case, batch=batch, steps=steps, warmup=warmup,
                               decompose_steps=decompose_steps, variant=variant)
                result["cases"].append(r)
                log(format_speed(r))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result["load_after"] = list(load) if load else None
    return result


SPEED_HEADER = (f"{'case':30s} {'img/s':>8s} {'s/iter':>8s} {'ref img/s':>9s} {'ratio':>6s} "
                f"{'decompose crops/s':>18s} {'peak RSS':>9s}")


def format_speed(r: dict[str, Any]) -> str:
    ref = f"{r['reference_img_per_s']:.0f}" if r["reference_img_per_s"] else "–"
    ratio = f"{r['ratio']:.2f}×" if r["ratio"] else "–"
    dec = f"{r['decompose_crops_per_s']:.0f}" if "decompose_crops_per_s" in r else "–"
    name = r["case"] if r.get("variant", "eager") == "eager" else f"{r['case']} [{r['variant']}]"
    extra = f"  (compile {r['compile_s']:.0f} s)" if r.get("compile_s") else ""
    return (f"{name:30s} {r['img_per_s']:8.1f} {r['s_per_iter']:8.3f} {ref:>9s} {ratio:>6s} "
            f"{dec:>18s} {r['peak_rss_mb']:6.0f} MB{extra}")


# ----------------------------------------------------------------------------------------------
# quality
# ----------------------------------------------------------------------------------------------

QUALITY_MINUTES = {"glyphs": 5.0, "letters": 10.0, "digits": 5.0, "tetrominoes": 30.0, "multi-dsprites": 45.0,
                   "coins": 10.0, "ornaments": 10.0, "ornaments-variant": 10.0}
_BENCH_MARK = ".sprites-bench"


def _prepare_dir(directory: Path) -> None:
    """Empty `directory` for a bench project; refuse to touch a folder a bench did not make."""
    if directory.exists():
        if not directory.is_dir():
            raise SpritesError(f"{directory} exists and is not a folder: choose another --dir")
        if any(directory.iterdir()) and not (directory / _BENCH_MARK).exists():
            raise SpritesError(f"{directory} exists and was not made by `sprites bench`: choose another --dir "
                               f"(a bench folder is emptied before each run)")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / _BENCH_MARK).write_text("made by `sprites bench`; emptied by the next bench run\n", encoding="utf-8")


def quality_bench(name: str, minutes: float | None = None, count: int | None = None,
                  directory: str | Path | None = None, sets: list[str] | tuple[str, ...] = (),
                  log: Callable[[str], None] = print, progress: bool = True, stages=()) -> dict[str, Any]:
    """Init example `name` in `directory`, train for `minutes`, run `stages` (the pipeline's, as the
    CLI hands them), evaluate."""
    import h5py
    from pipeline.evaluation.evaluate import evaluate
    from pipeline.examples import EXAMPLES
    from pipeline.core.project import init_project
    from pipeline.core.runner import run_stages
    if name not in EXAMPLES:
        raise SpritesError(f"unknown example {name!r}: choose one of {', '.join(EXAMPLES)}")
    minutes = QUALITY_MINUTES.get(name, 10.0) if minutes is None else float(minutes)
    if minutes <= 0:
        raise SpritesError("--minutes must be positive")
    directory = Path(directory) if directory is not None else Path.cwd() / f"bench-{name}"
    _prepare_dir(directory)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    project = init_project(directory, example=name, count=count,
                           sets=[f"train.minutes={minutes}", *sets], force=True)
    cfg = project.config()
    count = count if count is not None else EXAMPLES[name].default_count
    use = {"no": f"train.epochs = {cfg.train.epochs} (whichever comes first)",
           "stretch": f"a schedule of {cfg.train.epochs} epochs stretched over the budget",
           "restarts": f"runs of {cfg.train.epochs} epochs from new seeds while the budget lasts, the lowest loss kept"}
    log(f"bench quality {name}: {count} images, train.minutes = {minutes:g}, {use[cfg.train.fill_budget]}, "
        f"project {directory}")
    run_stages(project, cfg, ["all"], stages=stages, log=log, progress=progress)
    with h5py.File(project.stage_path("train"), "r") as f:
        trained_s = float(f.attrs.get("seconds", float("nan")))
        epochs_done = int(f.attrs.get("epochs_done", 0))
        steps = int(f.attrs.get("steps", 0))
    scores = evaluate(project, stages=stages)
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line: dict[str, Any] = {
        "example": name, "count": count, "minutes_budget": minutes, "minutes_trained": trained_s / 60,
        "epochs_done": epochs_done, "steps": steps, "threads": cfg.train.threads or None,
        "wall_s": wall, "peak_rss_mb": rss, "peak_rss_before_mb": rss0 / 1024, "sets": list(sets),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "project": str(directory),
    }
    if "clustering" in scores:
        c = scores["clustering"]
        line.update(acc=c["acc"], nmi=c["nmi"], ari=c["ari"])
    if "masks" in scores:
        m = scores["masks"]
        line.update(ari_fg=m["ari_fg"], ari_all=m["ari"], fg_iou=m.get("fg_iou"), miou=m.get("miou"), macc=m.get("macc"),
                    miou_nobkg=m.get("miou_nobkg"), macc_nobkg=m.get("macc_nobkg"))
    f = scores.get("families") or {}
    if f.get("clustering") or f.get("masks"):
        line.update(families=f["count"], family_acc=(f.get("clustering") or {}).get("acc"),
                    family_miou=(f.get("masks") or {}).get("miou"), family_macc=(f.get("masks") or {}).get("macc"))
    line["eval"] = scores.get("path")
    path = project.exports_dir / "bench.json"
    from pipeline.evaluation.evaluate import _json_safe, _write_json
    _write_json(path, _json_safe(line))
    line["path"] = str(path)
    return line


def _minutes(m: float) -> str:
    return f"{m:.1f}" if m >= 1 else f"{m:.2f}"


def format_quality(line: dict[str, Any]) -> str:
    def pct(v):
        return "–" if v is None or v != v else f"{100 * v:.1f}"
    parts = [f"{line['example']}", f"n={line['count']}",
             f"trained {_minutes(line['minutes_trained'])}/{line['minutes_budget']:g} min ({line['epochs_done']} epochs)"]
    if "acc" in line:
        parts.append(f"acc {pct(line['acc'])} %  nmi {pct(line['nmi'])}  ari {pct(line['ari'])}")
    if "ari_fg" in line:
        parts.append(f"ari-fg {pct(line['ari_fg'])}  fg-iou {pct(line.get('fg_iou'))}  miou {pct(line.get('miou'))}  "
                     f"macc {pct(line.get('macc'))}")
    if "families" in line:
        parts.append(f"{line['families']} families: " + "  ".join(
            f"{label} {pct(line[key])}" for label, key in (("acc", "family_acc"), ("miou", "family_miou"), ("macc", "family_macc"))
            if line.get(key) is not None))
    parts.append(f"wall {line['wall_s'] / 60:.1f} min")
    parts.append(f"peak RSS {line['peak_rss_mb']:.0f} MB")
    return "  |  ".join(parts)


# ----------------------------------------------------------------------------------------------
# ingest
# ----------------------------------------------------------------------------------------------

def _make_image(i: int, size: int, seed: int):
    """A random-ish photo: smooth noise (a few octaves, upsampled) plus a few filled shapes."""
    import cv2
    import numpy as np
    rng = np.random.default_rng([seed, i])
    img = np.zeros((size, size, 3), np.float32)
    for cells, amp in ((4, 90.0), (16, 40.0), (64, 15.0)):
        small = rng.random((cells, cells, 3), dtype=np.float32)
        img += cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC) * amp
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 16, size // 4))
        if rng.random() < 0.5:
            cv2.circle(img, (cx, cy), r, colour, -1)
        else:
            cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r // 2), colour, -1)
    return img


def _write_images(args) -> None:
    import cv2
    folder, lo, hi, size, seed, fmt = args
    options = [cv2.IMWRITE_PNG_COMPRESSION, 1] if fmt == "png" else [cv2.IMWRITE_JPEG_QUALITY, 90]
    for i in range(lo, hi):
        sub = Path(folder) / f"d{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"{i:06d}.{'png' if fmt == 'png' else 'jpg'}"), _make_image(i, size, seed)[..., ::-1], options)


def bench_collection(count: int, size: int, seed: int = 0, log: Callable[[str], None] = print,
                     fmt: str = "png") -> Path:
    """The generated collection (made once, reused): <tmp>/sprites-bench-ingest/<count>x<size>/images."""
    base = Path(tempfile.gettempdir()) / "sprites-bench-ingest" / (f"{count}x{size}-s{seed}" + ("" if fmt == "png" else f"-{fmt}"))
    images, done = base / "images", base / "complete"
    if done.exists():
        return images
    shutil.rmtree(base, ignore_errors=True)
    images.mkdir(parents=True)
    log(f"generating {count} images of {size}×{size} px in {images} (once) …")
    t0 = time.perf_counter()
    import multiprocessing
    procs = max(1, min(os.cpu_count() or 1, 8))
    step = max(1, -(-count // (procs * 8)))
    jobs = [(str(images), lo, min(count, lo + step), size, seed, fmt) for lo in range(0, count, step)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        pool.map(_write_images, jobs)
    done.write_text("ok\n")
    log(f"  generated in {time.perf_counter() - t0:.0f} s")
    return images


class _TreeSampler(threading.Thread):
    """Samples the summed RSS (and PSS when readable) of a process and its descendants."""

    def __init__(self, pid: int, every: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_rss = self.peak_pss = 0.0
        self.peak_procs = 0
        self.stop = threading.Event()

    @staticmethod
    def _children(pid: int) -> list[int]:
        out = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    out += [int(c) for c in f.read().split()]
        except OSError:
            pass
        return out

    def _tree(self) -> list[int]:
        todo, seen = [self.pid], []
        while todo:
            p = todo.pop()
            seen.append(p)
            todo += self._children(p)
        return seen

    @staticmethod
    def _kb(path: str, key: str) -> int:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def run(self):
        while not self.stop.is_set():
            pids = self._tree()
            rss = sum(self._kb(f"/proc/{p}/status", "VmRSS:") for p in pids) / 1024
            pss = sum(self._kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids) / 1024
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(pids))
            self.stop.wait(self.every)


def ingest_bench(count: int = 20000, size: int = 256, crop: int = 64, channels: int = 3,
                 directory: str | Path | None = None, seed: int = 0,
                 log: Callable[[str], None] = print, fmt: str = "png") -> dict[str, Any]:
    """Time `sprites run ingest --force` on a generated collection (PNG or JPEG), in a subprocess."""
    from pipeline.core.project import init_project
    if count < 1 or size < 8 or crop < 8:
        raise SpritesError("--count must be at least 1, --size and --crop at least 8")
    if fmt not in ("png", "jpeg"):
        raise SpritesError("--format must be png or jpeg")
    images = bench_collection(count, size, seed, log, fmt)
    directory = Path(directory) if directory is not None else Path(tempfile.gettempdir()) / "sprites-bench-ingest" / f"project-{count}x{size}-{crop}-{fmt}"
    _prepare_dir(directory)
    init_project(directory, images=str(images), preset="objects",
                 sets=[f"ingest.size={crop}", f"ingest.channels={channels}"], force=True)
    cmd = [sys.executable, "-m", "pipeline", "run", "ingest", "-p", str(directory), "-q", "--force"]
    log(f"timing: {' '.join(cmd[1:])}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = _TreeSampler(proc.pid)
    sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SpritesError(f"the ingest failed (exit {proc.returncode}):\n{output.strip()}")
    stage_s = None
    for line in output.splitlines():
        if line.startswith("ingest: done in "):
            stage_s = float(line.split()[3])
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    h5 = directory / "cache" / "ingest.h5"
    return {
        "count": count, "size": size, "crop": crop, "channels": channels, "cpus": os.cpu_count(), "format": fmt,
        "wall_s": wall, "images_per_s": count / wall,
        "stage_s": stage_s, "stage_images_per_s": count / stage_s if stage_s else None,
        "cpu_user_s": after.ru_utime - before.ru_utime, "cpu_sys_s": after.ru_stime - before.ru_stime,
        "peak_rss_largest_process_mb": after.ru_maxrss / 1024,
        "peak_rss_tree_mb": sampler.peak_rss, "peak_pss_tree_mb": sampler.peak_pss or None,
        "processes": sampler.peak_procs, "ingest_h5_mb": h5.stat().st_size / 2**20 if h5.exists() else None,
        "load_after": list(load) if load else None, "images": str(images), "project": str(directory),
        "output": output.strip().splitlines()[-3:],
    }


def format_ingest(r: dict[str, Any]) -> list[str]:
    lines = [f"ingest of {r['count']} {r.get('format', 'png').upper()} images {r['size']}×{r['size']} → {r['crop']}×{r['crop']} crops, "
             f"{r['cpus']} CPUs:",
             f"  {r['images_per_s']:.0f} images/s ({r['wall_s']:.1f} s wall, process start included)"
             + (f"; the stage alone {r['stage_images_per_s']:.0f} images/s ({r['stage_s']:.1f} s)" if r["stage_s"] else ""),
             f"  CPU {r['cpu_user_s']:.1f} s user + {r['cpu_sys_s']:.1f} s system",
             f"  peak memory: largest process {r['peak_rss_largest_process_mb']:.0f} MB RSS; all {r['processes']} "
             f"processes together {r['peak_rss_tree_mb']:.0f} MB RSS"
             + (f", {r['peak_pss_tree_mb']:.0f} MB PSS (shared pages counted once)" if r.get("peak_pss_tree_mb") else ""),
             f"  target: ≥ 1000 images/s on 2 cores, < 500 MB"]
    return lines


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    from pipeline.evaluation.evaluate import _json_safe, _write_json
    path = Path(path)
    _write_json(path, _json_safe(data))
    return path
