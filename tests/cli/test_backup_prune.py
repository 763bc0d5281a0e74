"""`argus backups prune` keeps what a point-in-time window needs: every base newer than the
cut-off, the newest one older than it, and the WAL from that base's start segment."""

from __future__ import annotations

from argus_shared.backup_manifest import Manifest
from argus_shared.cli.prune import kept, segment_of


def _base(finished: str) -> Manifest:
    return Manifest(format=1, id=finished, started_at=finished, finished_at=finished,
                    start_lsn="0/2000028", end_lsn="0/2000138", timeline=1, key_id="k",
                    files=[], postgresql="16.2")


def test_the_newest_base_before_the_cutoff_is_kept_with_all_newer() -> None:
    bases = [_base(day) for day in ("2026-01-01", "2026-01-05", "2026-01-09", "2026-01-20")]
    assert [m.id for m in kept(bases, "2026-01-10")] == ["2026-01-09", "2026-01-20"]


def test_the_newest_base_is_kept_even_past_retention() -> None:
    bases = [_base("2026-01-01"), _base("2026-01-02")]
    assert [m.id for m in kept(bases, "2026-06-01")] == ["2026-01-02"]


def test_the_segment_of_an_lsn() -> None:
    assert segment_of("0/2000028", 1) == "000000010000000000000002"
    assert segment_of("1A/FF000000", 3) == "000000030000001A000000FF"
