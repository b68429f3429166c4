"""The vectors step: embeds products and purchase patterns and finds similar products."""
