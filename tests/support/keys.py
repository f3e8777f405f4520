"""Redis keys as the stores name them, for tests that look into storage."""

from app.stores.context import Context


def redis_key(ctx: Context, *parts: str) -> str:
    return ctx.config.key_prefix + ":".join(parts)
