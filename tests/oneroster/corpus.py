# ruff: noqa: E501  (CSV text is kept as the files hold it, one record a line)
"""A corpus of OneRoster 1.2 CSV packages written by hand from the binding's tables (not by
Ferry's writer), and the faults files from the wild carry."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

TABLES_IN = ("academicSessions", "orgs", "courses", "classes", "users", "roles", "enrollments",
             "demographics", "categories", "lineItems", "results")  # fmt: skip
ALL_TABLES = (*TABLES_IN, "classResources", "courseResources", "resources", "userResources",
              "userProfiles", "scoreScales", "lineItemScoreScales", "resultScoreScales",
              "lineItemLearningObjectiveIds", "resultLearningObjectiveIds")  # fmt: skip

T = "2026-08-20T10:00:00.000Z"

# A small school: one district-less school, a school year with two semesters and a
# grading period, two courses with a class each in the fall, two students, a teacher,
# a guardian, a gradebook with categories.
CLEAN: dict[str, str] = {
    "academicSessions.csv": f"""sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear
as-y,active,{T},2026-2027,schoolYear,2026-09-01,2027-06-30,,2027
as-f,active,{T},2026-fall,semester,2026-09-01,2027-01-31,as-y,2027
as-s,active,{T},2027-spring,term,2027-02-01,2027-06-30,as-y,2027
as-gp,active,{T},Q1,gradingPeriod,2026-09-01,2026-11-15,as-f,2027
""",
    "orgs.csv": f"""sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId
org-1,active,{T},Lykeio Kifisias,school,LK-01,
""",
    "courses.csv": f"""sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes
c-math,active,{T},as-y,Mathematics,MATH,"10,11",org-1,Mathematics,
c-hist,active,{T},as-y,History,HIST,10,org-1,History,
""",
    "classes.csv": f"""sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods
k-math,active,{T},Mathematics A,10,c-math,MATH-A-2026F,scheduled,Room 4,org-1,"as-f,as-gp",Mathematics,,1
k-hist,active,{T},History A,10,c-hist,HIST-A-2026F,scheduled,Room 2,org-1,as-f,History,,2
""",
    "users.csv": f"""sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,resourceSourcedIds,preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns
u-s1,active,{T},true,eleni,,Eleni,Papadaki,,S1001,eleni@example.org,,,u-g1,10,,,,,,,org-1,
u-s2,active,{T},false,nikos,,Nikos,Georgiou,Andreas,S1002,nikos@example.org,,555-0101,,11,,,,,,,org-1,
u-t1,active,{T},true,mkosta,,Maria,Kosta,,T-77,mkosta@example.org,,,,,,,,,,,org-1,
u-g1,active,{T},true,parent1,,Anna,Papadaki,,,anna@example.org,,,,,,,,,,,org-1,
""",
    "roles.csv": f"""sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId
r-s1,active,{T},u-s1,primary,student,,,org-1,
r-s2,active,{T},u-s2,primary,student,,,org-1,
r-t1,active,{T},u-t1,primary,teacher,,,org-1,
r-g1,active,{T},u-g1,primary,guardian,,,org-1,
""",
    "enrollments.csv": f"""sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate
e-1,active,{T},k-math,org-1,u-s1,student,false,2026-09-01,
e-2,active,{T},k-math,org-1,u-s2,student,false,2026-09-03,
e-3,active,{T},k-hist,org-1,u-s1,student,false,,
e-4,active,{T},k-math,org-1,u-t1,teacher,true,,
""",
    "demographics.csv": f"""sourcedId,status,dateLastModified,birthDate,sex
u-s1,active,{T},2010-04-02,female
""",
    "categories.csv": f"""sourcedId,status,dateLastModified,title,weight
cat-exam,active,{T},Exams,0.6
cat-hw,active,{T},Homework,0.4
""",
    "lineItems.csv": f"""sourcedId,status,dateLastModified,title,description,assignDate,dueDate,classSourcedId,categorySourcedId,gradingPeriodSourcedId,resultValueMin,resultValueMax
li-1,active,{T},Midterm,,2026-10-20,2026-10-20,k-math,cat-exam,as-gp,0,20
li-2,active,{T},Essay 1,,2026-10-01,2026-10-08,k-hist,cat-hw,as-gp,0,100
""",
    "results.csv": f"""sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,scoreStatus,score,scoreDate,comment
res-1,active,{T},li-1,u-s1,fully graded,17.5,2026-10-21,Well done
res-2,active,{T},li-1,u-s2,fully graded,12,2026-10-21,
res-3,active,{T},li-2,u-s1,fully graded,88,2026-10-09,
""",
}


def manifest(
    modes: Mapping[str, str] | None = None, present: Mapping[str, str] | None = None
) -> str:
    """manifest.csv marking the tables of `present` bulk (or as `modes` says)."""
    modes = dict(modes or {})
    names = {n.removesuffix(".csv") for n in (present or CLEAN)}
    lines = ["propertyName,value", "manifest.version,1.0", "oneroster.version,1.2"]
    for t in ALL_TABLES:
        lines.append(f"file.{t},{modes.get(t, 'bulk' if t in names else 'absent')}")
    lines += ["source.systemName,Hand written", "source.systemCode,test"]
    return "\n".join(lines) + "\n"


def package(
    files: Mapping[str, str | bytes] | None = None,
    *,
    modes: Mapping[str, str] | None = None,
    drop: tuple[str, ...] = (),
    extra: Mapping[str, str | bytes] | None = None,
    manifest_text: str | None = None,
) -> bytes:
    """A zip of CLEAN with `files` replacing (or adding) members, `drop` removed, the
    manifest derived from what is there (unless given), then `extra` added unlisted."""
    members: dict[str, str | bytes] = {**CLEAN, **(files or {})}
    for name in drop:
        members.pop(name, None)
    text = manifest_text if manifest_text is not None else manifest(modes, members)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.csv", text)
        for name, data in {**members, **(extra or {})}.items():
            zf.writestr(name, data)
    return buf.getvalue()


def replace_row(file: str, old: str, new: str) -> dict[str, str]:
    """CLEAN's `file` with the text `old` replaced by `new` (exactly once)."""
    text = CLEAN[file]
    assert text.count(old) == 1, (file, old)
    return {file: text.replace(old, new)}
