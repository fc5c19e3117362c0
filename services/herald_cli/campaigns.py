"""`herald campaigns create|status|pause|resume|cancel`: a tenant's campaigns, through the HTTP API.

The command is a client of the API like any other: it authenticates with the tenant's API key
from the environment (`HERALD_TENANT_KEY`, or the variable `--key-env` names; never an argument, so
that it stays out of shell history and process lists) and talks to `--url` (default
`HERALD_TENANT_URL`, else this machine's API port). `create` streams the file up with a progress
bar; `status --follow` shows one while the campaign sends, until it ends.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from herald_cli.settings import Settings

CHUNK = 1024 * 1024
MEDIA = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}
ENDED = ("completed", "cancelled")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the API's base URL (default: HERALD_TENANT_URL, else this machine's API)")
    parser.add_argument("--key-env", default="HERALD_TENANT_KEY", help="the environment variable holding the API key")
    sub = parser.add_subparsers(dest="campaigns_command", required=True)
    create = sub.add_parser("create", help="create a campaign from a CSV or Parquet file (a progress bar uploads it)")
    create.add_argument("file", type=Path)
    create.add_argument("--template", required=True, help="the template's name")
    create.add_argument("--language", default="en")
    create.add_argument("--name", help="the campaign's name (default: the file's)")
    create.add_argument("--send-at", help="ISO 8601 with an offset: send from then, once started")
    create.add_argument("--ttl", type=int, help="each message's time to live, in seconds")
    create.add_argument("--start", action="store_true", help="start it once uploaded, and follow it")
    create.add_argument("--accept-tail", action="store_true",
                        help="start even if the estimate says its tail expires or passes the daily limit")  # fmt: skip
    status = sub.add_parser("status", help="a campaign's state and counts")
    status.add_argument("campaign")
    status.add_argument("--follow", action="store_true", help="a progress bar until it completes or is cancelled")
    for action in ("pause", "resume", "cancel"):
        sub.add_parser(action, help=f"{action} a campaign").add_argument("campaign")


def run(settings: Settings, args: argparse.Namespace) -> None:
    key = os.environ.get(args.key_env)
    if not key:
        sys.exit(f"set {args.key_env} to the tenant's API key")
    url = args.url or os.environ.get("HERALD_TENANT_URL") or f"http://127.0.0.1:{settings.api.port}"
    console = Console(stderr=True)
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=60) as api:
        command = args.campaigns_command
        if command == "create":
            campaign = _create(api, console, args)
            if args.start:
                campaign = _ok(api.post(f"/v1/campaigns/{campaign['id']}/start",
                                        json={"accept_tail": args.accept_tail}))  # fmt: skip
                campaign = _follow(api, console, campaign["id"])
        elif command == "status":
            campaign = _ok(api.get(f"/v1/campaigns/{args.campaign}"))
            if args.follow and campaign["state"] not in ENDED:
                campaign = _follow(api, console, args.campaign)
        else:
            campaign = _ok(api.post(f"/v1/campaigns/{args.campaign}/{command}"))
        _print(campaign)


def _create(api: httpx.Client, console: Console, args: argparse.Namespace) -> dict[str, Any]:
    media = MEDIA.get(args.file.suffix.lower())
    if media is None:
        sys.exit(f"{args.file}: a .csv or .parquet file")
    body: dict[str, Any] = {"name": args.name or args.file.stem,
                            "template": {"name": args.template, "language": args.language}}  # fmt: skip
    if args.send_at:
        body["send_at"] = args.send_at
    if args.ttl:
        body["ttl_seconds"] = args.ttl
    campaign = _ok(api.post("/v1/campaigns", json=body))
    size = args.file.stat().st_size
    with Progress(TextColumn("uploading"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console) as bar:  # fmt: skip
        task = bar.add_task("upload", total=size)

        def chunks() -> Iterator[bytes]:
            with args.file.open("rb") as file:
                while chunk := file.read(CHUNK):
                    bar.advance(task, len(chunk))
                    yield chunk

        # Validation runs as the rows arrive: the answer comes once the last row is checked.
        campaign = _ok(api.put(f"/v1/campaigns/{campaign['id']}/recipients", content=chunks(),
                               headers={"content-type": media}, timeout=None))  # fmt: skip
    if campaign["counts"]["rejected"]:
        console.print(f"rows refused: {campaign['counts']['rejected']} (GET /v1/campaigns/{campaign['id']}/rejections)")
    return campaign


def _follow(api: httpx.Client, console: Console, campaign_id: str) -> dict[str, Any]:
    campaign = _ok(api.get(f"/v1/campaigns/{campaign_id}"))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as bar:  # fmt: skip
        queued = bar.add_task("queued", total=campaign["counts"]["rows"])
        delivered = bar.add_task("delivered", total=campaign["counts"]["rows"])
        while True:
            counts = campaign["counts"]
            bar.update(queued, completed=counts["accepted"] + counts["rejected"], description=campaign["state"])
            bar.update(delivered, completed=counts["delivered"] + counts["read"],
                       total=max(1, counts["rows"] - counts["rejected"]))  # fmt: skip
            if campaign["state"] in ENDED and _settled(campaign):
                return campaign
            time.sleep(1)
            campaign = _ok(api.get(f"/v1/campaigns/{campaign_id}"))


def _settled(campaign: dict[str, Any]) -> bool:
    """Every queued message is with a provider or ended (the messages' counts follow the
    campaign's own by moments: its `accepted` is counted as it queues them)."""
    k = campaign["counts"]
    never_queued = k["rows"] - k["rejected"] - k["accepted"] if campaign["state"] == "cancelled" else 0
    handled = k["sent"] + k["delivered"] + k["read"] + k["failed"] + k["expired"] + k["cancelled"] - never_queued
    return bool(handled >= k["accepted"])


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.is_success:
        answer: dict[str, Any] = response.json()
        return answer
    try:
        problem = response.json()
        sys.exit(f"{response.status_code} {problem.get('code')}: {problem.get('detail')}")
    except ValueError:
        sys.exit(f"{response.status_code}: {response.text[:200]}")


def _print(campaign: dict[str, Any]) -> None:
    counts = " ".join(f"{name}={value}" for name, value in campaign["counts"].items())
    print(f"{campaign['id']} {campaign['state']} {campaign['name']!r} {counts}")
