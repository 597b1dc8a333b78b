"""``doppel serve``: the Telegram bot (aiogram routers and middlewares, settings, persistence, Business flows).

Built by the bot issue. It reaches the model only through ``serving``'s engine interface, and imports ``serving``
and ``doppel`` only: never ``training`` or torch, so a server that only answers messages installs without them.
"""
