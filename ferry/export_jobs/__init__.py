"""Entity exports as jobs: queries, the job store, workers, stats and retention."""
