"""Pure text of the method (no torch): perspective sentences, layout tags, keyword masking (perspectives),
the implicit/explicit prompts (prompts), and the one text cleaning every model input goes through (clean)."""
