"""The `herald` command: one subcommand per process or operation.

Only the chosen subcommand's module is imported (`Command.module`), so `herald api` loads
neither the worker, the sinks nor pyarrow, and a broken module breaks only its own command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from herald import logs
from herald_cli.settings import Settings


class Command(msgspec.Struct, frozen=True):
    module: str
    """`herald_cli.<module>`: its function `function(settings)` runs the command, or, for a
    command with arguments of its own, `add_arguments(parser)` and `run(settings, args)`."""
    help: str
    function: str = "run"
    arguments: bool = False
    serving: bool = False
    """Faces the network or holds Herald's keys: refuses to start in production on a secret from
    this repository (`Settings.refusals`)."""

    def load(self) -> Any:
        return importlib.import_module(f"herald_cli.{self.module}")


COMMANDS: dict[str, Command] = {
    "api": Command("processes", "serve the HTTP API", "api", serving=True),
    "worker": Command("processes", "deliver messages (a consumer-group member)", "worker", serving=True),
    "sinks": Command("processes", "project statuses into Postgres", "sinks", serving=True),
    "carrier-sim": Command("processes", "run the simulated carrier", "carrier_sim"),
    "whatsapp-sim": Command("processes", "run the double of Meta's WhatsApp Cloud API", "whatsapp_sim"),
    "smsc-sim": Command("processes", "run the SMSC double (SMPP 3.4)", "smsc_sim"),
    "twilio-sim": Command("processes", "run the HTTP SMS aggregator double (Twilio's format)", "twilio_sim"),
    "mail-sim": Command("processes", "run the SMTP relay and DNS double (email)", "mail_sim"),
    "ses-sim": Command("processes", "run the Amazon SES v2 double (moto, with throttling faults)", "ses_sim"),
    "dev": Command("processes", "run everything on embedded Postgres and broker (make run)", "dev"),
    "migrate": Command("maintenance", "apply database migrations and create topics", "migrate"),
    "retention": Command(
        "maintenance",
        "purge message content past retention, old limit entries, claims, dead callbacks (daily)",
        "retention",
    ),
    "keygen": Command("maintenance", "print a new random key (for HERALD_SECRETS_KEK and other secrets)", "keygen"),
    "rewrap-secrets": Command(
        "maintenance", "wrap every stored secret under the current KEK (after a KEK rotation)", "rewrap_secrets"
    ),
    "billing": Command("billing", "rate cards, usage exports, reconciliation, the month close", arguments=True),
    "dlq": Command("dlq", "dead-letter topic: replay failed messages", arguments=True),
    "sms": Command("sms", "sms providers and routes: show them, apply a file of them", arguments=True),
    "campaigns": Command("campaigns", "a tenant's campaigns through the API: create from a file, follow, pause",
                         arguments=True),
    "parked": Command("parked", "records the sinks refused: list them, apply them again", arguments=True),
}


def parser_for(chosen: str | None) -> argparse.ArgumentParser:
    """The full parser, with the arguments of `chosen` only (its module is the one loaded)."""
    parser = argparse.ArgumentParser(prog="herald", description="Herald notification platform")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command_parser = sub.add_parser(name, help=command.help)
        if command.arguments and name == chosen:
            command.load().add_arguments(command_parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = parser_for(chosen).parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        sys.exit(str(exc))
    logs.configure(settings.log_level, args.command)
    if settings.supervisor_pid:
        from herald_cli.orphans import stop_when_orphaned

        stop_when_orphaned(settings.supervisor_pid)
    command = COMMANDS[args.command]
    if command.serving and (refusals := settings.refusals()):
        sys.exit(
            "refusing to start in production (HERALD_ENVIRONMENT=production, the default):\n  "
            + "\n  ".join(refusals)
            + "\nset real secrets (`herald keygen` makes one), or HERALD_ENVIRONMENT=development"
        )
    run: Callable[..., None] = getattr(command.load(), command.function)
    if command.arguments:
        run(settings, args)
    else:
        run(settings)
