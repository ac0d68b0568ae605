"""ImportEntities (csv, 10,000 students) vs django-import-export on the same file.

Both write into their own freshly created PostgreSQL database: Ferry through a real
`ferry serve import` process, django-import-export in this process with a plain
ModelResource (its documented default use) over an equivalent Student model.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from bench.common import Row, Timing, fresh_database
from ferry.v1 import bundle_pb2, import_pb2, import_pb2_grpc

ROWS = 10_000
HEADER = ["student_id", "first_name", "last_name", "email", "date_of_birth", "year_level", "status"]


def students_csv(path: Path, n: int = ROWS) -> None:
    """`n` distinct, valid student rows."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(n):
            w.writerow(
                [
                    f"C{i:07d}",
                    f"First{i}",
                    f"Last{i % 997}",
                    f"student{i}@example.org",
                    f"20{10 + i % 5:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                    str(7 + i % 6),
                    "active",
                ]
            )


def ferry_seconds(path: Path, workdir: Path) -> float:
    """Seconds for ImportEntities of the file into a fresh database (server warmed up)."""
    import grpc

    from bench.imports import ImportServer, scratch_database

    server = ImportServer(scratch_database(), workdir)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = import_pb2_grpc.ImportServiceStub(ch)
            md = [("authorization", f"Bearer {server.token()}")]
            # Warm-up (first connection, first queries) on a one-row file of another key.
            stub.ImportEntities(
                _requests(b",".join(h.encode() for h in HEADER) + b"\nW1,a,b,c,,9,active\n"),
                metadata=md,
                timeout=60,
            )
            data = path.read_bytes()
            t = time.perf_counter()
            result = stub.ImportEntities(_requests(data), metadata=md, timeout=600).result
            seconds = time.perf_counter() - t
    finally:
        server.stop()
    created = sum(s.created for s in result.summaries)
    if created != ROWS:
        raise AssertionError(f"Ferry created {created} of {ROWS} students")
    return seconds


def _requests(data: bytes) -> Any:
    yield import_pb2.ImportEntitiesRequest(
        options=import_pb2.ImportEntitiesOptions(entity="students", filename="students.csv")
    )
    for offset in range(0, len(data), 1024 * 1024):
        chunk = bundle_pb2.FileChunk(data=data[offset : offset + 1024 * 1024], offset=offset)
        yield import_pb2.ImportEntitiesRequest(file_chunk=chunk)


_DJANGO: dict[str, Any] = {}


def _django(name: str) -> tuple[Any, Any]:
    """(Student model, StudentResource) on PostgreSQL database `name` (set up once)."""
    if _DJANGO:
        return _DJANGO["model"], _DJANGO["resource"]
    import django
    from django.conf import settings

    from bench.common import PG_ADMIN

    host_part = PG_ADMIN.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_part.partition(":")
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": name,
                "USER": PG_ADMIN.split("://", 1)[1].split("@", 1)[0].split(":")[0],
                "HOST": host,
                "PORT": port or "5432",
            }
        },
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "import_export"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    from django.db import models
    from import_export import resources

    class Student(models.Model):
        student_id = models.CharField(max_length=32, unique=True)
        first_name = models.CharField(max_length=100)
        last_name = models.CharField(max_length=100)
        email = models.CharField(max_length=200)
        date_of_birth = models.DateField(null=True)
        year_level = models.IntegerField()
        status = models.CharField(max_length=16)

        class Meta:
            # Any installed app's label will do for a model built in a script.
            app_label = "import_export"

    class StudentResource(resources.ModelResource):
        class Meta:
            model = Student
            import_id_fields = ("student_id",)
            fields = tuple(HEADER)

    _DJANGO.update(model=Student, resource=StudentResource)
    return Student, StudentResource


def django_seconds(path: Path) -> float:
    """Seconds for django-import-export to import the file into a fresh database."""
    from bench.imports import scratch_name

    name = scratch_name("django")
    fresh_database(name)
    student, resource_cls = _django(name)
    import tablib
    from django.db import connection

    connection.close()  # the database was just re-created
    with connection.schema_editor() as editor:
        editor.create_model(student)
    text = path.read_text(encoding="utf-8")
    t = time.perf_counter()
    dataset = tablib.Dataset().load(io.StringIO(text), format="csv")
    result = resource_cls().import_data(dataset, dry_run=False, raise_errors=True)
    seconds = time.perf_counter() - t
    if result.has_errors() or student.objects.count() != ROWS:
        raise AssertionError("django-import-export did not import every row")
    connection.close()
    return seconds


def run(workdir: Path, repeat: int) -> Row:
    path = workdir / "students.csv"
    students_csv(path)
    ferry = sorted(ROWS / ferry_seconds(path, workdir) for _ in range(repeat))
    other = sorted(ROWS / django_seconds(path) for _ in range(repeat))
    f = Timing(ferry[len(ferry) // 2], ferry[0], ferry[-1])
    d = Timing(other[len(other) // 2], other[0], other[-1])
    return Row(
        f"ImportEntities csv, {ROWS:,} new students",
        ROWS,
        f.median,
        "django-import-export ModelResource.import_data (same file, PostgreSQL)",
        d.median,
        0.0,
        "; ".join(s for s in (f.spread_note(), d.spread_note(), "RSS not measured") if s),
    )
