"""The README documents every command and every config key (docs are code)."""

from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.core.config import config_reference

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


def test_config_reference_is_current_and_linked():
    assert config_reference() in CONFIGURATION, (
        "docs/configuration.md is stale: python -c 'from pipeline.core.config import write_config_reference; write_config_reference()'"
    )
    assert "docs/configuration.md" in README


def test_every_command_documented_and_has_help():
    for name, command in cli.commands.items():
        assert f"sprites {name}" in README, f"`sprites {name}` is not in the README"
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and len(result.output) > 80


def test_readme_is_for_users_and_links_the_logs():
    root = ROOT
    assert len(README.splitlines()) < 400, "README is for users: move experiment logs to docs/experiments.md"
    for page in ("docs/experiments.md", "docs/benchmarks.md"):
        assert page in README and (root / page).is_file()
