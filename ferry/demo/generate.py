"""Deterministic row generators for the demo seed.

One `random.Random` drives everything in a fixed order (courses, students, enrollments
with their grades/attendance/performance, highlights), so the same seed number gives the
same rows whatever the backend or chunk size. Rows are plain tuples in `COLUMNS` order with
ids assigned here (1..n per table): the seed only runs on an empty database, and knowing
the ids lets children be generated without reading anything back.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from ferry.demo import names as nm
from ferry.demo.plan import (
    COLUMNS,
    ENROLLMENT_TABLES,
    Formats,
    Plan,
    Row,
    parse_semester,
    semester_dates,
)

_DAY = 86_400.0
_LATE_MINUTES = (5, 10, 15, 30)


@functools.cache
def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


@functools.cache
def _slug(name: str) -> str:
    return nm.ascii_slug(name)


@dataclass(frozen=True, slots=True)
class _Course:
    id: int
    code: str
    subject: int
    level: int
    start: dt.date
    lesson_days: tuple[dt.date, ...]
    assessments: tuple[tuple[str, float, dt.date], ...]
    max_score: float
    difficulty: float


class Generator:
    """Generates the dataset of one `Plan`; use the methods in the order of `COLUMNS`."""

    def __init__(self, plan: Plan, seed: int, formats: Formats) -> None:
        self.plan = plan
        self.rng = random.Random(seed)
        self.fmt = formats
        self.counts: dict[str, int] = dict.fromkeys(COLUMNS, 0)
        self._by_semester: dict[str, list[_Course]] = {}
        self._ability: list[float] = [0.0]  # indexed by student id; 0 is unused
        self._enrolled: dict[str, list[int]] = {}

    def _stamp(self, day: dt.date, lo_hour: float, hi_hour: float) -> dt.datetime:
        return _midnight(day) + dt.timedelta(seconds=self.rng.uniform(lo_hour, hi_hour) * 3600)

    def _times(self, created: dt.datetime, edited: float, deleted: float) -> Row:
        """created/updated/deleted_at: a share `edited` was changed later, `deleted` removed."""
        rng, ts = self.rng, self.fmt.ts
        updated = created
        if rng.random() < edited:
            updated = created + dt.timedelta(seconds=rng.uniform(3600.0, 60 * _DAY))
        if rng.random() < deleted:
            gone = updated + dt.timedelta(seconds=rng.uniform(3600.0, 30 * _DAY))
            return ts(created), ts(updated), ts(gone)
        return ts(created), ts(updated), None

    def _teachers(self) -> list[list[str]]:
        """Two or three teachers per subject, English or Greek (always Greek for Greek)."""
        rng = self.rng
        staff = []
        for _, subject in nm.SUBJECTS:
            greek = 0.5 if subject.isascii() else 1.0
            people = []
            for _ in range(rng.randint(2, 3)):
                female = rng.random() < 0.55
                if rng.random() < greek:
                    first = rng.choice(nm.GREEK_FEMALE if female else nm.GREEK_MALE)
                    people.append(f"{first} {rng.choice(nm.GREEK_LAST)[female]}")
                else:
                    first = rng.choice(nm.ENGLISH_FEMALE if female else nm.ENGLISH_MALE)
                    title = "Dr." if rng.random() < 0.15 else ("Ms." if female else "Mr.")
                    people.append(f"{title} {first} {rng.choice(nm.ENGLISH_LAST)}")
            staff.append(people)
        return staff

    def courses(self) -> Iterator[Row]:
        """Courses, semester by semester; prerequisites always point at lower ids."""
        rng, plan = self.rng, self.plan
        staff = self._teachers()
        catalog = [
            (s, level, k)
            for s in range(len(nm.SUBJECTS))
            for level in range(1, 5)
            for k in range(1, 6)
        ]
        earlier: list[_Course] = []
        for semester in plan.semesters:
            year, fall = parse_semester(semester)
            start, end = semester_dates(semester)
            weekdays = [
                start + dt.timedelta(days=i)
                for i in range((end - start).days + 1)
                if (start + dt.timedelta(days=i)).weekday() < 5
            ]
            current = semester == plan.semesters[-1]
            # Sorted, so a subject's lower levels get lower ids and can be prerequisites.
            picks = sorted(rng.sample(catalog, plan.courses_per_semester))
            here: list[_Course] = []
            for subject, level, k in picks:
                code_prefix, name = nm.SUBJECTS[subject]
                cid = self.counts["courses"] + 1
                self.counts["courses"] = cid
                chosen = sorted(rng.sample(range(len(nm.ASSESSMENTS)), plan.assessments))
                weights = rng.choice(nm.WEIGHTS)
                dates = sorted(rng.sample(weekdays, plan.assessments))
                course = _Course(
                    id=cid,
                    code=f"{code_prefix}{level * 100 + k}-{year}{'F' if fall else 'S'}",
                    subject=subject,
                    level=level,
                    start=start,
                    lesson_days=tuple(sorted(rng.sample(weekdays, plan.lesson_days))),
                    assessments=tuple(
                        (nm.ASSESSMENTS[a], weights[i % len(weights)], dates[i])
                        for i, a in enumerate(chosen)
                    ),
                    # Greek schools mark out of 20; keep both scales in the data.
                    max_score=20.0 if rng.random() < 0.3 else 100.0,
                    difficulty=rng.uniform(-0.08, 0.08),
                )
                prerequisite = None
                if level > 1 and rng.random() < 0.5:
                    same = [
                        c.id for c in (*earlier, *here) if c.subject == subject and c.level < level
                    ]
                    # Fall back to any course of an earlier semester so small seeds still
                    # get cross-semester prerequisites.
                    options = same or [c.id for c in earlier]
                    prerequisite = rng.choice(options) if options else None
                if current:
                    status = "archived" if rng.random() < 0.03 else "active"
                else:
                    status = "archived" if rng.random() < 0.8 else "active"
                created = self._stamp(start - dt.timedelta(days=rng.randint(60, 120)), 8, 18)
                yield (
                    cid,
                    course.code,
                    semester,
                    f"{name} {nm.ROMAN[level]}{nm.VARIANTS[k - 1]}",
                    rng.choice(nm.COURSE_BLURBS),
                    level + 2,
                    rng.choice(staff[subject]),
                    status,
                    prerequisite,
                    *self._times(created, 0.5, 0.04),
                )
                here.append(course)
            self._by_semester[semester] = here
            earlier.extend(here)

    def students(self) -> Iterator[Row]:
        """Students, oldest year level first, so a mentor (an older student) has a lower id."""
        rng, plan, day = self.rng, self.plan, self.fmt.day
        n = plan.students
        first_year, first_fall = parse_semester(plan.semesters[0])
        school_year = first_year if first_fall else first_year - 1  # starts in September
        emails: dict[str, int] = {}
        block_start, block_level = 1, -1
        for sid in range(1, n + 1):
            level = 12 - (sid - 1) * 6 // n  # years 12 down to 7
            if level != block_level:
                block_start, block_level = sid, level
            female = rng.random() < 0.5
            if rng.random() < 0.45:
                first = rng.choice(nm.GREEK_FEMALE if female else nm.GREEK_MALE)
                last = rng.choice(nm.GREEK_LAST)[female]
            else:
                first = rng.choice(nm.ENGLISH_FEMALE if female else nm.ENGLISH_MALE)
                last = rng.choice(nm.ENGLISH_LAST)
            local = f"{_slug(first)}.{_slug(last)}"
            seen = emails.get(local, 0)
            emails[local] = seen + 1
            email = f"{local}{seen or ''}@students.ferry-school.example"
            if rng.random() < 0.01:
                email = ""
            born = dt.date(school_year - level - 5, 9, 1) + dt.timedelta(days=rng.randrange(365))
            r = rng.random()
            status = "inactive" if r < 0.04 else "active"
            if level == 12 and 0.04 <= r < 0.1:
                status = "graduated"
            mentor = None
            if block_start > 1 and rng.random() < 0.12:
                mentor = rng.randint(1, block_start - 1)
            self._ability.append(min(0.98, max(0.3, rng.gauss(0.72, 0.12))))
            joined = dt.date(school_year - (level - 7), 8, 20) + dt.timedelta(rng.randrange(20))
            created = self._stamp(joined, 8, 18)
            yield (
                sid,
                f"S{sid:06d}",
                first,
                last,
                email,
                None if rng.random() < 0.01 else day(born),
                level,
                status,
                mentor,
                *self._times(created, 0.4, 0.03),
            )
        self.counts["students"] = n

    def enrollment_batches(self, size: int) -> Iterator[dict[str, list[Row]]]:
        """Enrollments with their grades, attendance and daily performance, about `size`
        enrollments per batch (the tables of `ENROLLMENT_TABLES`, parents first)."""
        rng, plan = self.rng, self.plan
        batch: dict[str, list[Row]] = {t: [] for t in ENROLLMENT_TABLES}
        for semester in plan.semesters:
            courses = self._by_semester[semester]
            current = semester == plan.semesters[-1]
            enrolled = sorted(rng.sample(range(1, plan.students + 1), plan.students_per_semester))
            self._enrolled[semester] = enrolled
            for sid in enrolled:
                picked = rng.sample(courses, plan.courses_per_student)
                for course in sorted(picked, key=lambda c: c.id):
                    self._enrollment(sid, course, current, batch)
                    if len(batch["enrollments"]) >= size:
                        yield batch
                        batch = {t: [] for t in ENROLLMENT_TABLES}
        if batch["enrollments"]:
            yield batch

    def _enrollment(
        self, sid: int, course: _Course, current: bool, batch: dict[str, list[Row]]
    ) -> None:
        rng, day, counts = self.rng, self.fmt.day, self.counts
        random_, gauss, choice = rng.random, rng.gauss, rng.choice
        eid = counts["enrollments"] + 1
        ability = self._ability[sid] - course.difficulty
        max_score = course.max_score

        grades = batch["grades"]
        gid = counts["grades"]
        total = 0.0
        for name, weight, graded_on in course.assessments:
            frac = min(1.0, max(0.0, ability + gauss(0.0, 0.1)))
            score = round(frac * max_score * 2) / 2  # half points, as teachers mark
            total += weight * score / max_score
            comment = choice(nm.GRADE_COMMENTS) if random_() < 0.12 else None
            gid += 1
            grades.append(
                (
                    gid,
                    eid,
                    name,
                    score,
                    max_score,
                    weight,
                    day(graded_on),
                    comment,
                    *self._times(self._stamp(graded_on, 15, 22), 0.1, 0.01),
                )
            )
        counts["grades"] = gid

        attendance = batch["attendance"]
        aid = counts["attendance"]
        for lesson in course.lesson_days:
            r = random_()
            if r < 0.87:
                status, note = "present", None
            elif r < 0.93:
                status, note = "late", f"+{choice(_LATE_MINUTES)} min late"
            elif r < 0.98:
                status, note = "absent", choice(nm.ABSENT_NOTES)
            else:
                status, note = "excused", choice(nm.EXCUSED_NOTES)
            aid += 1
            attendance.append(
                (
                    aid,
                    eid,
                    day(lesson),
                    status,
                    note,
                    *self._times(self._stamp(lesson, 8, 15), 0.05, 0.01),
                )
            )
        counts["attendance"] = aid

        lesson = choice(course.lesson_days)
        mark = round(min(5.0, max(1.0, 1.0 + 4.0 * ability + gauss(0.0, 0.5))), 1)
        counts["daily_performance"] += 1
        batch["daily_performance"].append(
            (
                counts["daily_performance"],
                eid,
                day(lesson),
                choice(nm.PERFORMANCE_CATEGORIES),
                mark,
                choice(nm.PERFORMANCE_NOTES) if random_() < 0.2 else None,
                *self._times(self._stamp(lesson, 9, 16), 0.1, 0.02),
            )
        )

        r = random_()
        if current:
            status, final = ("dropped" if r < 0.04 else "enrolled"), None
        elif r < 0.06:
            status, final = "dropped", None
        else:
            status, final = "completed", round(total * 100, 1)
        enrolled_on = course.start - dt.timedelta(days=rng.randrange(21))
        counts["enrollments"] = eid
        batch["enrollments"].append(
            (
                eid,
                sid,
                course.id,
                day(enrolled_on),
                status,
                final,
                *self._times(self._stamp(enrolled_on, 8, 20), 0.3, 0.03),
            )
        )

    def highlights(self) -> Iterator[Row]:
        """Highlights of students enrolled in each semester; titles unique per student."""
        rng, plan = self.rng, self.plan
        for semester in plan.semesters:
            start, end = semester_dates(semester)
            span = (end - start).days
            students = self._enrolled[semester]
            used: set[tuple[int, str]] = set()
            for _ in range(plan.highlights_per_semester):
                sid = rng.choice(students)
                base, kind = rng.choice(nm.HIGHLIGHTS)
                title, n = base, 1
                while (sid, title) in used:  # the natural key is (student, semester, title)
                    n += 1
                    title = f"{base} ({n})"
                used.add((sid, title))
                hid = self.counts["highlights"] + 1
                self.counts["highlights"] = hid
                created = self._stamp(start + dt.timedelta(days=rng.randrange(span)), 9, 17)
                yield (
                    hid,
                    sid,
                    semester,
                    title,
                    rng.choice(nm.HIGHLIGHT_DESCRIPTIONS),
                    kind,
                    *self._times(created, 0.2, 0.03),
                )
