"""The progress line shows rate, sent and errors on a terminal, and stays quiet otherwise."""

from __future__ import annotations

import io

from fraudpipe_producer.progress import Progress


def test_terminal_line_shows_sent_rate_and_errors() -> None:
    out = io.StringIO()
    progress = Progress(out, enabled=True, interval_s=0)
    progress.update(sent=12_000, errors=3, fraud=120)
    line = out.getvalue()
    assert line.startswith("\r")
    assert "sent       12,000" in line
    assert "errors      3" in line
    assert "/s" in line
    assert "fraud  1.00%" in line


def test_nothing_is_drawn_when_disabled_but_the_summary_remains() -> None:
    out = io.StringIO()
    progress = Progress(out, enabled=False, interval_s=0)
    progress.update(sent=10, errors=0, fraud=0)
    assert out.getvalue() == ""
    assert progress.finish(10, 0, 1).startswith("sent 10 transactions in ")
