"""Model card templates (markdown with string.Template placeholders), rendered by `talkface.hub.cards`."""
