"""When the sample export is made: the moment every chat's history runs up to, and the owner's time zone."""

from __future__ import annotations

import time

#: The export "ends" here (2024-06-30 20:00 UTC): every chat's history runs up to about this moment.
END_UNIXTIME = 1_719_777_600
#: Telegram writes ``date`` in the exporting machine's local time; the owner lives at UTC+3 (no DST).
UTC_OFFSET_SECONDS = 3 * 3600


def local_time(ts: int) -> str:
    """``ts`` as Telegram writes a ``date``: the owner's local time, without an offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts + UTC_OFFSET_SECONDS))
