"""Bundle file formats (`ferry.bundle_formats` plugins): json, jsonl, xlsx, tar.gz."""
