"""Notifications: the outbox (store), retry schedule, templates, channels and workers.

The notify service (services/notify) is a thin gRPC face over this package.
"""
