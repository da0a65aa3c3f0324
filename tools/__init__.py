"""Development tools (not shipped): the import-linter contract types of this repository."""
