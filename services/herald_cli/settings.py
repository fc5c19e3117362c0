"""Every process's settings composed: the shared sections and each service's own.

`Settings.from_env()` is called once per process, by the `herald` command (or a test fixture),
and the result is passed down; each service reads it through its own Protocol
(`herald_api.settings.ApiConfig`, `herald_worker.settings.WorkerConfig`,
`herald_sinks.settings.SinksConfig`), so no service imports another's section.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from herald.settings import Common, placeholder_refusals, read_env
from herald_api.settings import ApiConfig, ApiSettings, CampaignSettings
from herald_carrier_sim.settings import CarrierSimSettings
from herald_mail_sim.settings import MailSimSettings
from herald_ses_sim.settings import SesSimSettings
from herald_sinks.settings import SinksConfig, SinkSettings
from herald_smsc_sim.settings import SmscSimSettings
from herald_twilio_sim.settings import TwilioSimSettings
from herald_whatsapp_sim.settings import WhatsAppSimSettings
from herald_worker.settings import WorkerConfig, WorkerSettings


class Settings(Common, frozen=True):
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)
    campaigns: CampaignSettings = msgspec.field(default_factory=CampaignSettings)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    sinks: SinkSettings = msgspec.field(default_factory=SinkSettings)
    carrier_sim: CarrierSimSettings = msgspec.field(default_factory=CarrierSimSettings)
    whatsapp_sim: WhatsAppSimSettings = msgspec.field(default_factory=WhatsAppSimSettings)
    smsc_sim: SmscSimSettings = msgspec.field(default_factory=SmscSimSettings)
    twilio_sim: TwilioSimSettings = msgspec.field(default_factory=TwilioSimSettings)
    mail_sim: MailSimSettings = msgspec.field(default_factory=MailSimSettings)
    ses_sim: SesSimSettings = msgspec.field(default_factory=SesSimSettings)
    supervisor_pid: int = 0
    """Set by `herald dev` on its children: a child whose parent is no longer this pid stops
    itself (`herald_cli.orphans`). 0: not supervised."""

    def refusals(self) -> list[str]:
        """Why this configuration must not serve production (empty: it may). Names the variables,
        never their values. Development runs with the repository's defaults by design."""
        if self.environment == "development":
            return []
        return placeholder_refusals({
            "HERALD_ADMIN_TOKEN": self.api.admin_token,
            "HERALD_PROVIDER_RECEIPT_SECRET": self.provider.receipt_secret,
            "HERALD_SECRETS_KEK": self.secrets.kek,
        })  # fmt: skip

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `HERALD_*` variables; unknown or malformed values raise ValueError."""
        return read_env(cls, env)


def _serves_every_process(settings: Settings) -> tuple[ApiConfig, WorkerConfig, SinksConfig]:
    """Never called: mypy checks here that the composition satisfies each service's Protocol
    (the worker and the sinks are started through `importlib`, where nothing else would)."""
    return settings, settings, settings
