"""Media: files stored by signed URL, verified by content, deduplicated by SHA-256 (see docs/media.md)."""
