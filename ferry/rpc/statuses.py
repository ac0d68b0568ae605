"""Status enums of the protos as the names stored in the database and shown by the CLI,
read from the enums themselves: `EXPORT_JOB_STATUS_COMPLETED` is "completed". One map per
enum, both ways, instead of a hand-written dict in each service and command."""

from __future__ import annotations

from typing import Any, TypeAlias, cast

from ferry.v1 import export_pb2, notify_pb2


def names(enum: Any, prefix: str) -> dict[int, str]:
    """{enum value: its name without `prefix`, lower case}, the UNSPECIFIED value left out."""
    return {
        v.number: v.name.removeprefix(prefix).lower()
        for v in enum.DESCRIPTOR.values
        if v.number != 0
    }


ExportJobStatus: TypeAlias = export_pb2.ExportJobStatus.ValueType
NotificationStatus: TypeAlias = notify_pb2.NotificationStatus.ValueType

EXPORT_JOB_STATUS = cast(
    dict[ExportJobStatus, str], names(export_pb2.ExportJobStatus, "EXPORT_JOB_STATUS_")
)
EXPORT_JOB_STATUS_VALUE = {name: value for value, name in EXPORT_JOB_STATUS.items()}
NOTIFICATION_STATUS = cast(
    dict[NotificationStatus, str], names(notify_pb2.NotificationStatus, "NOTIFICATION_STATUS_")
)
NOTIFICATION_STATUS_VALUE = {name: value for value, name in NOTIFICATION_STATUS.items()}
