"""Prometheus metrics of the node (all names start with ``unipet_``; docs/deployment.md lists them).

Labels never carry patient data: calling AE titles, destination names, reasons, outcomes and
check names only, all from small closed sets or from the configuration.

How metrics cross process boundaries: prometheus-client multiprocess mode. A Celery prefork
worker is one parent plus N children that are recycled every ``worker_max_tasks_per_child``
tasks; per-process exposition ports cannot work for them (children come and go, and
Prometheus would need to discover each new port), and counters of a recycled child would be
lost with it. In multiprocess mode every process (listener, dispatcher, worker parent and
children, web) writes its values to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR``, and
the web process of that host sums them on each scrape of ``/metrics``. Counters and
histograms of dead processes stay in the sum, which is what a total must do.

Three details make it safe across containers that share one metrics volume:

* Files are named by ``<hostname>-<pid>`` rather than the bare PID, because every container
  has its own PID namespace (the listener and a worker are both PID 1 in theirs).
* Gauges use ``mostrecent`` mode: each gauge is a fact read from the state database or the
  disk (series waiting, dead letters, free bytes), so the newest write is the truth, and a
  value left behind by a dead worker child is simply older. Live modes would need every
  process to clean up after itself, which a SIGKILLed child cannot do.
* The directory is read from the environment at import, before any metric exists, because the
  value class is fixed when a metric is created. A forked child inherits it; ``serve`` must set
  it before its worker process starts. Without it, each process keeps its own in-memory values
  and ``/metrics`` shows only the web process's (enough for tests, not for a deployment).

A host whose workers run elsewhere (docs/deployment.md) runs ``unipet-node web`` next to them
on the same metrics volume, and Prometheus scrapes each host's web process.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = [
    "METRIC_NAMES",
    "MULTIPROCESS_DIR",
    "associations_rejected_total",
    "dead_letter_series",
    "denoise_stage_seconds",
    "end_to_end_seconds",
    "health_check_ok",
    "inference_seconds",
    "instances_conflicting_total",
    "instances_received_total",
    "instances_rejected_total",
    "jobs_queued",
    "render_latest",
    "send_attempts_total",
    "series_completed_total",
    "series_completion_wait_seconds",
    "series_processed_total",
    "spool_free_bytes",
    "spool_min_free_bytes",
    "store_batch_instances",
    "workers_responding",
]

_HOST_TAG = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"


def _process_identifier() -> str:
    """``<hostname>-<pid>``: unique across containers sharing the metrics folder.

    No underscore may appear: the collector splits file names on ``_``.
    """
    return f"{_HOST_TAG}-{os.getpid()}"


def _multiprocess_dir() -> Path | None:
    raw = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    return Path(raw) if raw else None


#: Folder the processes of this host share, or None in single-process mode.
MULTIPROCESS_DIR: Path | None = _multiprocess_dir()
if MULTIPROCESS_DIR is not None:
    MULTIPROCESS_DIR.mkdir(parents=True, exist_ok=True)
    values.ValueClass = values.MultiProcessValue(  # type: ignore[no-untyped-call]
        process_identifier=_process_identifier
    )


instances_received_total = Counter(
    "unipet_instances_received_total",
    "DICOM instances stored by the listener.",
    ["calling_aet"],
)
instances_rejected_total = Counter(
    "unipet_instances_rejected_total",
    "C-STORE requests refused with a failure status, by reason.",
    ["reason"],
)
instances_conflicting_total = Counter(
    "unipet_instances_conflicting_total",
    "Instances re-sent under a known SOP Instance UID with other content (first copy kept).",
)
store_batch_instances = Histogram(
    "unipet_store_batch_instances",
    "Instances per group commit of the listener (the count is the number of commits).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
instances_not_processed_total = Counter(
    "unipet_instances_not_processed_total",
    "Instances stored but not denoised (IGNORED or REJECTED), by outcome and reason code.",
    ["outcome", "reason"],
)
series_completed_total = Counter(
    "unipet_series_completed_total",
    "Series declared complete, by completeness rule.",
    ["reason"],
)
series_completion_wait_seconds = Histogram(
    "unipet_series_completion_wait_seconds",
    "Seconds from the first instance of a series to its completeness decision.",
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800),
)
jobs_queued = Gauge(
    "unipet_jobs_queued",
    "Series waiting for or in processing (COMPLETE, QUEUED, PROCESSING).",
    multiprocess_mode="mostrecent",
)
inference_seconds = Histogram(
    "unipet_inference_seconds",
    "Seconds spent denoising one series, by device.",
    ["device"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
denoise_stage_seconds = Histogram(
    "unipet_denoise_stage_seconds",
    "Seconds of each stage of a denoise job: read, inference, write (the report is measured "
    "meanwhile), report (SR and PDF after the write).",
    ["stage"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
series_processed_total = Counter(
    "unipet_series_processed_total",
    "Series that left processing, by outcome (written, failed, dead).",
    ["outcome"],
)
send_attempts_total = Counter(
    "unipet_send_attempts_total",
    "Association attempts to send a derived series, by destination and outcome.",
    ["destination", "outcome"],
)
dead_letter_series = Gauge(
    "unipet_dead_letter_series",
    "Series in the DEAD state (retries spent; replay with unipet-node dead-letter replay).",
    multiprocess_mode="mostrecent",
)
spool_free_bytes = Gauge(
    "unipet_spool_free_bytes",
    "Free bytes on the spool filesystem.",
    multiprocess_mode="mostrecent",
)
associations_rejected_total = Counter(
    "unipet_associations_rejected_total",
    "Associations refused by the listener, by reason.",
    ["reason"],
)
end_to_end_seconds = Histogram(
    "unipet_end_to_end_seconds",
    "Seconds from the last instance received to the derived series stored at a destination.",
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)

# Written by the web process when it runs its health checks (on /healthz and each scrape),
# so alert rules can see what /healthz sees.
health_check_ok = Gauge(
    "unipet_health_check_ok",
    "1 if the named health check passed at the last probe, else 0.",
    ["check"],
    multiprocess_mode="mostrecent",
)
workers_responding = Gauge(
    "unipet_workers_responding",
    "Celery workers that answered the last heartbeat ping.",
    multiprocess_mode="mostrecent",
)
spool_min_free_bytes = Gauge(
    "unipet_spool_min_free_bytes",
    "Configured spool watermark: below this many free bytes the listener refuses (0xA700).",
    multiprocess_mode="mostrecent",
)

_ALL_METRICS: tuple[Counter | Gauge | Histogram, ...] = (
    instances_received_total,
    instances_rejected_total,
    instances_conflicting_total,
    instances_not_processed_total,
    store_batch_instances,
    series_completed_total,
    series_completion_wait_seconds,
    jobs_queued,
    inference_seconds,
    denoise_stage_seconds,
    series_processed_total,
    send_attempts_total,
    dead_letter_series,
    spool_free_bytes,
    associations_rejected_total,
    end_to_end_seconds,
    health_check_ok,
    workers_responding,
    spool_min_free_bytes,
)

_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _sample_names() -> frozenset[str]:
    names: set[str] = set()
    for metric in _ALL_METRICS:
        for family in metric.describe():
            names.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES[family.type])
    return frozenset(names)


#: Every sample name a scrape can contain (``unipet_x_total``, ``unipet_y_bucket``, ...):
#: the vocabulary that deploy/ alert rules and dashboard queries may use.
METRIC_NAMES: frozenset[str] = _sample_names()


def render_latest() -> tuple[bytes, str]:
    """The text exposition of this host's metrics and its content type.

    In multiprocess mode a fresh registry reads every process's files on each call (the
    documented pattern: a registry holding a ``MultiProcessCollector`` must not also hold the
    in-process metrics, or values would count twice). Otherwise the default registry is used.
    """
    if MULTIPROCESS_DIR is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(MULTIPROCESS_DIR))  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
