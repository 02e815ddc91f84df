"""CareWatch's composition root: the CLI, one build of the parts, admin commands, migrations."""
