"""OneRoster 1.2 CSV -> Ferry: a validated Package becomes the school dataset's records.

  academicSessions (type term or semester)  -> the semester of the courses of its classes
  classes (+ their course)                  -> courses (course_code: classCode, else sourcedId)
  users with a student role (roles.csv)     -> students (student_id: identifier, else sourcedId)
  the teachers enrolled in a class          -> that course's teacher (the primary one first)
  enrollments of students                   -> enrollments
  lineItems + results (+ categories)        -> grades (weight: the category's weight)
  demographics.birthDate                    -> students.date_of_birth

Ferry's `metadata.ferry.*` extension columns, when present (a Ferry export), give back the
fields OneRoster has no column for; otherwise those fields take defaults. Rows with status
`tobedeleted` arrive soft-deleted (deleted_at set). Everything else is in the loss report.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from ferry.bundle.formats.base import Record
from ferry.oneroster.export import X, join_name
from ferry.oneroster.loss import LossReport
from ferry.oneroster.spec import TABLES
from ferry.oneroster.validate import Package, Row, parse_datetime, split_list

SEMESTER_TYPES = ("term", "semester")
DEFAULT_ENROLLMENT_STATUS = "enrolled"

# The OneRoster columns each table's mapping reads; any other filled-in column is lost.
USED: dict[str, set[str]] = {
    "academicSessions": {"sourcedId", "status", "dateLastModified", "title", "type"},
    "orgs": {"sourcedId", "status", "dateLastModified"},
    "courses": {"sourcedId", "status", "dateLastModified", "orgSourcedId", "title"},
    "classes": {
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "courseSourcedId",
        "classCode",
        "classType",
        "schoolSourcedId",
        "termSourcedIds",
    },
    "users": {
        "sourcedId",
        "status",
        "dateLastModified",
        "enabledUser",
        "username",
        "givenName",
        "familyName",
        "identifier",
        "email",
        "grades",
        "primaryOrgSourcedId",
    },
    "roles": {
        "sourcedId",
        "status",
        "dateLastModified",
        "userSourcedId",
        "roleType",
        "role",
        "orgSourcedId",
    },
    "enrollments": {
        "sourcedId",
        "status",
        "dateLastModified",
        "classSourcedId",
        "schoolSourcedId",
        "userSourcedId",
        "role",
        "primary",
        "beginDate",
    },
    "demographics": {"sourcedId", "status", "dateLastModified", "birthDate"},
    "categories": {"sourcedId", "status", "dateLastModified", "title", "weight"},
    "lineItems": {
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "assignDate",
        "dueDate",
        "classSourcedId",
        "categorySourcedId",
        "academicSessionSourcedId",
        "resultValueMin",
        "resultValueMax",
    },
    "results": {
        "sourcedId",
        "status",
        "dateLastModified",
        "lineItemSourcedId",
        "studentSourcedId",
        "classSourcedId",
        "scoreStatus",
        "score",
        "scoreDate",
        "comment",
    },
}
NO_PLACE = "Ferry has no place for it: not imported"
TEACHER_USED = {"sourcedId", "status", "dateLastModified", "givenName", "familyName"}
TEACHER_LOSS = "a teacher crosses only as the name on its courses"


@dataclass
class Mapped:
    records: dict[str, list[Record]] = field(default_factory=lambda: defaultdict(list))
    semesters: list[str] = field(default_factory=list)
    delta: bool = False
    since: dt.datetime | None = None
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    loss: LossReport = field(default_factory=lambda: LossReport("import"))


def year_level(codes: str) -> int:
    """The first CEDS grade of a `grades` list as a Ferry year level (KG: 0; else 0)."""
    for code in split_list(codes):
        if code.isdigit():
            return int(code)
    return 0


def _when(row: Row) -> dt.datetime | None:
    return parse_datetime(row.get("dateLastModified"))


def _modified(row: Row) -> dt.datetime | None:
    """`dateLastModified` of a row that passed validation: its value, when there is one,
    matched the validator's ISO 8601 pattern and parsed (ferry.oneroster.validate), so it is
    read without checking it again."""
    v = row.get("dateLastModified")
    return dt.datetime.fromisoformat(v) if v else None


def _stamps(row: Row, now: dt.datetime) -> dict[str, Any]:
    modified = _modified(row) or now
    out: dict[str, Any] = {"updated_at": modified}
    deleted = None
    if row.get("status") == "tobedeleted":
        exact = _ext(row, "deletedAt", "")
        deleted = (dt.datetime.fromisoformat(exact) if exact else None) or modified
    out["deleted_at"] = deleted
    return out


def _ext(row: Row, name: str, default: str) -> str:
    return row.value(X + name, default)


def map_package(pkg: Package, now: dt.datetime | None = None) -> Mapped:
    """The Ferry records of a package that passed validation; see the module docstring."""
    now = now or dt.datetime.now(dt.UTC)
    out = Mapped(now=now)
    loss = out.loss
    modes = {t: m for t, m in pkg.modes.items() if m != "absent"}
    out.delta = any(m == "delta" for m in modes.values())
    if out.delta:
        stamps = [d for rows in pkg.tables.values() for r in rows if (d := _when(r)) is not None]
        out.since = min(stamps) if stamps else now

    sessions = {r.get("sourcedId"): r for r in pkg.rows("academicSessions")}
    for r in sessions.values():
        if r.get("type") not in SEMESTER_TYPES:
            loss.add(
                "academicSessions",
                "",
                f"{r.get('sourcedId')} ({r.get('type')})",
                "only sessions of type term or semester become Ferry semesters",
            )
    # Who is what: roles.csv (1.2), the student role first.
    roles: dict[str, set[str]] = defaultdict(set)
    for r in pkg.rows("roles"):  # a tobedeleted user keeps its role: it is soft-deleted
        roles[r.get("userSourcedId")].add(r.get("role"))
    users = {r.get("sourcedId"): r for r in pkg.rows("users")}
    student_ids: dict[str, str] = {}
    for uid, u in users.items():
        if "student" in roles.get(uid, set()):
            student_ids[uid] = u.get("identifier") or uid
    for uid, u in users.items():
        if uid not in student_ids and "teacher" in roles.get(uid, set()):
            for col, v in u.values.items():
                if v and col not in TEACHER_USED and not col.startswith(X):
                    loss.add("users (teachers)", col, uid, TEACHER_LOSS)
        if uid not in student_ids and "teacher" not in roles.get(uid, set()):
            what = ", ".join(sorted(roles.get(uid, set()))) or "no role"
            loss.add("users", "", f"{uid} ({what})", "only students and teachers cross")
    birth = {r.get("sourcedId"): r.get("birthDate") or None for r in pkg.rows("demographics")}

    # Courses: one per class whose term is a term or a semester.
    codes: dict[str, str] = {}
    semester_of: dict[str, str] = {}
    # A class's teacher: its live enrollments first, the primary one first.
    teachers: dict[str, list[tuple[bool, bool, str]]] = defaultdict(list)
    for e in pkg.rows("enrollments"):
        if e.get("role") == "teacher":
            teacher = users.get(e.get("userSourcedId"))
            if teacher is not None:
                name = join_name(teacher.get("givenName"), teacher.get("familyName"))
                teachers[e.get("classSourcedId")].append(
                    (e.get("status") == "tobedeleted", e.get("primary") != "true", name)
                )
    for c in pkg.rows("classes"):
        cid = c.get("sourcedId")
        terms = [sessions[t] for t in split_list(c.get("termSourcedIds")) if t in sessions]
        term = next((t for t in terms if t.get("type") in SEMESTER_TYPES), None)
        if term is None:
            loss.add(
                "classes", "", cid, "no term or semester among its termSourcedIds: not imported"
            )
            continue
        code = c.get("classCode") or cid
        codes[cid] = code
        semester = _ext(term, "title", term.get("title"))
        semester_of[cid] = semester
        if semester not in out.semesters:
            out.semesters.append(semester)
        named = sorted(teachers.get(cid, []))
        out.records["courses"].append(
            {
                "course_code": code,
                "semester": semester,
                "title": _ext(c, "title", c.get("title")),
                "description": _ext(c, "description", ""),
                "credits": int(_ext(c, "credits", "0") or "0"),
                "teacher": named[0][2] if named else "",
                "status": _ext(c, "status", "active") or "active",
                "prerequisite_code": _ext(c, "prerequisiteCode", "") or None,
                **_stamps(c, now),
            }
        )
        if len(named) > 1:
            loss.add(
                "classes",
                "teachers",
                code,
                "Ferry keeps one teacher per course: the others are not imported",
            )

    for uid, sid in student_ids.items():
        u = users[uid]
        enabled = u.get("enabledUser") == "true"
        out.records["students"].append(
            {
                "student_id": sid,
                "first_name": _ext(u, "firstName", u.get("givenName")),
                "last_name": _ext(u, "lastName", u.get("familyName")),
                "email": u.get("email"),
                "date_of_birth": birth.get(uid),
                "year_level": int(_ext(u, "yearLevel", "") or year_level(u.get("grades"))),
                "status": _ext(u, "status", "") or ("active" if enabled else "inactive"),
                "mentor_student_id": _ext(u, "mentorStudentId", "") or None,
                **_stamps(u, now),
            }
        )

    for e in pkg.rows("enrollments"):
        role = e.get("role")
        if role == "teacher":
            continue
        uid, cid = e.get("userSourcedId"), e.get("classSourcedId")
        if role != "student" or uid not in student_ids:
            loss.add(
                "enrollments",
                "",
                f"{e.get('sourcedId')} ({role})",
                "only the enrollments of students cross",
            )
            continue
        if cid not in codes:
            loss.add("enrollments", "", e.get("sourcedId"), "its class was not imported")
            continue
        score = _ext(e, "finalScore", "")
        out.records["enrollments"].append(
            {
                "student_id": student_ids[uid],
                "course_code": codes[cid],
                "enrolled_on": e.get("beginDate") or None,
                "status": _ext(e, "status", "") or DEFAULT_ENROLLMENT_STATUS,
                "final_score": float(score) if score else None,
                **_stamps(e, now),
            }
        )

    weights = {r.get("sourcedId"): r.get("weight") for r in pkg.rows("categories")}
    # Per line item, once: its course code (None: its class was not imported), title,
    # top score and category weight, and the item itself (for the loss report).
    items = {
        r.get("sourcedId"): (
            codes.get(r.get("classSourcedId")),
            r.get("title"),
            r.get("resultValueMax"),
            weights.get(r.get("categorySourcedId")),
            r,
        )
        for r in pkg.rows("lineItems")
    }
    grades = out.records["grades"]
    results = pkg.rows("results")
    # Each column's position, looked up once: this loop runs once per result. A column
    # the file lacks is at -1 (the row's "" past its last cell); Ferry's own column, when
    # the file has it, is read even when empty.
    at = results[0].index if results else {}

    def pos(name: str, instead: str = "") -> int:
        return at.get(name, at.get(instead, -1) if instead else -1)

    i_sid, i_item, i_user = pos("sourcedId"), pos("lineItemSourcedId"), pos("studentSourcedId")
    i_score, i_top, i_weight = pos("score"), pos(X + "maxScore"), pos(X + "weight")
    i_graded, i_comment = pos(X + "gradedOn", "scoreDate"), pos("comment")
    i_modified, i_status, i_deleted = pos("dateLastModified"), pos("status"), pos(X + "deletedAt")
    parse = dt.datetime.fromisoformat
    for r in results:
        cells = r.cells
        rid = cells[i_sid]
        found = items.get(cells[i_item])
        uid = cells[i_user]
        if found is None or found[0] is None:
            loss.add("results", "", rid, "its line item or class was not imported")
            continue
        course, title, item_top, item_weight, item = found
        if uid not in student_ids:
            loss.add("results", "", rid, "its user is not a student")
            continue
        score = cells[i_score]
        if score == "":
            loss.add(
                "results",
                "",
                rid,
                f"no score (scoreStatus {r.get('scoreStatus')}): Ferry grades have one",
            )
            continue
        top = cells[i_top] or item_top
        if not top:
            loss.add("lineItems", "resultValueMax", item.get("sourcedId"), "missing: 100 assumed")
            top = "100"
        weight = cells[i_weight] or item_weight or "1"
        # As _stamps, inline: the dates passed validation, so they parse.
        modified = parse(v) if (v := cells[i_modified]) else now
        deleted = None
        if cells[i_status] == "tobedeleted":
            deleted = parse(exact) if (exact := cells[i_deleted]) else modified
        grades.append(
            {
                "student_id": student_ids[uid],
                "course_code": course,
                "assessment": title,
                "score": float(score),
                "max_score": float(top),
                "weight": float(weight),
                "graded_on": cells[i_graded] or None,
                "comment": cells[i_comment] or None,
                "updated_at": modified,
                "deleted_at": deleted,
            }
        )

    # Filled-in columns no mapping read, per table and column.
    for table, rows in pkg.tables.items():
        used = USED.get(table, set())
        if table not in USED:
            for row in rows:
                loss.add(table, "", row.get("sourcedId"), NO_PLACE)
            continue
        # The binding's columns of this table no mapping reads, looked up once per table.
        lost = [
            c.name for c in TABLES[table].columns if c.name not in used and not c.name.startswith(X)
        ]
        rows = pkg.rows(table)
        at = rows[0].index if rows else {}
        lists = [row.cells for row in rows]
        for name in lost:  # walked only when the file has the column and fills it
            i = at.get(name)
            if i is None or not any(map(itemgetter(i), lists)):
                continue
            for row in rows:
                if row.cells[i]:
                    loss.add(table, name, row.get("sourcedId"), NO_PLACE)
    return out
