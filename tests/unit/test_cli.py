"""The `herald` command's table: every subcommand resolves, and choosing one loads only its own
service (`herald api` must not pay for the worker, the sinks or pyarrow at start)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from herald_cli.main import COMMANDS, parser_for


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_resolves_to_a_function(name: str) -> None:
    command = COMMANDS[name]
    module = command.load()
    assert callable(getattr(module, command.function))
    if command.arguments:
        parser_for(name)  # its arguments are added without error
        assert callable(module.add_arguments)


def test_the_arguments_of_a_command_parse() -> None:
    args = parser_for("parked").parse_args(["parked", "replay", "--group", "herald-sinks-status", "--dry-run"])
    chosen = (args.command, args.parked_command, args.group, args.dry_run)
    assert chosen == ("parked", "replay", "herald-sinks-status", True)


_PROBE = """
import sys
from herald_cli.main import COMMANDS, parser_for
parser_for({name!r}).parse_args({argv!r})
COMMANDS[{name!r}].load()
heavy = {{"herald_worker", "herald_sinks", "herald_api", "herald_carrier_sim", "herald_whatsapp_sim", "pyarrow"}}
# Every command reads the composed settings, so each service's settings section (a Struct) loads.
sections = heavy | {{f"{{p}}.settings" for p in heavy}}
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in heavy and m not in sections)))
"""


@pytest.mark.parametrize(
    ("name", "argv", "allowed"),
    [
        ("api", ["api"], set()),
        ("worker", ["worker"], set()),
        ("billing", ["billing", "rate-cards"], {"pyarrow"}),
        ("parked", ["parked", "list"], {"herald_sinks"}),
        ("dlq", ["dlq", "replay", "--dry-run"], {"herald_worker"}),
    ],
)
def test_a_command_loads_only_what_it_runs(name: str, argv: list[str], allowed: set[str]) -> None:
    # A fresh interpreter: this one has imported everything by now.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(name=name, argv=argv)], capture_output=True, text=True, check=True
    ).stdout.strip()
    loaded = {m.split(".")[0] for m in out.split(",") if m}
    assert loaded <= allowed, f"herald {name} loaded {sorted(loaded - allowed)}"
