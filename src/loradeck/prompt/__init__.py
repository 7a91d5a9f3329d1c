"""Prompt text, pure: extra-network tags (``tags``), A1111 emphasis (``emphasis``), 75-token chunks (``chunks``),
sampler/schedule names (``samplers``), infotext (``infotext``) and its place in picture files (``pnginfo``)."""
