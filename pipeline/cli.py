"""The `sprites` command: a thin shell over the library (the only module that imports click)."""

from __future__ import annotations

import sys

import click

from pipeline import __version__
from pipeline.errors import SpritesError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(e: Exception) -> None:
    raise click.ClickException(str(e))


def _project_option(f):
    return click.option("--project", "-p", "project_dir", default=".", show_default=True,
                        type=click.Path(file_okay=False), help="the project folder")(f)


def _set_option(f):
    return click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set model.sprites=12")(f)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="sprites")
def cli():
    """Find the repeated visual patterns (sprites) in an image collection.

    \b
    Quick start:
      sprites init demo --example glyphs
      sprites run all --project demo
      open demo/report/index.html
    """


def _stages():
    """The pipeline's stages, handed to the runner (the library never imports them)."""
    from stages import STAGES
    return STAGES


def _example_names() -> list[str]:
    from pipeline.examples import EXAMPLES
    return list(EXAMPLES)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--images", help="a folder of images and PDFs (searched recursively), a glob such as 'scans/**/*.jpg', a PDF, a IIIF manifest URL or file, or a .txt list of these")
@click.option("--preset", type=click.Choice(["clustering", "objects", "scenes"]),
              help="clustering: one opaque sprite per image; objects: one sprite over a background; scenes: several layers with occlusion")
@click.option("--example", help="fill the project with a built-in generated collection (glyphs, letters, digits, tetrominoes, multi-dsprites, coins, ornaments, ornaments-variant)")
@click.option("--count", type=int, help="number of images of the --example collection (letters: of letters, on pages)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the --example collection")
@_set_option
@click.option("--force", is_flag=True, help="overwrite an existing sprites.toml")
def init(directory, images, preset, example, count, seed, sets, force):
    """Create a project: DIRECTORY/sprites.toml, a commented config with every key.

    \b
    Examples:
      sprites init myproject --images scans/
      sprites init letters --images 'books/**/*.png' --preset clustering --set model.sprites=30
      sprites init demo --example tetrominoes
    """
    from pipeline.core.project import init_project
    if example is not None and example not in _example_names():
        _fail(SpritesError(f"unknown example {example!r}: choose one of {', '.join(_example_names())}"))
    try:
        project = init_project(directory, images=images, preset=preset, example=example, sets=sets,
                               count=count, seed=seed, force=force)
    except SpritesError as e:
        _fail(e)
    click.echo(f"created {project.config_path}")
    if images is None and example is None:
        click.echo(f"set ingest.images in {project.config_path} to your images (folder, PDF or IIIF manifest), then run:")
    click.echo(f"  sprites run all --project {directory}")


@cli.command()
@click.argument("stages", nargs=-1)
@_project_option
@_set_option
@click.option("--force", is_flag=True, help="rerun the named stages even if they are up to date")
@click.option("--seeds", type=click.IntRange(1, 20), help="train this many runs from different seeds, keep the lowest-loss one "
              "and measure how stable each sprite is (= --set train.seeds=N)")
@click.option("--quiet", "-q", is_flag=True, help="no progress bars")
def run(stages, project_dir, sets, force, seeds, quiet):
    """Run the stages (all, or some of: ingest train decompose report).

    Stages whose inputs, config and code are unchanged since their last run are skipped;
    an interrupted run resumes where it stopped. --set overrides the config for this run only.

    \b
    Examples:
      sprites run all --project myproject
      sprites run ingest -p myproject --set ingest.size=32
    """
    from pipeline.core.project import Project
    from pipeline.core.runner import run_stages
    try:
        project = Project.open(project_dir)
        cfg = project.config(list(sets) + ([f"train.seeds={seeds}"] if seeds else []))
        run_stages(project, cfg, list(stages) or ["all"], stages=_stages(), force=force, log=click.echo,
                   progress=not quiet)
    except SpritesError as e:
        _fail(e)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: nothing half-written was kept; rerun the same command to resume", err=True)
        sys.exit(130)


@cli.command()
@click.option("--bank", "bank_dir", required=True, type=click.Path(file_okay=False),
              help="the project whose trained model (and curation.toml) explains the crops")
@_project_option
@click.option("--quiet", "-q", is_flag=True, help="no progress bars")
def match(bank_dir, project_dir, quiet):
    """Explain a project's crops with another project's trained, curated sprites (no training).

    Saves train.bank (and the bank's crop size) in the project's sprites.toml, so later plain runs
    stay matched; writes the exports and the report as usual, with the bank's names; crops that no
    sprite explains as well as the bank's own are listed as unmatched.

    \b
    Example:
      sprites init volume2 --images scans/volume2/ --preset clustering
      sprites match --bank volume1 --project volume2
    """
    from pipeline.catalogue.bank import match_project
    from pipeline.core.project import Project
    try:
        match_project(Project.open(project_dir), bank_dir, stages=_stages(), log=click.echo, progress=not quiet)
    except SpritesError as e:
        _fail(e)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: nothing half-written was kept; rerun the same command to resume", err=True)
        sys.exit(130)


@cli.command()
@_project_option
@_set_option
def status(project_dir, sets):
    """Say which stages are fresh, stale (and why) or missing."""
    from pipeline.core.project import Project
    from pipeline.core.runner import resolve_targets, stage_status
    try:
        project = Project.open(project_dir)
        cfg = project.config(sets)
        for name in resolve_targets(["all"], _stages()):
            st = stage_status(project, cfg, name, _stages())
            line = f"{name:10s} {st.state}"
            if st.reasons:
                line += ": " + "; ".join(st.reasons)
            click.echo(line)
    except SpritesError as e:
        _fail(e)


@cli.command("eval")
@_project_option
@click.option("--labels", type=click.Path(dir_okay=False), metavar="CSV",
              help="ground-truth classes: a CSV with columns source,label, or source,x,y,w,h,label for several crops per page (default DIR/ground_truth/labels.csv)")
@click.option("--masks", type=click.Path(dir_okay=False), metavar="H5",
              help="ground-truth masks: HDF5 with source, instance, semantic (default DIR/ground_truth/masks.h5)")
def eval_cmd(project_dir, labels, masks):
    """Score the decomposition against ground truth; writes DIR/exports/eval.json.

    \b
    With --labels: clustering accuracy (Hungarian), NMI and ARI of each crop's front sprite.
    With --masks: ARI-FG, ARI and semantic mIoU / mACC of the decomposition masks.
    Without either, the project's ground_truth/ (made by `sprites init --example`) is used.

    \b
    Examples:
      sprites eval --project demo
      sprites eval -p letters --labels letters-classes.csv
    """
    from pipeline.evaluation.evaluate import evaluate, format_summary
    try:
        result = evaluate(project_dir, labels=labels, masks=masks, stages=_stages())
    except SpritesError as e:
        _fail(e)
    for line in format_summary(result):
        click.echo(line)
    click.echo(f"wrote {result['path']}")


@cli.group(context_settings=CONTEXT_SETTINGS)
def bench():
    """Throughput and quality figures (benchmarks, not tests)."""


@bench.command("speed")
@click.option("--preset", type=click.Choice(["clustering", "objects", "scenes", "all"]), default="all",
              show_default=True, help="which reference cases: clustering-28, objects-64, tetrominoes + multi-dsprites, or all")
@click.option("--threads", type=int, default=0, show_default=True, help="torch threads (0 = torch's default)")
@click.option("--batch", type=int, default=32, show_default=True, help="training batch size")
@click.option("--steps", type=int, default=10, show_default=True, help="timed iterations (the median is reported)")
@click.option("--warmup", type=int, default=3, show_default=True, help="untimed iterations first")
@click.option("--decompose-steps", type=int, default=3, show_default=True,
              help="timed decompose batches of 256 (0 = skip)")
@click.option("--variant", "variants", multiple=True, type=click.Choice(["eager", "channels-last", "compile"]),
              help="also time the encoder in channels-last memory or under torch.compile (repeatable; default eager)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="also save the results to this JSON file")
@click.option("--set", "sets", multiple=True, metavar="model.KEY=VALUE",
              help="also time each case with this model override (repeatable, all applied together), "
                   "e.g. --set model.selection_downsample=2")
def bench_speed(preset, threads, batch, steps, warmup, decompose_steps, variants, json_path, sets):
    """Training-step throughput on random data, beside the reference code's figures.

    Times exactly zero_grad + forward + backward + Adam step on a pre-built batch (as the
    reference figures were measured: batch 32, 2 threads), then decompose with batch 256.
    """
    from pipeline.evaluation.bench import speed_bench, write_json
    try:
        result = speed_bench(preset, threads=threads, batch=batch, steps=steps, warmup=warmup,
                             decompose_steps=decompose_steps, log=click.echo, variants=variants or ("eager",),
                             sets=tuple(sets))
        if json_path:
            click.echo(f"wrote {write_json(json_path, result)}")
    except SpritesError as e:
        _fail(e)


@bench.command("layers")
@click.option("--threads", type=int, default=0, show_default=True, help="torch threads (0 = torch's default)")
@click.option("--batch", type=int, default=32, show_default=True, help="training batch size")
@click.option("--steps", type=int, default=3, show_default=True, help="timed iterations (the median is reported)")
@click.option("--warmup", type=int, default=1, show_default=True, help="untimed iterations first")
@click.option("--layers", "layers", default="1,2,3,4,6,8,10", show_default=True, help="comma-separated numbers of layers")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="also save the results to this JSON file")
def bench_layers(threads, batch, steps, warmup, layers, json_path):
    """Training-step time against the number of layers L, per selection: exhaustive, greedy, predicted.

    64×64 RGB, K = 6 sprites + the empty sprite, batch 32: the deep-sprites paper's comparison
    (predicted selection grows linearly with L, min-loss selection faster).
    """
    from pipeline.evaluation.bench import write_json
    from pipeline.evaluation.scaling import layers_bench
    try:
        try:
            counts = tuple(int(v) for v in layers.split(","))
        except ValueError:
            raise SpritesError(f"--layers {layers!r}: give comma-separated whole numbers, e.g. 1,2,4,8") from None
        result = layers_bench(counts, threads=threads, batch=batch, steps=steps, warmup=warmup, log=click.echo)
        if json_path:
            click.echo(f"wrote {write_json(json_path, result)}")
    except SpritesError as e:
        _fail(e)


@bench.command("quality")
@click.argument("name")
@click.option("--minutes", type=float, help="training budget (default: glyphs 5, digits 5, letters 10, coins 10, ornaments 10, tetrominoes 30, multi-dsprites 45)")
@click.option("--count", type=int, help="number of images (default: the example's)")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="project folder (default ./bench-NAME, emptied first)")
@_set_option
@click.option("--quiet", "-q", is_flag=True, help="no progress bars")
def bench_quality(name, minutes, count, directory, sets, quiet):
    """Train example NAME for a time budget, run all stages and evaluate (one line of figures).

    The line is saved as DIR/exports/bench.json.
    """
    from pipeline.evaluation.bench import format_quality, quality_bench
    try:
        line = quality_bench(name, minutes=minutes, count=count, directory=directory, sets=sets,
                             log=click.echo, progress=not quiet, stages=_stages())
    except SpritesError as e:
        _fail(e)
    click.echo(format_quality(line))
    click.echo(f"wrote {line['path']}")


@bench.command("ingest")
@click.option("--count", type=int, default=20000, show_default=True, help="number of generated images")
@click.option("--size", type=int, default=256, show_default=True, help="side in px of the generated images")
@click.option("--crop", type=int, default=64, show_default=True, help="ingest.size: side of the crops")
@click.option("--format", "fmt", type=click.Choice(["png", "jpeg"]), default="png", show_default=True,
              help="file format of the generated images")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="project folder (default in the temp folder)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="also save the results to this JSON file")
def bench_ingest(count, size, crop, fmt, directory, json_path):
    """Time `sprites run ingest` on a generated collection (made once, kept in the temp folder).

    Reports images/s and the peak memory of the ingest's own processes (run in a subprocess).
    """
    from pipeline.evaluation.bench import format_ingest, ingest_bench, write_json
    try:
        result = ingest_bench(count=count, size=size, crop=crop, directory=directory, log=click.echo, fmt=fmt)
        for line in format_ingest(result):
            click.echo(line)
        if json_path:
            click.echo(f"wrote {write_json(json_path, result)}")
    except SpritesError as e:
        _fail(e)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
