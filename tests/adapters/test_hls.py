from __future__ import annotations

import contextlib
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from urllib3.exceptions import InsecureRequestWarning
from werkzeug import Request, Response

from adapters.hls import (
    Choice,
    Playlist,
    Variant,
    choose,
    looks_like_hls,
    read_playlist,
    variants,
)
from adapters.manifest_fetch import MAX_MANIFEST_BYTES as MAX_PLAYLIST_BYTES


def best_variant(text: str) -> int | None:
    """The index of the variant :func:`choose` picks of a master read from anywhere."""
    choice = choose(Playlist(text, "http://edge.example/master.m3u8"))
    return None if choice is None else choice.index


MASTER = """\
#EXTM3U
#EXT-X-VERSION:4
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",URI="audio/en.m3u8"

#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.4d401e,mp4a.40.2"
# a comment between the tag and its URI
low/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,RESOLUTION=1920x1080,URI="iframes.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080,AUDIO="aud"
https://cdn.example/high/index.m3u8?token=abc
#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720
mid/index.m3u8
"""


FIXTURES = Path(__file__).parent.parent / "fixtures"
"""``loopback-cert.pem``: a self-signed certificate for 127.0.0.1 (and its key), test use only."""


def _master(*entries: str) -> str:
    lines = ["#EXTM3U"]
    for number, attributes in enumerate(entries):
        lines += [f"#EXT-X-STREAM-INF:{attributes}", f"v{number}.m3u8"]
    return "\n".join(lines) + "\n"


def test_variants_are_read_in_the_playlist_order_as_ffmpeg_numbers_them():
    assert variants(MASTER) == [
        Variant("low/index.m3u8", 800_000, 640 * 360),
        Variant("https://cdn.example/high/index.m3u8?token=abc", 5_000_000, 1920 * 1080, "aud"),
        Variant("mid/index.m3u8", 2_500_000, 1280 * 720),
    ]
    assert best_variant(MASTER) == 1


def test_the_chosen_variant_is_read_alone_unless_its_audio_is_a_rendition_of_its_own():
    base = "http://edge.example:8080/hls/token/"
    assert choose(Playlist(MASTER, base + "master.m3u8")) == Choice(1, None)  # AUDIO="aud"
    muxed = _master("BANDWIDTH=400000,RESOLUTION=320x240", "BANDWIDTH=2000000,RESOLUTION=1280x720")
    # Relative to where the master was read from, after redirects.
    assert choose(Playlist(muxed, base + "master.m3u8")) == Choice(1, base + "v1.m3u8")
    assert choose(Playlist(_master("BANDWIDTH=1"), base + "m.m3u8")) is None
    local = muxed.replace("v1.m3u8", "file:///etc/passwd")
    assert choose(Playlist(local, base + "master.m3u8")) == Choice(1, None)  # never opened alone


def test_a_variant_that_played_nothing_is_passed_over_for_the_next_best():
    playlist = Playlist(MASTER, "http://edge.example/hls/master.m3u8")
    assert choose(playlist, skip={1}) == Choice(2, "http://edge.example/hls/mid/index.m3u8")
    assert choose(playlist, skip={1, 2}) == Choice(0, "http://edge.example/hls/low/index.m3u8")
    assert choose(playlist, skip={0, 1, 2}) is None  # none left


@pytest.mark.parametrize(
    ("text", "best"),
    [
        pytest.param(
            _master("BANDWIDTH=1,RESOLUTION=320x240", "BANDWIDTH=2"), 0, id="pixels-first"
        ),
        pytest.param(
            _master(
                "BANDWIDTH=900000,RESOLUTION=1280x720", "BANDWIDTH=2000000,RESOLUTION=1280x720"
            ),
            1,
            id="same-picture-more-bits",
        ),
        pytest.param(_master("BANDWIDTH=500000", "BANDWIDTH=3000000"), 1, id="no-resolution"),
        pytest.param(_master("RESOLUTION=1280x720", "RESOLUTION=1280x720"), 0, id="tie-first"),
        pytest.param(_master("BANDWIDTH=bad,RESOLUTION=huge", "BANDWIDTH=1"), 1, id="garbled"),
        pytest.param(_master("BANDWIDTH=800000,RESOLUTION=640x360"), None, id="one-variant"),
        pytest.param("#EXTM3U\n#EXTINF:2.0,\n0.ts\n#EXTINF:2.0,\n1.ts\n", None, id="media"),
        pytest.param("", None, id="empty"),
    ],
)
def test_the_best_variant_is_the_one_a_player_picks(text, best):
    assert best_variant(text) == best


@pytest.mark.parametrize(
    ("url", "hls"),
    [
        ("http://prov:8080/live/u/p/12.m3u8", True),
        ("http://prov/hls/INDEX.M3U8?token=x", True),
        ("http://prov/get.php?type=m3u", False),  # a query is no path
        ("http://prov/list.m3u", True),
        ("http://prov:8080/live/u/p/12.ts", False),
        ("http://prov:8080/u/p/12", False),
        ("http://prov/a.m3u8.ts", False),
    ],
)
def test_only_playlist_urls_are_read_first(url, hls):
    assert looks_like_hls(url) is hls


def test_a_playlist_is_read_with_the_user_agent_and_its_redirects(httpserver: HTTPServer):
    httpserver.expect_request("/live/u/p/1.m3u8").respond_with_response(
        Response(status=302, headers={"Location": httpserver.url_for("/token/1.m3u8")})
    )
    httpserver.expect_request("/token/1.m3u8", headers={"User-Agent": "box/1.0"}).respond_with_data(
        "\ufeff" + MASTER, content_type="application/vnd.apple.mpegurl"
    )
    playlist = read_playlist(httpserver.url_for("/live/u/p/1.m3u8"), "box/1.0", 5.0)
    assert playlist == Playlist(MASTER, httpserver.url_for("/token/1.m3u8"))


def test_what_is_not_a_playlist_reads_as_none(httpserver: HTTPServer):
    httpserver.expect_request("/gone.m3u8").respond_with_data("Not Found", status=404)
    httpserver.expect_request("/ts.m3u8").respond_with_data(b"\x47" + bytes(188 * 50))
    httpserver.expect_request("/html.m3u8").respond_with_data("<html>login</html>")
    httpserver.expect_request("/huge.m3u8").respond_with_data(
        "#EXTM3U\n" + "#EXTINF:2.0,\nsegment.ts\n" * (MAX_PLAYLIST_BYTES // 20)
    )
    for path in ("/gone.m3u8", "/ts.m3u8", "/html.m3u8", "/huge.m3u8"):
        assert read_playlist(httpserver.url_for(path), None, 5.0) is None, path


def test_a_provider_that_does_not_answer_reads_as_none(httpserver: HTTPServer):
    answered = threading.Event()

    def silent(_request: Request) -> Response:
        answered.wait(10.0)  # until the client has given up
        return Response("#EXTM3U\n")

    httpserver.expect_request("/slow.m3u8").respond_with_handler(silent)
    try:
        # Past its timeout the read gives up; the check goes on without it.
        assert read_playlist(httpserver.url_for("/slow.m3u8"), None, 0.2) is None
    finally:
        answered.set()
    assert read_playlist("http://127.0.0.1:9/closed.m3u8", None, 1.0) is None


def test_a_playlist_that_trickles_in_is_given_up_on_at_the_deadline(httpserver: HTTPServer):
    """Each piece comes within the timeout, the whole does not: the read stops at
    the timeout in all (a viewer's preemption waits for it), not at the last piece."""
    stop = threading.Event()

    def trickle(_request: Request) -> Response:
        def pieces() -> Iterator[bytes]:
            yield b"#EXTM3U\n"
            for _ in range(20):
                if stop.wait(0.1):
                    return
                yield b"#EXTINF:2.0,\nsegment.ts\n"

        return Response(pieces(), content_type="application/vnd.apple.mpegurl")

    httpserver.expect_request("/slow.m3u8").respond_with_handler(trickle)
    try:
        assert read_playlist(httpserver.url_for("/slow.m3u8"), None, 0.5) is None
    finally:
        stop.set()


def test_a_self_signed_provider_is_read_as_ffmpeg_reads_it():
    """ffmpeg does not verify a provider's certificate (``tls_verify`` is off by
    default), and many IPTV panels have a self-signed or expired one: the
    playlist is read the same way."""
    with _https_server() as server, warnings.catch_warnings():
        # The module's own filter is gone under pytest (it resets the filters
        # after collection); the next test runs it as the daemon does.
        warnings.simplefilter("ignore", InsecureRequestWarning)
        playlist = read_playlist(server.url_for("/live/u/p/1.m3u8"), None, 5.0)
        assert playlist is not None
        assert playlist.text == MASTER


def test_reading_an_unverified_playlist_warns_nowhere():
    """In a process of its own, as the daemon imports it: with every warning an
    error, the read still succeeds, so no warning reaches the logs."""
    with _https_server() as server:
        url = server.url_for("/live/u/p/1.m3u8")
        code = (
            "from adapters.hls import read_playlist; "
            f"print(len(read_playlist({url!r}, None, 5.0).text))"
        )
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=Path(__file__).parent.parent.parent,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(MASTER))


@contextlib.contextmanager
def _https_server() -> Iterator[HTTPServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(FIXTURES / "loopback-cert.pem", FIXTURES / "loopback-key.pem")
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.expect_request("/live/u/p/1.m3u8").respond_with_data(MASTER)
    server.start()
    try:
        assert server.url_for("/").startswith("https://")
        yield server
    finally:
        server.clear()
        server.stop()
