"""Ferry -> OneRoster 1.2 CSV: a semester's bundle events become a package zip.

Every sourcedId is a UUID (version 5) of the record's kind and Ferry natural key, so the
same record gets the same sourcedId in every export, from every installation. Ferry fields
that OneRoster has no column for travel in the binding's extension columns
(`metadata.ferry.*`), which other systems ignore; the loss report names them, and the
entities that do not cross at all (attendance, daily performance, highlights).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import IO, Any

from ferry.bundle.formats.base import Batch, Event, Header, RawBatch, Record
from ferry.datasets.school import SCHOOL
from ferry.oneroster.loss import LossReport
from ferry.oneroster.spec import MANIFEST, MANIFEST_VERSION, ONEROSTER_VERSION, TABLES

NAMESPACE = uuid.UUID("5f0c1c52-7f55-4a53-9e0e-0b9f6c1c2f28")  # Ferry's, fixed forever
X = "metadata.ferry."  # Ferry's extension columns
NOT_CROSSING = ("attendance", "daily_performance", "highlights")
NO_DATES = "Ferry has no semester dates: written as the first and last enrolment or grade date"
EXTENSION = (
    "no OneRoster column: kept only in a metadata.ferry.* column, which other systems ignore"
)
ENABLED = (
    "OneRoster's enabledUser is only true or false: "
    "the status itself is kept only in metadata.ferry.status"
)
NO_GRADE = "not a CEDS grade level: kept only in metadata.ferry.yearLevel"
MAX_SCORE = "differs from its line item's resultValueMax: kept only in metadata.ferry.maxScore"
WEIGHT = "differs from its line item's category weight: kept only in metadata.ferry.weight"
NO_DAY = "no date in Ferry: scoreDate is the line item's date"
CREATED = "OneRoster has no creation time (dateLastModified carries updated_at)"
OUT_TABLES = (
    "academicSessions",
    "orgs",
    "courses",
    "classes",
    "users",
    "roles",
    "enrollments",
    "demographics",
    "categories",
    "lineItems",
    "results",
)


def sourced_id(kind: str, *key: Any) -> str:
    """The stable sourcedId of a Ferry record of `kind` with natural key `key`."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join([kind, *(str(k) for k in key)])))


def grade_code(year_level: int) -> str:
    """Ferry's year level as a CEDS grade ("01".."13"; 0 is kindergarten), or ""."""
    if year_level == 0:
        return "KG"
    if 1 <= year_level <= 13:
        return f"{year_level:02d}"
    return ""


def _stamp(value: Any) -> str:
    if isinstance(value, dt.datetime):
        v = value.astimezone(dt.UTC)
        return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
    if isinstance(value, str) and value:
        return _stamp(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    return ""


def _num(value: Any) -> str:
    if value is None:
        return ""
    return repr(float(value))


def _filled(value: str, fallback: str) -> str:
    """`value`, or `fallback` where OneRoster requires a value and Ferry has only blanks
    (the exact value travels in a metadata.ferry.* column)."""
    return value if value.strip() else fallback


def _deleted(rec: Record) -> str:
    """The exact soft-delete instant (status tobedeleted says only that it is deleted)."""
    when = rec.get("deleted_at")
    if isinstance(when, str) and when:
        when = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
    return when.astimezone(dt.UTC).isoformat() if isinstance(when, dt.datetime) else ""


def _status(rec: Record) -> str:
    return "tobedeleted" if rec.get("deleted_at") else "active"


def split_name(name: str) -> tuple[str, str]:
    """A teacher's name as (givenName, familyName): split at the last space; a one-word
    name fills both (join_name gives it back)."""
    given, _, family = name.strip().rpartition(" ")
    return (given, family) if given else (family, family)


def join_name(given: str, family: str) -> str:
    if given == family:
        return given
    return f"{given} {family}".strip()


class Tables:
    """Rows per OneRoster table (dicts keyed by column name), column order kept."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.extra: dict[str, list[str]] = defaultdict(list)

    def add(self, table: str, row: dict[str, str]) -> None:
        for k in row:
            if k.startswith("metadata.") and k not in self.extra[table]:
                self.extra[table].append(k)
        self.rows[table].append(row)

    def columns(self, table: str) -> list[str]:
        return [c.name for c in TABLES[table].columns] + self.extra[table]


def build(events: Iterable[Event]) -> tuple[Tables, dict[str, str], LossReport]:
    """The OneRoster tables for a bundle's events, the manifest and the loss report."""
    header: Header | None = None
    records: dict[str, list[Record]] = defaultdict(list)
    for event in events:
        if isinstance(event, Header):
            header = event
        elif isinstance(event, Batch):
            records[event.entity].extend(event.records)
        elif isinstance(event, RawBatch):
            records[event.entity].extend(event.records())
    semester = header.metadata.semester if header is not None else ""
    dataset = (header.metadata.dataset if header is not None else "") or "school"
    exported = (
        header.metadata.exported_at.ToDatetime(dt.UTC)
        if header is not None and header.metadata.HasField("exported_at")
        else dt.datetime.now(dt.UTC)
    )
    loss = LossReport("export")
    t = Tables()
    org = sourced_id("org", dataset)
    t.add(
        "orgs",
        {
            "sourcedId": org,
            "status": "active",
            "dateLastModified": _stamp(exported),
            "name": dataset,
            "type": "school",
            "identifier": dataset,
        },
    )

    # Sessions: one per semester named by a course (the bundle's own first).
    dates: dict[str, list[str]] = defaultdict(list)
    course_sem = {c["course_code"]: c.get("semester", semester) for c in records["courses"]}
    for e in records["enrollments"]:
        if e.get("enrolled_on"):
            dates[course_sem.get(e["course_code"], semester)].append(e["enrolled_on"])
    for g in records["grades"]:
        if g.get("graded_on"):
            dates[course_sem.get(g["course_code"], semester)].append(g["graded_on"])
    semesters = list(dict.fromkeys(([semester] if semester else []) + list(course_sem.values())))
    session_start: dict[str, str] = {}
    for s in semesters:
        seen = sorted(dates.get(s, [])) or [exported.date().isoformat()]
        session_start[s] = seen[0]
        t.add(
            "academicSessions",
            {
                "sourcedId": sourced_id("semester", s),
                "status": "active",
                "dateLastModified": _stamp(exported),
                "title": _filled(s, "-"),
                X + "title": s,
                "type": "semester",
                "startDate": seen[0],
                "endDate": seen[-1],
                "schoolYear": seen[-1][:4],
            },
        )
    loss_dates = "academicSessions"
    if semesters:
        loss.add(loss_dates, "startDate/endDate", semesters[0], NO_DATES)

    # Courses: a OneRoster course and its one class per Ferry course.
    teachers: dict[str, str] = {}
    for c in records["courses"]:
        code = c["course_code"]
        cid = sourced_id("course", code)
        t.add(
            "courses",
            {
                "sourcedId": cid,
                "status": _status(c),
                "dateLastModified": _stamp(c.get("updated_at")),
                "title": _filled(c["title"], code),
                "courseCode": code,
                "orgSourcedId": org,
            },
        )
        t.add(
            "classes",
            {
                "sourcedId": sourced_id("class", code),
                "status": _status(c),
                X + "deletedAt": _deleted(c),
                "dateLastModified": _stamp(c.get("updated_at")),
                "title": _filled(c["title"], code),
                "courseSourcedId": cid,
                "classCode": code,
                "classType": "scheduled",
                "schoolSourcedId": org,
                "termSourcedIds": sourced_id("semester", course_sem[code]),
                X + "title": c["title"],
                X + "description": c.get("description") or "",
                X + "credits": str(c.get("credits", 0)),
                X + "status": c.get("status") or "",
                X + "prerequisiteCode": c.get("prerequisite_code") or "",
            },
        )
        for f in ("description", "credits", "status", "prerequisite_code"):
            if c.get(f) not in (None, ""):
                loss.add("courses", f, code, EXTENSION)
        if (c.get("teacher") or "").strip():
            teachers.setdefault(c["teacher"], c.get("updated_at") or "")
        elif c.get("teacher"):
            loss.add("courses", "teacher", code, "a blank name: no OneRoster user")

    for name in sorted(teachers):
        uid = sourced_id("teacher", name)
        given, family = split_name(name)
        t.add(
            "users",
            {
                "sourcedId": uid,
                "status": "active",
                "dateLastModified": _stamp(exported),
                "enabledUser": "true",
                "username": name,
                "givenName": given,
                "familyName": family,
                "primaryOrgSourcedId": org,
            },
        )
        t.add(
            "roles",
            {
                "sourcedId": sourced_id("role", uid),
                "status": "active",
                "dateLastModified": _stamp(exported),
                "userSourcedId": uid,
                "roleType": "primary",
                "role": "teacher",
                "orgSourcedId": org,
            },
        )
    for c in records["courses"]:
        if (c.get("teacher") or "").strip():
            t.add(
                "enrollments",
                {
                    "sourcedId": sourced_id("teaching", c["teacher"], c["course_code"]),
                    "status": _status(c),
                    "dateLastModified": _stamp(c.get("updated_at")),
                    "classSourcedId": sourced_id("class", c["course_code"]),
                    "schoolSourcedId": org,
                    "userSourcedId": sourced_id("teacher", c["teacher"]),
                    "role": "teacher",
                    "primary": "true",
                },
            )

    for st in records["students"]:
        sid = st["student_id"]
        uid = sourced_id("student", sid)
        row = {
            "sourcedId": uid,
            "status": _status(st),
            X + "deletedAt": _deleted(st),
            "dateLastModified": _stamp(st.get("updated_at")),
            "enabledUser": "true" if st.get("status") == "active" else "false",
            "username": _filled(st.get("email") or "", sid),
            "givenName": _filled(st["first_name"], "-"),
            "familyName": _filled(st["last_name"], "-"),
            "identifier": sid,
            "email": st.get("email") or "",
            "grades": grade_code(int(st.get("year_level") or 0)),
            "primaryOrgSourcedId": org,
            X + "firstName": st["first_name"],
            X + "lastName": st["last_name"],
            X + "yearLevel": str(st.get("year_level", 0)),
            X + "status": st.get("status") or "",
            X + "mentorStudentId": st.get("mentor_student_id") or "",
        }
        t.add("users", row)
        t.add(
            "roles",
            {
                "sourcedId": sourced_id("role", uid),
                "status": _status(st),
                "dateLastModified": _stamp(st.get("updated_at")),
                "userSourcedId": uid,
                "roleType": "primary",
                "role": "student",
                "orgSourcedId": org,
            },
        )
        if st.get("date_of_birth"):
            t.add(
                "demographics",
                {
                    "sourcedId": uid,
                    "status": _status(st),
                    "dateLastModified": _stamp(st.get("updated_at")),
                    "birthDate": st["date_of_birth"],
                },
            )
        if st.get("status") not in ("active", "inactive"):
            loss.add("students", "status", sid, ENABLED)
        if st.get("mentor_student_id"):
            loss.add("students", "mentor_student_id", sid, EXTENSION)
        if not grade_code(int(st.get("year_level") or 0)):
            loss.add("students", "year_level", sid, NO_GRADE)

    for e in records["enrollments"]:
        key = f"{e['student_id']}/{e['course_code']}"
        t.add(
            "enrollments",
            {
                "sourcedId": sourced_id("enrollment", e["student_id"], e["course_code"]),
                "status": _status(e),
                X + "deletedAt": _deleted(e),
                "dateLastModified": _stamp(e.get("updated_at")),
                "classSourcedId": sourced_id("class", e["course_code"]),
                "schoolSourcedId": org,
                "userSourcedId": sourced_id("student", e["student_id"]),
                "role": "student",
                "primary": "false",
                "beginDate": e.get("enrolled_on") or "",
                X + "status": e.get("status") or "",
                X + "finalScore": _num(e.get("final_score")),
            },
        )
        for f in ("status", "final_score"):
            if e.get(f) not in (None, ""):
                loss.add("enrollments", f, key, EXTENSION)

    # Gradebook: a category per weight, a line item per course and assessment, a result
    # per grade. A line item holds one max score and one category: the most common among
    # its live grades (a soft-deleted grade is a tobedeleted result, never the reason for a
    # line item or a category). A line item with no live grade in the package is written
    # tobedeleted in a bulk package (the whole state: it has none left); a delta leaves it
    # out, since live grades it does not carry may still hold it.
    delta = header is not None and header.updated_since is not None
    by_item: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for g in records["grades"]:
        by_item[(g["course_code"], g["assessment"])].append(g)
    weights: dict[float, str] = {}
    for (code, assessment), grades in by_item.items():
        live = [g for g in grades if not g.get("deleted_at")]
        basis = live or grades
        weight = Counter(float(g["weight"]) for g in basis).most_common(1)[0][0]
        top = Counter(float(g["max_score"]) for g in basis).most_common(1)[0][0]
        if weight not in weights and (live or not delta):
            weights[weight] = sourced_id("weight", repr(weight))
            t.add(
                "categories",
                {
                    "sourcedId": weights[weight],
                    "status": "active",
                    "dateLastModified": _stamp(exported),
                    "title": f"Weight {weight:g}",
                    "weight": repr(weight),
                },
            )
        days = sorted(g["graded_on"] for g in basis if g.get("graded_on"))
        day = (
            days[0]
            if days
            else session_start.get(course_sem.get(code, semester), exported.date().isoformat())
        )
        item = sourced_id("lineitem", code, assessment)
        if live or not delta:
            t.add(
                "lineItems",
                {
                    "sourcedId": item,
                    "status": "active" if live else "tobedeleted",
                    "dateLastModified": _stamp(exported),
                    "title": _filled(assessment, "-"),
                    "assignDate": day,
                    "dueDate": days[-1] if days else day,
                    "classSourcedId": sourced_id("class", code),
                    "categorySourcedId": weights[weight],
                    "academicSessionSourcedId": sourced_id(
                        "semester", course_sem.get(code, semester)
                    ),
                    "resultValueMin": "0.0",
                    "resultValueMax": repr(top),
                },
            )
        for g in grades:
            key = f"{g['student_id']}/{code}/{assessment}"
            t.add(
                "results",
                {
                    "sourcedId": sourced_id("result", g["student_id"], code, assessment),
                    "status": _status(g),
                    X + "deletedAt": _deleted(g),
                    "dateLastModified": _stamp(g.get("updated_at")),
                    "lineItemSourcedId": item,
                    "studentSourcedId": sourced_id("student", g["student_id"]),
                    "classSourcedId": sourced_id("class", code),
                    "scoreStatus": "fully graded",
                    "score": repr(float(g["score"])),
                    "scoreDate": g.get("graded_on") or day,
                    "comment": g.get("comment") or "",
                    X + "maxScore": repr(float(g["max_score"])),
                    X + "weight": repr(float(g["weight"])),
                    X + "gradedOn": g.get("graded_on") or "",
                },
            )
            if float(g["max_score"]) != top:
                loss.add("grades", "max_score", key, MAX_SCORE)
            if float(g["weight"]) != weight:
                loss.add("grades", "weight", key, WEIGHT)
            if not g.get("graded_on"):
                loss.add("grades", "graded_on", key, NO_DAY)

    for entity in NOT_CROSSING:
        for r in records.get(entity, []):
            loss.add(entity, "", _key(entity, r), "OneRoster has no such records: not exported")
    for entity in ("courses", "students", "enrollments", "grades"):
        for r in records.get(entity, []):
            if r.get("created_at"):
                loss.add(entity, "created_at", _key(entity, r), CREATED)
    manifest = {
        "manifest.version": MANIFEST_VERSION,
        "oneroster.version": ONEROSTER_VERSION,
        **{f"file.{name}": ("bulk" if name in OUT_TABLES else "absent") for name in TABLES},
        "source.systemName": "Ferry",
        "source.systemCode": dataset,
    }
    if header is not None and header.updated_since is not None:
        for name in OUT_TABLES:
            manifest[f"file.{name}"] = "delta"
        _retire_renamed(t, header, records)
    return t, manifest, loss


# What a renamed key is written in: the records that carry it (ferry.merge.renames renames
# students and courses only).
_KEY_FIELDS = {"students": "student_id", "courses": "course_code"}
_CARRIERS = {
    "students": ("students", "enrollments", "grades"),
    "courses": ("courses", "enrollments", "grades"),
}


def _retire_renamed(t: Tables, header: Header, records: dict[str, list[Record]]) -> None:
    """A delta package retires the sourcedIds of the keys renamed since its instant.

    A sourcedId is made of a natural key, so a renamed student or course is a new
    sourcedId; a system applying the delta would keep the old one beside it (a duplicate)
    unless the package says it is gone. So the rows the record and everything under it
    had under the old key are written again with their old sourcedIds, status
    `tobedeleted`, dated at the rename. Rows whose sourcedId did not change (a teacher, a
    session) are not repeated. A bulk package needs none of this: it is the whole state.
    """
    renames = [r for r in header.metadata.renames if r.entity in _KEY_FIELDS]
    if not renames:
        return
    final: dict[tuple[str, str], str] = {}  # (entity, an old key) -> the key it has now
    for r in renames:  # oldest first: A -> B then B -> C leaves A and B both as C
        for (entity, old), new in list(final.items()):
            if entity == r.entity and new == r.old_key:
                final[(entity, old)] = r.new_key
        final[(r.entity, r.old_key)] = r.new_key
    stamps = {(r.entity, r.old_key): r.renamed_at.ToDatetime(dt.UTC) for r in renames}
    written = {name: {row["sourcedId"] for row in t.rows[name]} for name in OUT_TABLES}
    for (entity, old), now in final.items():
        if old == now:  # renamed away and back: the same sourcedIds are live again
            continue
        key = _KEY_FIELDS[entity]
        empty = Header(type(header.metadata)(dataset=header.metadata.dataset))
        was: list[Event] = [empty]
        held: list[Event] = [empty]
        for carrier in _CARRIERS[entity]:
            rows = [rec for rec in records[carrier] if rec.get(key) == now]
            if rows:
                held.append(Batch(carrier, rows))
                was.append(Batch(carrier, [{**rec, key: old} for rec in rows]))
        # The same rows built under both keys: what differs is made of the key (a user,
        # its role, enrollments, results; not a teacher, a session or a category).
        gone, _, _ = build(was)
        kept, _, _ = build(held)
        when = stamps[(entity, old)]
        for name in OUT_TABLES:
            same = {row["sourcedId"] for row in kept.rows[name]}
            for row in gone.rows[name]:
                if row["sourcedId"] in same or row["sourcedId"] in written[name]:
                    continue
                written[name].add(row["sourcedId"])
                retired = {**row, "status": "tobedeleted", "dateLastModified": _stamp(when)}
                if X + "deletedAt" in row:
                    retired[X + "deletedAt"] = when.isoformat()
                t.add(name, retired)


def _key(entity: str, r: Record) -> str:
    return "/".join(str(r.get(k, "")) for k in SCHOOL.entity(entity).natural_key)


def _csv(columns: list[str], rows: Iterable[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([row.get(c, "") for c in columns])
    return buf.getvalue().encode("utf-8")


def write_zip(tables: Tables, manifest: dict[str, str], out: IO[bytes]) -> None:
    """The package: manifest.csv, then every table the manifest marks bulk or delta (a
    table with no rows is written with its header only)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            _info(MANIFEST),
            _csv(
                ["propertyName", "value"],
                ({"propertyName": k, "value": v} for k, v in manifest.items()),
            ),
        )
        for name in OUT_TABLES:
            if manifest.get(f"file.{name}") in ("bulk", "delta"):
                zf.writestr(_info(f"{name}.csv"), _csv(tables.columns(name), tables.rows[name]))


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # same bytes every time
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info
