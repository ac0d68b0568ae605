"""Reports: student and semester reports computed from the school dataset, cached under a
data version (versions.py), rendered as pdf, csv and json (render_*.py), in bulk (bulk.py).

`ReportEngine` (engine.py) is what the service, the CLI and the benchmarks call."""
