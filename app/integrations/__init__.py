"""The relay as an app inside no-code platforms: Zapier and Make app definitions and the Slack manifest,
generated from `schemas/` and the relay's public URL."""
