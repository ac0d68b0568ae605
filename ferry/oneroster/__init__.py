"""OneRoster 1.2 CSV in and out: validator, export, import, loss report (docs/oneroster.md)."""
