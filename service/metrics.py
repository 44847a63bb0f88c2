"""Prometheus metrics of the node (names from DESIGN.md section 5; all start with ``unipet_``).

Labels never carry patient data: calling AE titles, destination names, reasons and outcomes
only. Every process registers the same objects; the web process exposes them (see
``service/web.py`` for how multi-process collection is set up).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
    multiprocess_mode="livemax",
)
inference_seconds = Histogram(
    "unipet_inference_seconds",
    "Seconds spent denoising one series, by device.",
    ["device"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
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
    multiprocess_mode="livemax",
)
spool_free_bytes = Gauge(
    "unipet_spool_free_bytes",
    "Free bytes on the spool filesystem.",
    multiprocess_mode="livemin",
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
