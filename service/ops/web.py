"""The node's read-only HTTP side: status page, ``/metrics``, ``/healthz``, ``/readyz``.

A stdlib ``ThreadingHTTPServer`` in a daemon thread: the page is a handful of SQL reads and
two cached PNGs, so a web framework would add a dependency and nothing else. Only GET and HEAD
exist; every other method gets 405, so nothing reachable over HTTP can change node state
(the status page is read-only; operator actions go through the command line).

Routes:

* ``/``: status page (HTML, auto-refreshing).
* ``/api/status``: the same counts and recent series as ``unipet-node status --json``.
* ``/thumbnails/<series_uid>/before.png`` and ``.../after.png``: coronal MIPs.
* ``/reports/<series_uid>/report.pdf``: the quality report PDF of a derived series.
* ``/metrics``: Prometheus text format, every process of this host (``service.metrics``).
* ``/healthz``: broker, spool watermark, worker heartbeat; JSON, 200 or 503.
* ``/readyz``: state database and listener port; JSON, 200 or 503.
* ``/livez``: 200 while this process serves HTTP (the web container's own healthcheck).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from urllib.parse import urlsplit

import structlog
from sqlalchemy.exc import SQLAlchemyError

from service import metrics
from service.config import NodeSettings
from service.dicom.network import connect_host
from service.dicom.report import PDF_NAME, report_dir
from service.dicom.uids import validate_uid
from service.errors import InvalidUidError, PetHeaderError, SeriesNotFoundError
from service.ops.health import DEFAULT_CACHE_S, CheckResult, HealthChecker
from service.ops.operator import status_report
from service.ops.status_page import render_status_page
from service.ops.thumbnails import ThumbnailCache
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore

__all__ = ["WebServer", "start_web"]

log = structlog.stdlib.get_logger(__name__)

_THUMBNAIL_PATH = re.compile(r"^/thumbnails/([0-9.]{1,64})/(before|after)\.png$")
_REPORT_PATH = re.compile(r"^/reports/([0-9.]{1,64})/report\.pdf$")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_JSON = "application/json"


@dataclass
class _Response:
    status: HTTPStatus
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: HTTPStatus, payload: object) -> _Response:
    return _Response(status, json.dumps(payload, indent=2).encode(), _JSON)


def _checks_response(results: list[CheckResult]) -> _Response:
    ok = all(result.ok for result in results)
    payload = {
        "status": "ok" if ok else "fail",
        "checks": {result.name: result.as_dict() for result in results},
    }
    return _json(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, payload)


class _App:
    """Routing and the objects the routes read; shared by all request threads."""

    def __init__(self, settings: NodeSettings, health_cache_s: float) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool.path)
        self.state = StateStore(settings.database_url)
        self.checker = HealthChecker(settings, self.spool, self.state, cache_s=health_cache_s)
        self.thumbnails = ThumbnailCache(self.spool, self.state)
        self.stylesheet = files("service.ops").joinpath("static/status.css").read_bytes()

    def route(self, raw_path: str) -> _Response:
        path = urlsplit(raw_path).path
        simple: dict[str, Callable[[], _Response]] = {
            "/": self._page,
            "/index.html": self._page,
            "/api/status": lambda: _json(
                HTTPStatus.OK, status_report(self.state, spool_root=self.spool.root)
            ),
            "/static/status.css": lambda: _Response(
                HTTPStatus.OK, self.stylesheet, "text/css; charset=utf-8"
            ),
            "/metrics": self._metrics,
            "/healthz": lambda: _checks_response(self.checker.health()),
            "/readyz": lambda: _checks_response(self.checker.readiness()),
            "/livez": lambda: _json(HTTPStatus.OK, {"status": "ok"}),
        }
        handler = simple.get(path)
        if handler is not None:
            return handler()
        match = _THUMBNAIL_PATH.match(path)
        if match is not None:
            return self._thumbnail(match.group(1), match.group(2))
        match = _REPORT_PATH.match(path)
        if match is not None:
            return self._report_pdf(match.group(1))
        return _Response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _page(self) -> _Response:
        html = render_status_page(self.settings, self.state, self.checker.health())
        return _Response(HTTPStatus.OK, html.encode(), "text/html; charset=utf-8")

    def _metrics(self) -> _Response:
        # Refresh the gauges this process owns first, so a scrape never shows stale checks.
        self.checker.health()
        self.checker.readiness()
        body, content_type = metrics.render_latest()
        return _Response(HTTPStatus.OK, body, content_type)

    def _thumbnail(self, series_uid: str, which: str) -> _Response:
        not_found = _Response(HTTPStatus.NOT_FOUND, b"no such thumbnail\n", "text/plain")
        try:
            series = self.state.get(validate_uid(series_uid, "SeriesInstanceUID"))
            pair = self.thumbnails.pair(series)
        except (InvalidUidError, LookupError, SeriesNotFoundError):
            return not_found
        except (PetHeaderError, OSError) as exc:
            log.warning("thumbnail_failed", series_uid=series_uid, error=type(exc).__name__)
            return _Response(HTTPStatus.INTERNAL_SERVER_ERROR, b"cannot render\n", "text/plain")
        body = pair.before_png if which == "before" else pair.after_png
        return _Response(HTTPStatus.OK, body, "image/png", {"Cache-Control": "max-age=300"})

    def _report_pdf(self, series_uid: str) -> _Response:
        """The quality report PDF (UIDs and numbers only, no patient identifiers)."""
        not_found = _Response(HTTPStatus.NOT_FOUND, b"no quality report\n", "text/plain")
        try:
            series = self.state.get(validate_uid(series_uid, "SeriesInstanceUID"))
        except (InvalidUidError, SeriesNotFoundError):
            return not_found
        if series.output_key is None:
            return not_found
        try:
            pdf = (report_dir(self.spool.path_of(series.output_key)) / PDF_NAME).read_bytes()
        except (OSError, ValueError):
            return not_found
        return _Response(HTTPStatus.OK, pdf, "application/pdf")

    def close(self) -> None:
        self.checker.close()
        self.state.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: _App) -> None:
        super().__init__(address, _Handler)
        self.app = app


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "unipet-node"
    sys_version = ""

    def _respond(self, head_only: bool) -> None:
        try:
            response = self.server.app.route(self.path)
        except SQLAlchemyError as exc:
            log.error("web_database_error", path=self.path, error=type(exc).__name__)
            response = _Response(
                HTTPStatus.SERVICE_UNAVAILABLE, b"state database unavailable\n", "text/plain"
            )
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in {**_SECURITY_HEADERS, **response.headers}.items():
            self.send_header(name, value)
        if "Cache-Control" not in response.headers:
            self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head_only:
            self.wfile.write(response.body)

    def do_GET(self) -> None:
        """Serve a route."""
        self._respond(head_only=False)

    def do_HEAD(self) -> None:
        """Headers of a route, no body."""
        self._respond(head_only=True)

    def _refuse(self) -> None:
        body = b"read-only: only GET and HEAD\n"
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def log_message(self, format: str, *args: object) -> None:
        """Request lines go to the module logger at debug level, not to stderr."""
        log.debug("web_request", request=format % args)


class WebServer:
    """A running web server; ``port`` is the bound port (useful when configured as 0)."""

    def __init__(self, settings: NodeSettings, health_cache_s: float = DEFAULT_CACHE_S) -> None:
        self._app = _App(settings, health_cache_s)
        try:
            self._httpd = _Server((settings.web.bind_address, settings.web.port), self._app)
        except OSError:
            self._app.close()
            raise
        self.host = settings.web.bind_address
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="unipet-web", daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{connect_host(self.host)}:{self.port}"

    def start(self) -> None:
        """Serve in the background thread."""
        self._thread.start()
        log.info("web_started", address=self.host, port=self.port)

    def stop(self) -> None:
        """Stop serving, wait for the thread, release connections."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
        self._app.close()


def start_web(settings: NodeSettings, health_cache_s: float = DEFAULT_CACHE_S) -> WebServer:
    """Start the status page and probe endpoints in a background thread and return at once.

    ``health_cache_s``: how long ``/healthz`` and ``/readyz`` reuse a check result.
    """
    server = WebServer(settings, health_cache_s)
    server.start()
    return server
