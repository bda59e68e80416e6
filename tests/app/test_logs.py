"""Log lines: provider credentials never shown, stdlib loggers rendered like our own events."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from pytest_httpserver import HTTPServer

from adapters.dispatcharr import DispatcharrClient
from adapters.ffmpeg import FfmpegProbe
from app import logs
from domain.cancel import CancelToken
from domain.models import ProbeRequest
from tests.fakes.dispatcharr import FakeDispatcharr

SECRETS = ("USER", "PASS")
# Each form hides credentials differently; redaction by default covers all of them.
FORMS = [
    pytest.param("/USER/PASS/1234", "", "/…/1234", id="xtream-short"),
    pytest.param("/live/USER/PASS/1234.ts", "", "/…/1234.ts", id="xtream-live"),
    pytest.param("/play/1234.ts", "passwd=PASS&user=USER", "/…/1234.ts", id="passwd"),
    pytest.param("/hls/1234.m3u8", "access_token=PASS", "/…/1234.m3u8", id="access_token"),
    pytest.param("/1234.ts", "auth_token=PASS&u=USER", "/1234.ts", id="auth_token"),
]


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure("json", "info", stream=out)
    try:
        yield out
    finally:
        logs.reset()


def parsed(out: io.StringIO) -> list[dict[str, Any]]:
    """Every line of ``out`` as JSON; fails on a line that is not."""
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize(("path", "query", "shown"), FORMS)
def test_probe_logs_show_no_provider_credentials(
    ffmpeg_path: str,
    httpserver: HTTPServer,
    json_lines: io.StringIO,
    path: str,
    query: str,
    shown: str,
) -> None:
    # Not media: ffmpeg fails on it and prints the URL in its messages.
    httpserver.expect_request(path).respond_with_data("no video here", content_type="video/mp2t")
    url = httpserver.url_for(path) + (f"?{query}" if query else "")
    host = f"http://{httpserver.host}:{httpserver.port}"

    FfmpegProbe(ffmpeg_path)(ProbeRequest(url, None, 1.0, 5.0, stream_id=7), CancelToken())

    text = json_lines.getvalue()
    for secret in SECRETS:
        assert secret not in text
    (finished,) = [line for line in parsed(json_lines) if line["event"] == "probe_finished"]
    assert finished["url"] == host + shown
    assert finished["level"] == "info"


@pytest.mark.parametrize(("path", "query", "shown"), FORMS)
def test_every_url_in_any_logged_value_is_redacted(
    json_lines: io.StringIO, path: str, query: str, shown: str
) -> None:
    url = f"http://USER:PASS@prov.example:8080{path}" + (f"?{query}" if query else "")

    @dataclass
    class Lease:
        url: str

    log = structlog.get_logger("test")
    log.info("probe_finished", url=url)
    log.warning(
        "probe_stderr_tail", tail=f"[http @ 0x5] HTTP error 403\n{url}: Server returned 403"
    )
    log.info("nested", body={"urls": [url, (url,)]}, lease=Lease(url))
    try:
        raise OSError(f"cannot open {url}")
    except OSError:
        log.exception("probe_crashed")

    text = json_lines.getvalue()
    for secret in SECRETS:
        assert secret not in text
    lines = parsed(json_lines)
    assert [line["event"] for line in lines] == [
        "probe_finished",
        "probe_stderr_tail",
        "nested",
        "probe_crashed",
    ]
    expected = "http://prov.example:8080" + shown
    assert lines[0]["url"] == expected
    assert lines[1]["tail"].endswith(f"{expected}: Server returned 403")
    assert lines[2]["body"] == {"urls": [expected, [expected]]}
    assert expected in lines[2]["lease"]
    assert f"cannot open {expected}" in lines[3]["exception"]


def test_a_urllib3_warning_is_one_json_line_with_an_event(json_lines: io.StringIO) -> None:
    fake = FakeDispatcharr().start()
    try:
        fake.seed_sample()
        fake.drop_next("accounts")  # urllib3 warns "Retrying (...) after connection broken"
        with DispatcharrClient(fake.url, api_key=fake.api_key, backoff_factor=0.0) as client:
            assert len(client.accounts()) == 3
    finally:
        fake.stop()

    lines = parsed(json_lines)  # every line is JSON: no plain-text strays
    retries = [line for line in lines if line.get("logger") == "urllib3.connectionpool"]
    assert len(retries) == 1
    (retry,) = retries
    assert retry["level"] == "warning"
    assert retry["event"].startswith("Retrying")
    assert "timestamp" in retry


def test_stdlib_records_and_warnings_render_in_the_console_format_too() -> None:
    out = io.StringIO()
    logs.configure("console", "info", stream=out)
    try:
        logging.getLogger("urllib3.connectionpool").warning(
            "Connection pool is full, discarding connection: %s", "http://USER:PASS@h/a/b"
        )
        logging.getLogger("urllib3.connectionpool").info("Starting new HTTP connection")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            logging.captureWarnings(True)
            warnings.warn("unverified HTTPS request", UserWarning, stacklevel=1)
    finally:
        logs.reset()

    lines = out.getvalue().splitlines()
    pool = [line for line in lines if "Connection pool is full" in line]
    assert len(pool) == 1
    assert "warning" in pool[0]
    assert "urllib3.connectionpool" in pool[0]
    assert "http://h/…/b" in pool[0]
    assert "PASS" not in out.getvalue()
    assert not any("Starting new HTTP connection" in line for line in lines)  # below warning
    # A warning's text spans two lines (the source line follows); the logger comes last.
    assert "UserWarning: unverified HTTPS request" in out.getvalue()
    assert "py.warnings" in out.getvalue()


def test_a_second_configure_replaces_the_handler(json_lines: io.StringIO) -> None:
    again = io.StringIO()
    logs.configure("json", "info", stream=again)

    logging.getLogger("some.library").error("boom")

    assert json_lines.getvalue() == ""
    (line,) = parsed(again)
    assert (line["event"], line["level"], line["logger"]) == ("boom", "error", "some.library")
