"""Pure text of the method (no torch): perspective sentences, layout tags, keyword masking (perspectives),
and the implicit/explicit prompts (prompts)."""
