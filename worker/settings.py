"""The one settings object: every process of goldenroute reads its configuration here.

Environment variables win; when TEMPORAL_ADDRESS or DATABASE_URL is unset, the
addresses of a running embedded dev stack are used (``goldenroute dev`` publishes
them in the checkout's ``$GOLDENROUTE_HOME`` and in a per-user file, see
``worker.discovery``), so ``goldenroute send`` in a second terminal, in any
directory, finds the stack that ``goldenroute dev`` started.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator

from worker.discovery import DEV_STACK_FILE, find_running


class SettingsError(ValueError):
    """A setting from the environment is invalid; the message names the variable."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    temporal_address: str | None = Field(None, description="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field("default", description="TEMPORAL_NAMESPACE")
    task_queue: str = Field("goldenroute", description="TASK_QUEUE")
    database_url: str | None = Field(None, description="DATABASE_URL")
    log_format: Literal["json", "console"] = Field("console", description="LOG_FORMAT")
    log_level: str = Field("INFO", description="LOG_LEVEL")
    metrics_port: int = Field(9464, ge=0, le=65535, description="METRICS_PORT (0 disables)")
    home: Path = Field(Path(".goldenroute"), description="GOLDENROUTE_HOME")
    ui_port: int = Field(8233, ge=1, le=65535, description="TEMPORAL_UI_PORT (embedded dev server)")
    temporal_port: int = Field(7233, ge=1, le=65535, description="TEMPORAL_PORT (embedded dev server)")
    # A bigger cache holds ~190 KiB per member and, near 10k, GC pauses past the SDK's 2 s deadlock
    # detector: scale out with more workers rather than up.
    max_cached_workflows: int = Field(2_000, ge=0, description="MAX_CACHED_WORKFLOWS")
    # The HTTP ingress (`goldenroute serve`, and `goldenroute dev` on 127.0.0.1).
    ingress_host: str = Field("0.0.0.0", description="INGRESS_HOST (goldenroute serve)")
    ingress_port: int = Field(8080, ge=0, le=65535, description="INGRESS_PORT")
    # Per order system: the secret its requests are signed with. Never logged: a SecretStr
    # shows as '**********' in every repr.
    ingress_secrets: dict[str, SecretStr] = Field({}, description="GOLDENROUTE_INGRESS_SECRETS (source=secret,…)")
    ingress_max_body_bytes: int = Field(1 << 20, ge=1, description="INGRESS_MAX_BODY_BYTES")
    ingress_max_batch: int = Field(1_000, ge=1, description="INGRESS_MAX_BATCH (events per request)")
    ingress_replay_window: int = Field(300, ge=1, description="INGRESS_REPLAY_WINDOW (seconds)")
    # The shop's configuration is data in PostgreSQL (`goldenroute config apply`), not a setting:
    # this only names the file `goldenroute dev` applies at start, if any.
    shop_config: Path | None = Field(None, description="GOLDENROUTE_SHOP_CONFIG (applied by goldenroute dev)")
    # A configuration version takes effect this long after it is applied; every worker reads
    # the versions every config_refresh_seconds, which must stay under half of it
    # (workflows.versions). `config apply` and the workers must agree on the lead.
    config_lead_seconds: int = Field(60, ge=1, le=86_400, description="CONFIG_LEAD_SECONDS")
    config_refresh_seconds: int = Field(10, ge=1, description="CONFIG_REFRESH_SECONDS")
    # The loop back (starter/ingress/loopback.py): an unsubscribe click and a LINE follow /
    # unfollow become consent_changed events. Without its secret a route answers 503 naming it.
    # UNSUBSCRIBE_SECRET signs the links in mails (activities/senders/unsubscribe.py): changing
    # it breaks every link already sent, so keep it; 16+ characters, since a forged link
    # would unsubscribe someone else.
    unsubscribe_secret: SecretStr | None = Field(None, description="UNSUBSCRIBE_SECRET")
    public_base_url: str | None = Field(
        None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="PUBLIC_BASE_URL (where members reach the HTTP ingress, e.g. https://crm.shop.example)")
    line_channel_secret: SecretStr | None = Field(None, description="LINE_CHANNEL_SECRET (signs LINE's webhook)")

    @field_validator("unsubscribe_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("config_refresh_seconds")
    @classmethod
    def _refresh_within_lead(cls, value: int, info: ValidationInfo) -> int:
        lead = info.data.get("config_lead_seconds")
        if lead is not None and value * 2 >= lead:
            raise ValueError(f"must be less than half of CONFIG_LEAD_SECONDS ({lead}), not {value}")
        return value

    # Real channels (issue 11), each chosen here: a channel without its sender keeps its
    # messages in the outbox (deliveries, state queued) for the shop's own relay.
    smtp_url: SecretStr | None = Field(None, description="SMTP_URL (smtp://user:password@host:587, smtps://…:465)")
    dkim_selector: str | None = Field(None, description="DKIM_SELECTOR")
    dkim_domain: str | None = Field(None, description="DKIM_DOMAIN")
    dkim_private_key_file: Path | None = Field(None, description="DKIM_PRIVATE_KEY_FILE (PEM)")
    line_channel_access_token: SecretStr | None = Field(None, description="LINE_CHANNEL_ACCESS_TOKEN")
    line_api_url: str = Field("https://api.line.me", description="LINE_API_URL")
    sms_gateway_url: str | None = Field(None, description="SMS_GATEWAY_URL")
    sms_gateway_token: SecretStr | None = Field(None, description="SMS_GATEWAY_TOKEN")
    push_webhook_url: str | None = Field(None, description="PUSH_WEBHOOK_URL")
    push_webhook_secret: SecretStr | None = Field(None, description="PUSH_WEBHOOK_SECRET")
    # Per channel: sends per second across all workers (its task queue's limit) and at once per worker.
    channel_rates: dict[str, float] = Field({"line": 50, "email": 20, "sms": 10, "push": 50},
                                            description="CHANNEL_RATES (line=50,email=20,…: sends per second)")
    channel_concurrency: dict[str, int] = Field({"line": 20, "email": 10, "sms": 10, "push": 20},
                                                description="CHANNEL_CONCURRENCY (line=20,…: sends at once per worker)")

    @field_validator("channel_rates", "channel_concurrency", mode="before")
    @classmethod
    def _per_channel(cls, value: object) -> object:
        """``line=50,email=20`` from the environment; a mapping as it is."""
        if not isinstance(value, str):
            return value
        limits: dict[str, str] = {}
        for pair in (p.strip() for p in value.split(",") if p.strip()):
            channel, _, limit = pair.partition("=")
            if channel.strip() not in ("line", "email", "sms", "push") or not limit.strip():
                raise ValueError(f"{pair!r} is not channel=number (channels: line, email, sms, push)")
            limits[channel.strip()] = limit.strip()
        return limits

    @field_validator("ingress_secrets", mode="before")
    @classmethod
    def _source_secrets(cls, value: object) -> object:
        """``source1=secret1,source2=secret2`` from the environment; a mapping as it is."""
        if not isinstance(value, str):
            return value
        secrets: dict[str, str] = {}
        for number, pair in enumerate((p.strip() for p in value.split(",") if p.strip()), start=1):
            source, _, secret = pair.partition("=")
            # The message names the pair's position, never its text: that would print the secret.
            if not source.strip() or not secret.strip():
                raise ValueError(f"pair {number} is not source=secret")
            if source.strip() in secrets:
                raise ValueError(f"pair {number} repeats a source")
            secrets[source.strip()] = secret.strip()
        return secrets

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            variable = env_name(name)
            if variable in environ and environ[variable] != "":
                values[name] = environ[variable]
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"{env_name(str(e['loc'][0]))}: {e['msg']}" for e in error.errors()
            )
            raise SettingsError(f"invalid setting — {problems}") from None

    @property
    def dev_stack_file(self) -> Path:
        return self.home / DEV_STACK_FILE

    def with_dev_stack(self) -> "Settings":
        """Fill unset addresses from the running embedded dev stack, if there is one.

        Its namespace, task queue and home come along unless the environment names
        its own: a command talks to the stack the way that stack's worker listens.
        """
        if self.temporal_address and self.database_url:
            return self
        running = find_running(self.home, search_parents="home" not in self.model_fields_set)
        if running is None:
            return self
        update: dict[str, object] = {
            "temporal_address": self.temporal_address or running.temporal_address,
            "database_url": self.database_url or running.database_url,
        }
        for name in ("temporal_namespace", "task_queue", "home"):
            value = getattr(running, name)
            if value is not None and name not in self.model_fields_set:
                update[name] = Path(value) if name == "home" else value
        return self.model_copy(update=update)


def env_name(field_name: str) -> str:
    """The environment variable of a settings field (its description names it)."""
    description = Settings.model_fields[field_name].description or field_name.upper()
    return description.split()[0]


def setting_names() -> list[str]:
    """Every environment variable the settings object reads (docs and the compose test use it)."""
    return [env_name(name) for name in Settings.model_fields]
