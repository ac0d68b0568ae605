"""Tabular file formats (`ferry.formats` plugins): csv, xlsx, pdf, json."""
