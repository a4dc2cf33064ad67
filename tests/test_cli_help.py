"""What the command-line help promises matches what the services do."""

from __future__ import annotations

import inspect

from click.testing import CliRunner

from interaction_store.cli import main
from interaction_store.cli.serve import _watch_access


def test_keys_revoke_help_says_it_takes_effect_without_a_restart() -> None:
    result = CliRunner().invoke(main, ["keys", "revoke", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "on restart" not in text, text
    assert "within about a second" in text
    # The promise holds while the servers look at the access file at least once a second.
    assert inspect.signature(_watch_access).parameters["every"].default <= 1.0
