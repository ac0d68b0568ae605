"""Import glue between the ImportService and the merge engine (ferry.merge).

Nothing here merges: these modules spool uploads to disk under a size limit, pick the
bundle or tabular format, turn csv/xlsx rows into records, verify typed bundle streams,
and translate between the contract's messages and the engine's outcomes.
"""
