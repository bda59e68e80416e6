"""The simulator's provider quirks: close lag, refusal by hang-up, the connection
record, and the variable-bitrate sample paced by its own clock.

A real cap below the configured one needs no mode of its own: the simulator
enforces ``SimAccount.max_connections`` whatever ``max_streams`` the daemon is
given (``test_server.test_cap_is_enforced_and_recorded`` shows the cap).
"""

from __future__ import annotations

import itertools
import time

from simulator.media import chunk_times, sample_path, sample_seconds
from simulator.server import CHUNK_BYTES, SimAccount, SimStream
from tests.simulator.test_server import IO_TIMEOUT_S, _open


def test_close_lag_counts_a_closed_connection_for_a_while(provider):
    lag = 0.6
    sim = provider([SimAccount("u", "p", 1, close_lag_s=lag)], {1: SimStream("stall")})
    status, _, sock = _open(sim, "/live/u/p/1.ts")
    assert status == 200
    sock.close()
    assert sim.wait_for_idle("u", timeout=IO_TIMEOUT_S)
    closed = sim.stats().connections[-1].closed

    status, _, again = _open(sim, "/live/u/p/1.ts")
    again.close()
    assert status == 403  # nothing is open, yet the provider still counts the old one
    assert time.monotonic() < closed + lag  # (else the refusal proves nothing)
    assert [r.username for r in sim.refused] == ["u"]

    time.sleep(max(0.0, closed + lag - time.monotonic()))  # the lag itself, nothing more
    status, _, last = _open(sim, "/live/u/p/1.ts")
    last.close()
    assert status == 200


def test_without_close_lag_a_closed_slot_is_free_at_once(provider):
    sim = provider([SimAccount("u", "p", 1)], {1: SimStream("stall")})
    for _ in range(2):
        status, _, sock = _open(sim, "/live/u/p/1.ts")
        assert status == 200
        sock.close()
        assert sim.wait_for_idle("u", timeout=IO_TIMEOUT_S)
    assert sim.refused == []


def test_refusal_by_hang_up(provider):
    sim = provider([SimAccount("u", "p", 1)], {1: SimStream("stall")}, refuse_style="close")
    status, _, first = _open(sim, "/live/u/p/1.ts")
    assert status == 200
    assert sim.wait_for_connections("u", 1, timeout=IO_TIMEOUT_S)
    status, head, second = _open(sim, "/live/u/p/1.ts")
    second.close()
    first.close()
    assert (status, head) == (0, "")
    assert [(r.username, r.stream_id) for r in sim.refused] == [("u", 1)]


def test_every_served_connection_is_recorded_with_its_length(provider):
    sim = provider([SimAccount("u", "p", 2)], {1: SimStream("stall"), 2: SimStream("dead")})
    status, _, sock = _open(sim, "/live/u/p/1.ts")
    assert status == 200
    assert sim.wait_for_connections("u", 1, timeout=IO_TIMEOUT_S)
    _, _, dead = _open(sim, "/live/u/p/2.ts")  # a 404 holds no slot and is not recorded
    dead.close()
    before = time.monotonic()
    sock.close()
    assert sim.wait_for_idle("u", timeout=IO_TIMEOUT_S)
    (connection,) = sim.stats().connections
    assert (connection.username, connection.stream_id) == ("u", 1)
    assert connection.opened < before <= connection.closed + 0.001
    assert connection.seconds == connection.closed - connection.opened > 0


def test_constant_bitrate_samples_are_paced_at_their_mean_rate(sample_cache):
    sample = sample_path("hd", sample_cache).read_bytes()
    times = chunk_times(sample, CHUNK_BYTES, sample_seconds("hd"), vbr=False)
    rate = len(sample) / sample_seconds("hd")
    assert times[0] == 0.0
    assert times[10] == 10 * CHUNK_BYTES / rate


def _bytes_per_window(sample: bytes, times: list[float], window: float) -> list[int]:
    totals: dict[int, int] = {}
    for index, at in enumerate(times):
        size = min(CHUNK_BYTES, len(sample) - index * CHUNK_BYTES)
        totals[int(at // window)] = totals.get(int(at // window), 0) + size
    return [totals.get(i, 0) for i in range(max(totals) + 1)]


def test_vbr_sample_bitrate_moves_and_is_paced_by_its_clock(sample_cache):
    seconds = sample_seconds("vbr")
    sample = sample_path("vbr", sample_cache).read_bytes()
    times = chunk_times(sample, CHUNK_BYTES, seconds, vbr=True)
    assert seconds == 8.0
    assert all(b >= a for a, b in itertools.pairwise(times))
    assert times[0] == 0.0
    assert seconds - 1.0 < times[-1] < seconds  # the clock covers the whole loop
    # Two seconds with noise, two without: the noisy windows carry far more bytes.
    windows = _bytes_per_window(sample, times, 2.0)[:4]
    assert min(windows[0], windows[2]) > 1.5 * max(windows[1], windows[3])
    # Paced at a constant rate, the windows carry about the same bytes (within
    # 1.00-1.07 of each other over fresh encodes, which differ from run to run).
    flat = _bytes_per_window(sample, chunk_times(sample, CHUNK_BYTES, seconds, vbr=False), 2.0)
    assert max(flat[:4]) < 1.25 * min(flat[:4])


def test_vbr_stream_is_served_at_about_real_time(provider, sample_cache):
    sim = provider([SimAccount("u", "p", 1)], {1: SimStream("ok", "vbr")}, burst_s=0.5)
    sample = sample_path("vbr", sample_cache).read_bytes()
    times = chunk_times(sample, CHUNK_BYTES, sample_seconds("vbr"), vbr=True)
    # The bytes due in the burst and the first 1.5 s of the clock.
    target = CHUNK_BYTES * sum(1 for at in times if at <= 2.0)
    started = time.monotonic()
    status, head, sock = _open(sim, "/live/u/p/1.ts")
    assert status == 200
    body = head.encode("latin-1").split(b"\r\n\r\n", 1)[1]
    while len(body) < target:
        data = sock.recv(65536)
        assert data
        body += data
    elapsed = time.monotonic() - started
    sock.close()
    assert body[0] == 0x47
    assert 1.2 < elapsed < 3.0
