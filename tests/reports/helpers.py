"""A small school whose report numbers are worked out by hand in the tests."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.db.models import (
    Attendance,
    Course,
    DailyPerformance,
    Enrollment,
    Grade,
    Highlight,
    Student,
)

D = dt.date
SEM = "2026-fall"


def _ins(conn: Any, model: Any, **values: Any) -> int:
    return int(conn.execute(sa.insert(model).values(**values)).inserted_primary_key[0])


def build(engine: Engine) -> dict[str, int]:
    """MATH (4 credits): S1 + four classmates graded (class average shown). ART (2
    credits): S1 and S2 only (class average hidden). S6: enrolled nowhere."""
    ids: dict[str, int] = {}
    with engine.begin() as conn:
        math = _ins(
            conn,
            Course,
            course_code="MATH",
            semester=SEM,
            title="Mathematics",
            credits=4,
            teacher="Μαρία Παπαδοπούλου",
        )
        art = _ins(
            conn, Course, course_code="ART", semester=SEM, title="Art", credits=2, teacher="Jo Park"
        )
        for i, (first, last) in enumerate(
            [
                ("Ελένη", "Νικολάου"),
                ("Ann", "Bee"),
                ("Cy", "Dee"),
                ("Eve", "Eff"),
                ("Gus", "Ho"),
                ("Ida", "Jay"),
            ],
            start=1,
        ):
            ids[f"S{i}"] = _ins(
                conn, Student, student_id=f"S{i}", first_name=first, last_name=last, year_level=10
            )
        e1m = _ins(conn, Enrollment, student_ref=ids["S1"], course_ref=math)
        e1a = _ins(conn, Enrollment, student_ref=ids["S1"], course_ref=art)
        ids["e1m"], ids["e1a"] = e1m, e1a
        _ins(
            conn,
            Grade,
            enrollment_ref=e1m,
            assessment="Quiz",
            score=8,
            max_score=10,
            weight=1,
            graded_on=D(2026, 9, 8),
        )
        _ins(
            conn,
            Grade,
            enrollment_ref=e1m,
            assessment="Exam",
            score=45,
            max_score=50,
            weight=3,
            graded_on=D(2026, 9, 22),
            comment="Καλή δουλειά",
        )
        _ins(
            conn,
            Grade,
            enrollment_ref=e1m,
            assessment="Old quiz",
            score=0,
            max_score=10,
            weight=5,
            graded_on=D(2026, 9, 1),
            deleted_at=dt.datetime(2026, 9, 2, tzinfo=dt.UTC),
        )
        _ins(
            conn,
            Grade,
            enrollment_ref=e1a,
            assessment="Project",
            score=19,
            max_score=20,
            weight=1,
            graded_on=D(2026, 9, 15),
        )
        for sid, score in [("S2", 70), ("S3", 80), ("S4", 90), ("S5", 60)]:
            e = _ins(conn, Enrollment, student_ref=ids[sid], course_ref=math)
            _ins(
                conn,
                Grade,
                enrollment_ref=e,
                assessment="Exam",
                score=score,
                max_score=100,
                weight=1,
                graded_on=D(2026, 9, 22),
            )
        e2a = _ins(conn, Enrollment, student_ref=ids["S2"], course_ref=art)
        _ins(
            conn,
            Grade,
            enrollment_ref=e2a,
            assessment="Project",
            score=10,
            max_score=20,
            weight=1,
            graded_on=D(2026, 9, 15),
        )
        for day, status in [
            (7, "present"),
            (8, "present"),
            (9, "present"),
            (10, "late"),
            (11, "absent"),
        ]:
            _ins(conn, Attendance, enrollment_ref=e1m, date=D(2026, 9, day), status=status)
        for day, score in [(7, 4.0), (14, 3.0), (21, 2.0)]:
            _ins(
                conn,
                DailyPerformance,
                enrollment_ref=e1m,
                date=D(2026, 9, day),
                category="participation",
                score=score,
            )
        _ins(
            conn,
            Highlight,
            student_ref=ids["S1"],
            semester=SEM,
            title="Science fair winner",
            kind="award",
        )
    return ids


class Proxy:
    """A TCP forwarder to Redis that a test can cut (Redis "down") and restore, on a port
    of its own, so the machine's Redis stays up for everyone else."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket

        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: Any = None
        self._conns: list[Any] = []
        self._threads: list[Any] = []

    def start(self) -> None:
        import socket
        import threading

        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(16)
        self._server = srv

        def pump(a: Any, b: Any) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    with contextlib.suppress(OSError):
                        s.close()

        def accept() -> None:
            while True:
                try:
                    client, _ = srv.accept()
                except OSError:
                    return
                upstream = socket.create_connection(self.target)
                self._conns += [client, upstream]
                for x, y in ((client, upstream), (upstream, client)):
                    t = threading.Thread(target=pump, args=(x, y), daemon=True)
                    t.start()
                    self._threads.append(t)

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        import socket

        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        for s in self._conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._conns.clear()
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()


class BlackHole:
    """A port that takes connections and never answers (a hung or firewalled Redis): every
    command waits its full socket timeout."""

    def __init__(self) -> None:
        import socket

        self._srv = socket.socket()
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(1024)  # the kernel completes handshakes; nobody ever reads
        self.port = self._srv.getsockname()[1]

    def close(self) -> None:
        self._srv.close()
