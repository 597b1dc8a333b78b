"""A synthetic Telegram Desktop full-account export (``result.json``) to try, test and benchmark doppel on.

    doppel sample-export OUT.json [--seed N] [--messages N]

The file has the shape and byte layout that Telegram Desktop's "Export Telegram data" (format JSON) writes:
``about``, ``personal_information``, ``contacts``, ``frequent_contacts``, ``chats`` and ``left_chats``,
one-space indentation, keys in Telegram's order, UTF-8 without escapes. Every chat type, service message,
media kind and entity appears, as do the awkward cases real exports hold: deleted accounts (``from: null``),
a friend who renames midway, display names with a newline or ``<|im_end|>``, ChatML markers and personal
data (phone numbers, e-mails, Luhn-valid card numbers, IBANs) in text, and gaps of whole days plus a few
minutes between conversations.

The owner and seven friends each write in a style a model can learn (see :data:`STYLE_OF`): one all in
lowercase ending in "))", one in Russian, one in long multi-paragraph messages, one in bursts of 3-6 short
messages, one with many emoji, one in formal English. The owner writes English, and Russian to the Russian
friend. All text comes from the templates in this package; nothing is real or downloaded.

``date`` is the owner's local time (UTC+3, written without an offset, as Telegram does); ``date_unixtime``
is the truth. The same ``seed`` and ``messages`` give the same bytes.

Where things are: :mod:`.generator` writes the file. :mod:`.chats`, :mod:`.friends` and :mod:`.groups` plan
each chat and the edge cases it holds (a :mod:`.plan`, among the people of :mod:`.cast`); :mod:`.conversation`
turns a plan into messages at realistic times (:mod:`.clock`). Texts come from :mod:`.styles` and
:mod:`.makers` through :mod:`.templates`, with words from :mod:`.vocabulary` and :mod:`.personal_data` and
entities from :mod:`.entities`; :mod:`.writer`, :mod:`.media` and :mod:`.account` write them in Telegram's
layout. Only the standard library is used, so importing this package is cheap.
"""

from training.telegram.sample.clock import END_UNIXTIME, UTC_OFFSET_SECONDS
from training.telegram.sample.generator import DEFAULT_MESSAGES, MIN_MESSAGES, SampleExportSummary, write_sample_export
from training.telegram.sample.styles import STYLE_OF

__all__ = [
    "DEFAULT_MESSAGES",
    "END_UNIXTIME",
    "MIN_MESSAGES",
    "STYLE_OF",
    "UTC_OFFSET_SECONDS",
    "SampleExportSummary",
    "write_sample_export",
]
