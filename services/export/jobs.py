"""Entity export job RPCs of the export service (StartExport, GetExportJob, …)."""

from __future__ import annotations

from ferry.app import App


class JobRpcs:
    app: App
