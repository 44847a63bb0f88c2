"""Node configuration: one YAML file plus ``UNIPET_<SECTION>__<KEY>`` environment overrides.

Built once at process start (``load_settings``) and passed down; nothing reads the environment
later. Validation errors become a ``ConfigError`` that names the key and what was wrong, so an
administrator sees "listener.port: Input should be less than or equal to 65535" rather than a
traceback. Priority: explicit arguments > environment > YAML file > defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from service.errors import ConfigError
from service.logs import LogFormat

log = structlog.stdlib.get_logger(__name__)

AeTitle = str  # validated by _check_ae_title: 1-16 chars of the DICOM AE VR, no backslash


def _check_ae_title(value: str) -> str:
    """AE titles are 1-16 characters of the default repertoire, no backslash (PS3.5 6.2)."""
    stripped = value.strip()
    if not stripped or len(value) > 16 or "\\" in value or not value.isascii():
        raise ValueError(f"not a valid AE title (1-16 ASCII characters, no backslash): {value!r}")
    return stripped


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsSettings(_Section):
    """DICOM TLS (PS3.15 Annex B.1): certificate, key and the CA that signs peers."""

    certificate: Path
    private_key: Path
    ca_certificates: Path | None = None
    require_client_certificate: bool = False


class ListenerSettings(_Section):
    """The C-STORE/C-ECHO listener (SCP)."""

    ae_title: AeTitle = "UNIPET"
    bind_address: str = "0.0.0.0"
    port: int = Field(default=11112, ge=1, le=65535)
    allowed_calling_aets: list[AeTitle] = Field(default_factory=list)
    allowed_hosts_by_aet: dict[AeTitle, list[str]] = Field(default_factory=dict)
    max_associations: PositiveInt = 20
    max_associations_per_aet: PositiveInt = 4
    max_pending_per_host: PositiveInt = 8  # connections yet to send A-ASSOCIATE-RQ
    max_pdu_bytes: int = Field(default=262144, ge=0)
    acse_timeout_s: PositiveFloat = 5.0  # a new connection must ask for an association by then
    network_timeout_s: PositiveFloat = 60.0
    dimse_timeout_s: PositiveFloat = 60.0
    tls: TlsSettings | None = None

    def model_post_init(self, _context: object) -> None:
        for aet in [self.ae_title, *self.allowed_calling_aets, *self.allowed_hosts_by_aet]:
            _check_ae_title(aet)


#: Transfer syntaxes the sender may propose for derived series: uncompressed, or lossless
#: compression the node can encode from PyPI wheels (JPEG-LS: pyjpegls; JPEG 2000:
#: pylibjpeg-openjpeg; RLE: pydicom). Never lossy: the output must keep its Bq/ml exactly.
SENDABLE_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}


class PeerSettings(_Section):
    """A remote DICOM AE we send to.

    ``transfer_syntaxes``: UIDs to propose for the derived series, most preferred first
    (e.g. JPEG-LS lossless, then Explicit VR Little Endian); the sender uses the first the
    destination accepts. Empty: uncompressed only, as written.
    """

    ae_title: AeTitle
    host: str
    port: int = Field(ge=1, le=65535)
    tls: TlsSettings | None = None
    transfer_syntaxes: list[str] = Field(default_factory=list)

    def model_post_init(self, _context: object) -> None:
        _check_ae_title(self.ae_title)
        for uid in self.transfer_syntaxes:
            if uid not in SENDABLE_TRANSFER_SYNTAXES:
                raise ValueError(
                    f"transfer syntax {uid!r} cannot be proposed; choose from "
                    + ", ".join(f"{k} ({v})" for k, v in SENDABLE_TRANSFER_SYNTAXES.items())
                )


class DestinationSettings(PeerSettings):
    """Where derived series go; ``name`` is the label used in metrics and the status page."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    send_quality_report: bool = True  # the SR and PDF quality report go with each series


class SpoolSettings(_Section):
    """On-disk spool and admission watermark."""

    path: Path = Path("unipet-data/spool")
    min_free_bytes: int = Field(default=2 * 1024**3, ge=0)
    max_used_fraction: float = Field(default=0.90, gt=0.0, le=1.0)
    retention_days: float = Field(default=7.0, ge=0.0)


class CompletenessSettings(_Section):
    """When a series counts as complete (rules in ``service/pipeline/completeness.py``)."""

    quiet_period_s: PositiveFloat = 30.0
    quiet_period_s_by_aet: dict[AeTitle, PositiveFloat] = Field(default_factory=dict)
    forced_timeout_s: PositiveFloat = 900.0
    slice_gap_tolerance: float = Field(default=0.25, gt=0.0, lt=1.0)
    poll_interval_s: PositiveFloat = 1.0


class QueueSettings(_Section):
    """Celery on Redis: broker, queues, retry and dead-letter policy."""

    broker_url: str = "redis://127.0.0.1:6379/0"
    # `serve` starts its own redis-server on a Unix socket in the spool; broker_url is then
    # replaced by that socket's URL (and only used when embedded_redis is false).
    embedded_redis: bool = True
    denoise_queue: str = "cpu"
    send_queue: str = "send"
    max_waiting_series: PositiveInt = 200
    denoise_max_retries: int = Field(default=3, ge=0)
    send_max_retries: int = Field(default=12, ge=0)
    retry_backoff_s: PositiveFloat = 10.0
    retry_backoff_max_s: PositiveFloat = 900.0
    job_lease_s: PositiveFloat = 60.0  # a running job renews it (heartbeat) or is re-queued
    heartbeat_s: PositiveFloat = 15.0  # how often a running job renews its lease
    requeue_after_s: PositiveFloat = 600.0  # a queued job not started by then is re-sent
    visibility_timeout_s: PositiveFloat = 7200.0
    worker_concurrency: PositiveInt = 1
    worker_max_tasks_per_child: PositiveInt = 50

    def model_post_init(self, _context: object) -> None:
        if self.heartbeat_s >= self.job_lease_s:
            raise ValueError(
                f"heartbeat_s ({self.heartbeat_s}) must be shorter than job_lease_s "
                f"({self.job_lease_s}), or a running job would lose its lease"
            )


class StateSettings(_Section):
    """State database; ``database_url`` None means SQLite inside the spool folder."""

    database_url: str | None = None


class ModelSettings(_Section):
    """Which denoiser runs and where."""

    backend: Literal["auto", "unipet", "gaussian"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    weights: Path | None = None
    gaussian_fwhm_mm: PositiveFloat = 5.0
    threads: PositiveInt | None = None
    # Tracers denoised besides those the model card lists as trained (canonical names, e.g.
    # "fdg"). Empty by default: UniPET 1.0.0 and 1.1.0 saw F-18 FDG only.
    tolerated_tracers: list[str] = Field(default_factory=list)


class OutputSettings(_Section):
    """How derived series are labelled."""

    series_description_suffix: str = Field(default=" [UniPET]", max_length=32)
    series_number_offset: int = Field(default=1000, ge=0, le=100000)
    quality_report: bool = True  # write an SR + PDF quality report with each derived series
    quality_change_limit_pct: PositiveFloat = 10.0  # foci whose SUVmax/peak change more: flagged


class SenderSettings(_Section):
    """Our identity and timeouts as a C-STORE SCU."""

    ae_title: AeTitle = "UNIPET"
    network_timeout_s: PositiveFloat = 60.0
    acse_timeout_s: PositiveFloat = 30.0
    dimse_timeout_s: PositiveFloat = 120.0


class WebSettings(_Section):
    """Read-only status page, /metrics and /healthz."""

    bind_address: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class LoggingSettings(_Section):
    """Log level and rendering: ``auto`` is console on a terminal, JSON lines otherwise."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: LogFormat = LogFormat.AUTO


class NodeSettings(BaseSettings):
    """All settings of one node; section and key names are what users script against."""

    model_config = SettingsConfigDict(
        env_prefix="UNIPET_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    listener: ListenerSettings = ListenerSettings()
    destinations: list[DestinationSettings] = Field(default_factory=list)
    ae_table: dict[AeTitle, PeerSettings] = Field(default_factory=dict)
    spool: SpoolSettings = SpoolSettings()
    completeness: CompletenessSettings = CompletenessSettings()
    queue: QueueSettings = QueueSettings()
    state: StateSettings = StateSettings()
    model: ModelSettings = ModelSettings()
    output: OutputSettings = OutputSettings()
    sender: SenderSettings = SenderSettings()
    web: WebSettings = WebSettings()
    logging: LoggingSettings = LoggingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = settings_cls.model_config.get("yaml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)

    @property
    def database_url(self) -> str:
        """The state database URL, SQLite in the spool folder unless configured."""
        if self.state.database_url:
            return self.state.database_url
        return f"sqlite:///{(self.spool.path / 'state.db').resolve()}"

    def quiet_period_for(self, calling_aet: str) -> float:
        """Quiet period for a calling AE: per-AE override or the default."""
        return self.completeness.quiet_period_s_by_aet.get(
            calling_aet, self.completeness.quiet_period_s
        )


def redis_client_url(broker_url: str) -> str:
    """The broker URL as redis-py spells it (``redis+socket://`` is Celery's spelling).

    The embedded broker listens on a Unix socket only; Celery and kombu write that as
    ``redis+socket:///path``, redis-py as ``unix:///path``.
    """
    if not broker_url.startswith("redis+socket://"):
        return broker_url
    path, _, query = broker_url.removeprefix("redis+socket://").partition("?")
    # kombu names the database ``virtual_host``; redis-py names it ``db``.
    params = [
        f"db={value}" if key == "virtual_host" else f"{key}={value}"
        for key, _, value in (item.partition("=") for item in query.split("&") if item)
    ]
    return "unix://" + path + ("?" + "&".join(params) if params else "")


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def load_settings(config_path: Path | None = None, **overrides: object) -> NodeSettings:
    """Build the settings once: YAML file (optional), env overrides, then explicit overrides.

    Raises:
        ConfigError: the file is missing or unreadable, or a value is invalid; the message
            names each offending key.
    """
    settings_cls: type[NodeSettings] = NodeSettings
    source = "defaults and environment"
    if config_path is not None:
        if not config_path.is_file():
            raise ConfigError(f"configuration file not found: {config_path}")
        source = str(config_path)
        settings_cls = type(
            "NodeSettingsFromFile",
            (NodeSettings,),
            {"model_config": {**NodeSettings.model_config, "yaml_file": config_path}},
        )
    try:
        settings = settings_cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read configuration {source}: {exc}") from exc
    if not settings.listener.allowed_calling_aets:
        log.warning(
            "calling_aets_unrestricted",
            key="listener.allowed_calling_aets",
            detail="empty: any calling AE may store to this node",
        )
    return settings
