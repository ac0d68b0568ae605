"""The `ferry` command: a gRPC client for operators and CronJobs, plus admin verbs."""
