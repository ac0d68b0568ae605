"""The reports service: student and semester reports (see protos/ferry/v1/reports.proto)."""
