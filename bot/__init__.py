"""The Telegram bot: aiogram routers, settings, persistence and Business flows."""
