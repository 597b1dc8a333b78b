"""Telegram Desktop's JSON export: streamed without loading it (``stream``), each message judged
(``messages``), its chat types (``chat_types``), and a synthetic export to try the pipeline on (``sample``)."""
