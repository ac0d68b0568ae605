"""Bundle file formats (`ferry.bundle_formats` plugins): json, jsonl, xlsx, tar.gz, and
the export-only sql (a psql restore script)."""
