"""CareWatch composition root: settings, CLI, logging, wiring."""
