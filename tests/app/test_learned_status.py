"""What the accounts learned, as /api/status and /metrics show it (plain parts)."""

from __future__ import annotations

from app.dashboard import _logins
from app.metrics import Metrics

ACCOUNT = {
    "profiles": [
        {"id": 11, "name": "main", "is_default": True, "max_streams": 3},
        {"id": 12, "name": "second", "is_default": False, "max_streams": 2},
    ]
}
USAGE = {
    11: {"viewers": 0, "leases": 1, "limit": 3, "learned_limit": 1, "release_lag_s": 0.0},
    12: {"viewers": 0, "leases": 0, "limit": 2, "learned_limit": None, "release_lag_s": 3.0},
}


def test_logins_carry_the_learned_limit_and_release_lag():
    logins = {login["id"]: login for login in _logins(ACCOUNT, USAGE, {})}
    assert (logins[11]["learned_limit"], logins[11]["effective_limit"]) == (1, 1)
    assert "release_lag_s" not in logins[11]  # none learned
    assert "learned_limit" not in logins[12]
    assert logins[12]["release_lag_s"] == 3.0
    assert _logins(ACCOUNT, {11: (0, 1, 3)}, {})[0].get("release_lag_s") is None


def test_metrics_show_learned_limit_and_release_lag_per_login():
    status = {"accounts": {1: {"name": "A", "logins": _logins(ACCOUNT, USAGE, {})}}}
    metrics = Metrics()
    metrics.watch_state(lambda: status)
    text = metrics.render().decode()
    assert 'iptv_checkd_learned_limit{account="1",login="11"} 1.0' in text
    assert 'iptv_checkd_learned_limit{account="1",login="12"} 2.0' in text
    assert 'iptv_checkd_release_lag_seconds{account="1",login="12"} 3.0' in text
    assert 'iptv_checkd_release_lag_seconds{account="1",login="11"} 0.0' in text
