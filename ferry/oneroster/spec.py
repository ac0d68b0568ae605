"""The OneRoster 1.2 CSV binding, as data: its files, their columns, the enumerations.

Written from 1EdTech's OneRoster v1.2 CSV Tables specification (not from Ferry's writer),
and cross-checked against a public implementation of the binding (docs/oneroster.md says
which, and what that check changed):
a OneRoster CSV package is a zip holding `manifest.csv` and one file per table; the
manifest marks each table `bulk`, `delta` or `absent`. Every table starts with
`sourcedId`, `status`, `dateLastModified`; `status` and `dateLastModified` must be filled
in a delta file and may be blank in a bulk file. Columns named `metadata.<anything>` are
the binding's extension mechanism and are allowed in every table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Type(StrEnum):
    ID = "id"  # a sourcedId (a reference when `ref` is set)
    IDS = "ids"  # a comma-separated list of sourcedIds
    STR = "str"
    ENUM = "enum"
    ENUMS = "enums"  # a comma-separated list of enumeration values
    DATE = "date"  # ISO 8601 calendar date, YYYY-MM-DD
    DATETIME = "datetime"  # ISO 8601 date and time, e.g. 2026-09-01T08:00:00.000Z
    FLOAT = "float"
    INT = "int"  # an integer (Ferry's extension columns)
    BOOL = "bool"  # true | false
    YEAR = "year"  # a four-digit year


@dataclass(frozen=True)
class Column:
    name: str
    type: Type = Type.STR
    required: bool = False  # the header must be present and every row must fill it
    enum: tuple[str, ...] = ()
    ref: str = ""  # the table a sourcedId (or each of a list) must name
    # The binding lets some enumerations carry values of one's own, `ext:` + name
    # (EXTENSION_ENUM); `status` and `roleType` are closed.
    extensible: bool = False


@dataclass(frozen=True)
class Table:
    name: str  # "users": the file is users.csv, the manifest property file.users
    columns: tuple[Column, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


STATUS = ("active", "tobedeleted")
# An extension value of an extensible enumeration: `ext:` then letters, digits, . - _
EXTENSION_ENUM = r"ext:[A-Za-z0-9._\-]+"
MODES = ("bulk", "delta", "absent")
ORG_TYPES = ("department", "school", "district", "local", "state", "national")
SESSION_TYPES = ("gradingPeriod", "semester", "schoolYear", "term")
ROLES = (
    "aide",
    "counselor",
    "districtAdministrator",
    "guardian",
    "parent",
    "principal",
    "proctor",
    "relative",
    "siteAdministrator",
    "student",
    "systemAdministrator",
    "teacher",
)
ENROLLMENT_ROLES = ("administrator", "proctor", "student", "teacher")
ROLE_TYPES = ("primary", "secondary")
CLASS_TYPES = ("homeroom", "scheduled")
SCORE_STATUSES = (
    "exempt",
    "fully graded",
    "not submitted",
    "partially graded",
    "submitted",
)
SEXES = ("male", "female", "unspecified", "other")
# CEDS grade levels (the `grades` lists of users, courses and classes).
GRADES = (
    "IT", "PR", "PK", "TK", "KG",
    "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13",
    "PS", "UG", "Other",
)  # fmt: skip

_BASE = (
    Column("sourcedId", Type.ID, required=True),
    Column("status", Type.ENUM, enum=STATUS),
    Column("dateLastModified", Type.DATETIME),
)


def _t(name: str, *columns: Column) -> Table:
    return Table(name, _BASE + columns)


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        _t(
            "academicSessions",
            Column("title", required=True),
            Column("type", Type.ENUM, required=True, enum=SESSION_TYPES, extensible=True),
            Column("startDate", Type.DATE, required=True),
            Column("endDate", Type.DATE, required=True),
            Column("parentSourcedId", Type.ID, ref="academicSessions"),
            Column("schoolYear", Type.YEAR, required=True),
        ),
        _t(
            "orgs",
            Column("name", required=True),
            Column("type", Type.ENUM, required=True, enum=ORG_TYPES, extensible=True),
            Column("identifier"),
            Column("parentSourcedId", Type.ID, ref="orgs"),
        ),
        _t(
            "courses",
            Column("schoolYearSourcedId", Type.ID, ref="academicSessions"),
            Column("title", required=True),
            Column("courseCode"),
            Column("grades", Type.ENUMS, enum=GRADES),
            Column("orgSourcedId", Type.ID, required=True, ref="orgs"),
            Column("subjects"),
            Column("subjectCodes"),
        ),
        _t(
            "classes",
            Column("title", required=True),
            Column("grades", Type.ENUMS, enum=GRADES),
            Column("courseSourcedId", Type.ID, required=True, ref="courses"),
            Column("classCode"),
            Column("classType", Type.ENUM, required=True, enum=CLASS_TYPES, extensible=True),
            Column("location"),
            Column("schoolSourcedId", Type.ID, required=True, ref="orgs"),
            Column("termSourcedIds", Type.IDS, required=True, ref="academicSessions"),
            Column("subjects"),
            Column("subjectCodes"),
            Column("periods"),
        ),
        _t(
            "users",
            Column("enabledUser", Type.BOOL, required=True),
            Column("username", required=True),
            Column("userIds"),
            Column("givenName", required=True),
            Column("familyName", required=True),
            Column("middleName"),
            Column("identifier"),
            Column("email"),
            Column("sms"),
            Column("phone"),
            Column("agentSourcedIds", Type.IDS, ref="users"),
            Column("grades", Type.ENUMS, enum=GRADES),
            Column("password"),
            Column("userMasterIdentifier"),
            Column("resourceSourcedIds", Type.IDS),
            Column("preferredGivenName"),
            Column("preferredMiddleName"),
            Column("preferredFamilyName"),
            Column("primaryOrgSourcedId", Type.ID, ref="orgs"),
            Column("pronouns"),
        ),
        _t(
            "roles",
            Column("userSourcedId", Type.ID, required=True, ref="users"),
            Column("roleType", Type.ENUM, required=True, enum=ROLE_TYPES),
            Column("role", Type.ENUM, required=True, enum=ROLES, extensible=True),
            Column("beginDate", Type.DATE),
            Column("endDate", Type.DATE),
            Column("orgSourcedId", Type.ID, required=True, ref="orgs"),
            Column("userProfileSourcedId", Type.ID),
        ),
        _t(
            "enrollments",
            Column("classSourcedId", Type.ID, required=True, ref="classes"),
            Column("schoolSourcedId", Type.ID, required=True, ref="orgs"),
            Column("userSourcedId", Type.ID, required=True, ref="users"),
            Column("role", Type.ENUM, required=True, enum=ENROLLMENT_ROLES, extensible=True),
            Column("primary", Type.BOOL),
            Column("beginDate", Type.DATE),
            Column("endDate", Type.DATE),
        ),
        _t(
            "demographics",
            Column("birthDate", Type.DATE),
            Column("sex", Type.ENUM, enum=SEXES, extensible=True),
            Column("americanIndianOrAlaskaNative", Type.BOOL),
            Column("asian", Type.BOOL),
            Column("blackOrAfricanAmerican", Type.BOOL),
            Column("nativeHawaiianOrOtherPacificIslander", Type.BOOL),
            Column("white", Type.BOOL),
            Column("demographicRaceTwoOrMoreRaces", Type.BOOL),
            Column("hispanicOrLatinoEthnicity", Type.BOOL),
            Column("countryOfBirthCode"),
            Column("stateOfBirthAbbreviation"),
            Column("cityOfBirth"),
            Column("publicSchoolResidenceStatus"),
        ),
        _t(
            "categories",
            Column("title", required=True),
            Column("weight", Type.FLOAT),
        ),
        _t(
            "lineItems",
            Column("title", required=True),
            Column("description"),
            Column("assignDate", Type.DATE, required=True),
            Column("dueDate", Type.DATE, required=True),
            Column("classSourcedId", Type.ID, required=True, ref="classes"),
            Column("categorySourcedId", Type.ID, required=True, ref="categories"),
            Column("gradingPeriodSourcedId", Type.ID, ref="academicSessions"),
            Column("academicSessionSourcedId", Type.ID, ref="academicSessions"),
            Column("scoreScaleSourcedId", Type.ID),
            Column("resultValueMin", Type.FLOAT),
            Column("resultValueMax", Type.FLOAT),
            Column("schoolSourcedId", Type.ID, ref="orgs"),
        ),
        _t(
            "results",
            Column("lineItemSourcedId", Type.ID, required=True, ref="lineItems"),
            Column("studentSourcedId", Type.ID, required=True, ref="users"),
            Column("classSourcedId", Type.ID, ref="classes"),
            Column("scoreScaleSourcedId", Type.ID),
            Column("scoreStatus", Type.ENUM, required=True, enum=SCORE_STATUSES),
            Column("score", Type.FLOAT),
            Column("textScore"),
            Column("scoreDate", Type.DATE, required=True),
            Column("comment"),
            Column("learningObjectiveSetSourcedIds"),
            Column("inProgress", Type.BOOL),
            Column("incomplete", Type.BOOL),
            Column("late", Type.BOOL),
            Column("missing", Type.BOOL),
        ),
    )
}

# Tables of the 1.2 binding Ferry knows by name but does not read (resources, score
# scales, learning objectives, user profiles): present ones are validated for shape
# only (a readable CSV with a sourcedId column) and reported as not crossing.
OTHER_TABLES = (
    "classResources",
    "courseResources",
    "resources",
    "userResources",
    "userProfiles",
    "scoreScales",
    "lineItemScoreScales",
    "resultScoreScales",
    "lineItemLearningObjectiveIds",
    "resultLearningObjectiveIds",
)

MANIFEST = "manifest.csv"
MANIFEST_VERSION = "1.0"
ONEROSTER_VERSION = "1.2"  # what Ferry writes
# What Ferry reads: 1.2 and its 1.2.1 revision (the CSV Binding 1.2.1, August 2023), whose
# writers put "1.2.1" in the manifest.
ONEROSTER_VERSIONS = ("1.2", "1.2.1")
EXTENSION_PREFIX = "metadata."

# Ferry's own extension columns (a package Ferry wrote) that carry typed values: checked
# like the binding's columns, so a hand-edited one is a refusal, not a crash.
FERRY = EXTENSION_PREFIX + "ferry."
FERRY_COLUMNS: dict[str, tuple[Column, ...]] = {
    "classes": (Column(FERRY + "credits", Type.INT), Column(FERRY + "deletedAt", Type.DATETIME)),
    "users": (Column(FERRY + "yearLevel", Type.INT), Column(FERRY + "deletedAt", Type.DATETIME)),
    "enrollments": (
        Column(FERRY + "finalScore", Type.FLOAT),
        Column(FERRY + "deletedAt", Type.DATETIME),
    ),
    "results": (
        Column(FERRY + "maxScore", Type.FLOAT),
        Column(FERRY + "weight", Type.FLOAT),
        Column(FERRY + "gradedOn", Type.DATE),
        Column(FERRY + "deletedAt", Type.DATETIME),
    ),
}
