"""The progress bar of ``doppel prepare``: the export's bytes for the ETA, the messages read and their rate.

    with PrepareProgress(total_bytes, enabled=True) as progress:
        progress.show(position=bytes_read, messages=messages_read)

Shown on a terminal only (tqdm decides), and never with any message text: counts only.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import IO, Any


class PrepareProgress:
    """A tqdm bar over the export's bytes whose postfix says how many messages were read, and how fast."""

    def __init__(self, total_bytes: int, *, enabled: bool, stream: IO[str] | None = None) -> None:
        from tqdm import tqdm  # here, not at the top: --quiet runs never pay for it

        # disable=None: only on a terminal; a test hands a stream and gets the bar regardless.
        disable = (False if stream is not None else None) if enabled else True
        self._bar: Any = tqdm(
            total=total_bytes,
            unit="B",
            unit_scale=True,
            desc="prepare",
            disable=disable,
            leave=False,
            file=stream,
            mininterval=0.2,
        )
        self._started = time.monotonic()
        self.position = 0
        self.messages = 0

    def show(self, position: int, messages: int) -> None:
        """``position`` bytes of the export and ``messages`` messages read so far (both only grow)."""
        self.position, self.messages = position, messages
        bar = self._bar
        if bar.disable:
            return
        rate = messages / max(time.monotonic() - self._started, 1e-6)
        bar.set_postfix_str(f"{messages:,} messages, {rate:,.0f} messages/s", refresh=False)
        bar.update(position - bar.n)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> PrepareProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
