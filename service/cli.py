"""``unipet-node``: the command line users and their scripts depend on.

Exit codes: 0 success, 1 the command failed (its reason on stderr), 2 the configuration is
invalid. Subcommands are imported lazily so ``--help`` and ``status`` start fast.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import structlog
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from service.config import NodeSettings, load_settings
from service.errors import ConfigError, NodeError

app = typer.Typer(
    help="UniPET DICOM node: denoise low-dose PET series received over DICOM.",
    no_args_is_help=True,
    add_completion=False,
)
dead_letter_app = typer.Typer(help="Series whose retries are spent.", no_args_is_help=True)
app.add_typer(dead_letter_app, name="dead-letter")
console = Console()
err_console = Console(stderr=True)
log = structlog.stdlib.get_logger(__name__)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML configuration file.", exists=False)
]


def _settings(config: Path | None, log_file: Path | None = None) -> NodeSettings:
    """Load the settings (exit 2 when invalid) and configure logging, to ``log_file`` if given."""
    from service.logs import configure_logging

    configure_logging(log_file=log_file)
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        err_console.print(f"[red]configuration error[/red]: {exc}")
        raise typer.Exit(code=2) from exc
    configure_logging(settings.logging.level, settings.logging.format, log_file=log_file)
    return settings


def _use_metrics_dir(spool_path: Path) -> None:
    """Give this process and its children one fresh prometheus multiprocess folder.

    Must run before ``service.metrics`` is imported (prometheus-client reads the variable at
    import); the worker child inherits it, so ``/metrics`` shows every process of the node.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = spool_path / "metrics"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (``service.process``); SIGUSR1 dumps stacks meanwhile."""
    from service.process import catch_stop_signals, wait_for_stop

    wait_for_stop(catch_stop_signals())


@app.command()
def serve(config: ConfigOption = None) -> None:
    """All in one: embedded Redis, listener, dispatcher, one worker and the web page."""
    settings = _settings(config)
    _use_metrics_dir(settings.spool.path)
    from service.process import arm_exit_deadline, catch_stop_signals, wait_for_stop

    stop_signals = catch_stop_signals()  # a stop during start-up waits for it, then stops
    from service.ops.web import start_web
    from service.runtime import AllInOneNode

    node = AllInOneNode(settings)
    try:
        node.start()
        web = start_web(node.settings)
    except NodeError as exc:
        err_console.print(f"[red]cannot start[/red]: {exc}")
        raise typer.Exit(code=1) from exc
    console.print(
        f"UniPET node {settings.listener.ae_title} listening on port "
        f"{settings.listener.port}; status page on port {settings.web.port}"
    )
    try:
        wait_for_stop(stop_signals)
    finally:
        arm_exit_deadline(node.kill_children)
        web.stop()
        node.stop()


@app.command()
def listener(config: ConfigOption = None) -> None:
    """Listener and dispatcher only (compose: one container)."""
    from service.process import arm_exit_deadline, catch_stop_signals, wait_for_stop

    stop_signals = catch_stop_signals()
    from service.runtime import ListenerRole

    try:
        role = ListenerRole(_settings(config))
    except NodeError as exc:
        err_console.print(f"[red]cannot start[/red]: {exc}")
        raise typer.Exit(code=1) from exc
    try:
        wait_for_stop(stop_signals)
    finally:
        arm_exit_deadline(lambda: None)
        role.stop()


def _openmp_threads_sleep_while_waiting() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the administrator set a policy.

    PyTorch's OpenMP threads otherwise spin while they wait for each other, which is fastest
    on cores nobody else uses and collapses when the listener, another worker or anything
    else on the host is busy: 400x192x192 on 2 threads of the 2-core VM took 5.8 s idle and
    8.1 s passive, but with one core busy 18.2 s against 10.2 s, and with both busy over
    100 s against 11.0 s (``docs/deployment.md``). A dedicated host may set ``ACTIVE``.
    libgomp reads the variable once, when torch loads it, so this runs before that.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@app.command()
def worker(
    config: ConfigOption = None,
    queues: Annotated[str | None, typer.Option(help="Comma-separated queues to consume.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1)] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Celery node name; default unipet-<queues>@<host> (one per host)."),
    ] = None,
) -> None:
    """A Celery worker for denoise and/or send jobs."""
    _openmp_threads_sleep_while_waiting()  # before anything imports torch
    from service.pipeline.tasks import configure_celery
    from service.pipeline.worker_context import init_context

    settings = _settings(config)
    log.info("worker_openmp", wait_policy=os.environ["OMP_WAIT_POLICY"])
    init_context(settings)
    celery_app = configure_celery(settings)
    wanted = queues or f"{settings.queue.denoise_queue},{settings.queue.send_queue}"
    celery_app.worker_main(
        [
            "worker",
            "--queues",
            wanted,
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency or settings.queue.worker_concurrency),
            "--hostname",
            name or f"unipet-{wanted.replace(',', '-')}@%h",
            "--without-mingle",
        ]
    )


@app.command()
def web(config: ConfigOption = None) -> None:
    """Status page, /metrics and /healthz only."""
    from service.ops.web import start_web
    from service.process import arm_exit_deadline, catch_stop_signals, wait_for_stop

    stop_signals = catch_stop_signals()
    server = start_web(_settings(config))
    try:
        wait_for_stop(stop_signals)
    finally:
        arm_exit_deadline(lambda: None)
        server.stop()


#: Sizes of a simulated study (``model.simulate``): the fixed grids, or a clinical profile's.
SIZES = ("tiny", "small", "full", "clinical")
SIZE_HELP = (
    "tiny, small or full (fixed grids of 12, 5 and 3.6 mm pixels), or clinical: a clinical "
    "scanner profile's own grid and full-dose count level, what UniPET 1.1 is trained on."
)


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise typer.BadParameter(f"size must be one of {', '.join(SIZES)}, got {size!r}")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Output folder (full/ and drf<k>/).")],
    drf: Annotated[
        list[float] | None, typer.Option("--drf", help="Dose reduction factor(s).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Phantom seed.")] = 1,
    size: Annotated[str, typer.Option(help=SIZE_HELP)] = "small",
    tracer: Annotated[str, typer.Option(help="fdg, psma or dotatate.")] = "fdg",
) -> None:
    """Write one simulated PET study at full dose and at each DRF as DICOM."""
    from service.dicom.synthetic import write_simulated_study
    from service.pipeline.inference import simulate_study

    _check_size(size)
    drfs = drf or [20.0]
    with console.status(f"simulating {size} phantom seed {seed}, DRF {drfs} ..."):
        study = simulate_study(seed=seed, drfs=drfs, size=size, tracer=tracer)  # type: ignore[arg-type]
        written = write_simulated_study(study, out)
    table = Table("series", "instances", "folder")
    for name, paths in written.items():
        table.add_row(name, str(len(paths)), str(out / name))
    console.print(table)


@app.command()
def send(
    folder: Annotated[Path, typer.Argument(help="Folder of DICOM files to send.")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 11112,
    aet: Annotated[str, typer.Option(help="Called AE title.")] = "UNIPET",
    calling_aet: Annotated[str, typer.Option(help="Our AE title.")] = "UNIPETSCU",
) -> None:
    """Send a folder of DICOM files with C-STORE over one association."""
    from service.config import PeerSettings, SenderSettings
    from service.dicom.sender import send_files

    paths = sorted(p for p in folder.rglob("*.dcm") if p.is_file())
    if not paths:
        err_console.print(f"[red]no .dcm files under {folder}[/red]")
        raise typer.Exit(code=1)
    with Progress(console=console) as progress:
        task = progress.add_task(f"C-STORE to {aet}@{host}:{port}", total=len(paths))
        try:
            report = send_files(
                paths,
                PeerSettings(ae_title=aet, host=host, port=port),
                SenderSettings(ae_title=calling_aet),
                on_stored=lambda done: progress.update(task, completed=done),
            )
        except NodeError as exc:
            err_console.print(f"[red]send failed[/red]: {exc}")
            raise typer.Exit(code=1) from exc
        progress.update(task, completed=len(paths))
    console.print(
        f"stored {report.stored} instances at {aet}@{host}:{port}"
        + (f" (warnings {report.warnings})" if report.warnings else "")
    )


def _quality_cell(report: dict[str, object] | None) -> str:
    """One line per series: foci flagged, reference-region noise before and after."""
    if report is None:
        return "-"
    return (
        f"{report['flagged_foci']}/{report['foci']} foci > {report['change_limit_pct']:g} %; "
        f"{report['reference_method']} CoV {report['reference_cov_before_pct']:.1f} -> "
        f"{report['reference_cov_after_pct']:.1f} %"
    )


@app.command()
def status(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    limit: Annotated[int, typer.Option(min=1)] = 30,
) -> None:
    """Series counts per state and the most recent series."""
    from service.ops.operator import status_report
    from service.pipeline.store import StateStore

    settings = _settings(config)
    report = status_report(StateStore(settings.database_url), limit, settings.spool.path)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    counts = report["counts"]
    assert isinstance(counts, dict)
    console.print("  ".join(f"{k}={v}" for k, v in counts.items() if v))
    table = Table("state", "instances", "completeness", "reason / error", "quality report")
    table.add_column("series UID", overflow="fold")
    for row in report["series"]:  # type: ignore[attr-defined]
        table.add_row(
            row["state"],
            f"{row['instances']}/{row['expected'] or '?'}",
            row["completeness"],
            row["last_error"] or row["reason"],
            _quality_cell(row["quality_report"]),
            row["series_uid"],
        )
    console.print(table)


@dead_letter_app.command("list")
def dead_letter_list(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Series that need an operator: retries spent, or given up as incomplete."""
    from service.ops.operator import dead_letters
    from service.pipeline.store import StateStore

    items = dead_letters(StateStore(_settings(config).database_url))
    if as_json:
        sys.stdout.write(json.dumps([i.as_dict() for i in items], indent=2) + "\n")
        return
    table = Table("state", "error")
    table.add_column("series UID", overflow="fold")
    for item in items:
        table.add_row(item.state, item.last_error or item.reason, item.series_uid)
    console.print(table if items else "no dead letters")


@dead_letter_app.command("replay")
def dead_letter_replay(
    series_uid: Annotated[str, typer.Argument(help="Series Instance UID to replay.")],
    config: ConfigOption = None,
) -> None:
    """Put a dead-lettered series back to work from where it failed."""
    from service.ops.operator import replay
    from service.pipeline.store import StateStore

    try:
        changed = replay(StateStore(_settings(config).database_url), series_uid)
    except NodeError as exc:
        err_console.print(f"[red]cannot replay[/red]: {exc}")
        raise typer.Exit(code=1) from exc
    console.print(f"{series_uid} -> {changed.state.value}")


@app.command()
def selftest(
    config: ConfigOption = None,
    timeout_s: Annotated[float, typer.Option(min=1)] = 300.0,
) -> None:
    """Send a tiny synthetic PET series to the running node and wait until it is delivered."""
    from service.ops.selftest import run_selftest

    result = run_selftest(_settings(config), timeout_s)
    console.print(result.summary)
    if not result.passed:
        raise typer.Exit(code=1)


@app.command()
def demo(
    size: Annotated[str, typer.Option(help=SIZE_HELP)] = "clinical",
    drf: Annotated[float, typer.Option(help="Dose reduction factor of the sent series.")] = 20.0,
    workdir: Annotated[Path | None, typer.Option(help="Keep everything here.")] = None,
    timeout_s: Annotated[float, typer.Option(min=10)] = 900.0,
    keep_running: Annotated[
        bool, typer.Option(help="Keep the node and its status page up until Ctrl-C.")
    ] = False,
    transfer_syntax: Annotated[
        str,
        typer.Option(
            help="Send the study compressed: uncompressed, jpeg-ls, jpeg-ls-near, "
            "jpeg-lossless, rle or jpeg2000."
        ),
    ] = "uncompressed",
) -> None:
    """Start a node and a demo PACS, send a simulated low-dose study, show what came back."""
    _check_size(size)
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="unipet-demo-"))).resolve()
    _use_metrics_dir(workdir / "spool")
    from service.ops.demo import node_log_path, run_demo

    # The node's events go to a file in the workdir (named in the result table), so they
    # never interleave with the progress lines and the table on the terminal.
    _settings(None, log_file=node_log_path(workdir))

    try:
        result = run_demo(
            size=size,
            drf=drf,
            workdir=workdir,
            timeout_s=timeout_s,
            console=console,
            hold=_wait_for_signal if keep_running else None,
            transfer_syntax=transfer_syntax,
        )
    except NodeError as exc:
        err_console.print(f"[red]demo failed[/red]: {exc}")
        raise typer.Exit(code=1) from exc
    if not result.passed:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
