"""Services: the one layer that owns state and runs every use case (``Studio``), its job queue (``jobs``), the
generation plan (``plan``). Interfaces (CLI, server, UI) import from here and from ``loradeck.vocab`` only.

Nothing is imported here on purpose: ``import loradeck.services.jobs`` must not load torch."""
