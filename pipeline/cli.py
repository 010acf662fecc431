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


def _example_names() -> list[str]:
    from pipeline.examples import EXAMPLES
    return list(EXAMPLES)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--images", help="a folder of images (searched recursively) or a glob such as 'scans/**/*.jpg'")
@click.option("--preset", type=click.Choice(["clustering", "objects", "scenes"]),
              help="clustering: one opaque sprite per image; objects: one sprite over a background; scenes: several layers with occlusion")
@click.option("--example", help="fill the project with a built-in generated collection (glyphs, tetrominoes, multi-dsprites, coins)")
@click.option("--count", type=int, help="number of images of the --example collection")
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
    from pipeline.project import init_project
    if example is not None and example not in _example_names():
        _fail(SpritesError(f"unknown example {example!r}: choose one of {', '.join(_example_names())}"))
    try:
        project = init_project(directory, images=images, preset=preset, example=example, sets=sets,
                               count=count, seed=seed, force=force)
    except SpritesError as e:
        _fail(e)
    click.echo(f"created {project.config_path}")
    if images is None and example is None:
        click.echo(f"set ingest.images in {project.config_path} to your images folder, then run:")
    click.echo(f"  sprites run all --project {directory}")


@cli.command()
@click.argument("stages", nargs=-1)
@_project_option
@_set_option
@click.option("--force", is_flag=True, help="rerun the named stages even if they are up to date")
@click.option("--quiet", "-q", is_flag=True, help="no progress bars")
def run(stages, project_dir, sets, force, quiet):
    """Run the stages (all, or some of: ingest train decompose report).

    Stages whose inputs, config and code are unchanged since their last run are skipped;
    an interrupted run resumes where it stopped. --set overrides the config for this run only.

    \b
    Examples:
      sprites run all --project myproject
      sprites run ingest -p myproject --set ingest.size=32
    """
    from pipeline.project import Project
    from pipeline.runner import run_stages
    try:
        project = Project.open(project_dir)
        cfg = project.config(sets)
        run_stages(project, cfg, list(stages) or ["all"], force=force, log=click.echo, progress=not quiet)
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
    from pipeline.project import Project
    from pipeline.runner import resolve_targets, stage_status
    try:
        project = Project.open(project_dir)
        cfg = project.config(sets)
        for name in resolve_targets(["all"]):
            st = stage_status(project, cfg, name)
            line = f"{name:10s} {st.state}"
            if st.reasons:
                line += ": " + "; ".join(st.reasons)
            click.echo(line)
    except SpritesError as e:
        _fail(e)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
