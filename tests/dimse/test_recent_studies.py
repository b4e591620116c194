"""Which received file is a study's first (worker/dimse/handlers.RecentStudies)."""

from worker.dimse import handlers
from worker.dimse.handlers import RecentStudies


def test_a_study_is_new_once_then_again_after_a_quiet_while(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(handlers.time, "monotonic", lambda: now[0])
    recent = RecentStudies()
    assert recent.first_in_a_while("1.2.3")
    assert not recent.first_in_a_while("1.2.3")
    assert recent.first_in_a_while("1.2.4")
    now[0] += RecentStudies.WINDOW - 1
    assert not recent.first_in_a_while("1.2.3")  # each file restarts the while
    now[0] += RecentStudies.WINDOW - 1
    assert not recent.first_in_a_while("1.2.3")
    now[0] += RecentStudies.WINDOW + 1
    assert recent.first_in_a_while("1.2.3")


def test_the_oldest_studies_are_forgotten_first(monkeypatch):
    monkeypatch.setattr(RecentStudies, "LIMIT", 3)
    recent = RecentStudies()
    for uid in ("1", "2", "3"):
        assert recent.first_in_a_while(uid)
    assert not recent.first_in_a_while("1")  # seen again: now the newest
    assert recent.first_in_a_while("4")  # over the limit: "2" is forgotten
    assert recent.first_in_a_while("2")
    assert not recent.first_in_a_while("1")
