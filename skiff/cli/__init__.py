"""The `skiff` command line."""
