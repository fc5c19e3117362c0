"""The `herald` command, the one entry point of every Herald process and operator command."""
