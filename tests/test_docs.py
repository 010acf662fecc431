"""The README documents every command and every config key (docs are code)."""

from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.core.config import config_reference

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_config_reference_is_current():
    assert config_reference() in README, "README's configuration reference is stale: paste pipeline.core.config.config_reference()"


def test_every_command_documented_and_has_help():
    for name, command in cli.commands.items():
        assert f"sprites {name}" in README, f"`sprites {name}` is not in the README"
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and len(result.output) > 80


def test_readme_is_for_users_and_links_the_logs():
    root = Path(__file__).parent.parent
    assert len(README.splitlines()) < 400, "README is for users: move experiment logs to docs/experiments.md"
    for page in ("docs/experiments.md", "docs/benchmarks.md"):
        assert page in README and (root / page).is_file()
