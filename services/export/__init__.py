"""The export service: gets data out of Ferry (see protos/ferry/v1/export.proto)."""
