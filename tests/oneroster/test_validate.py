"""The validator, written from the OneRoster 1.2 CSV binding, against a hand-written
package and the faults real files carry: every refusal names file, row, column and rule;
unknown optional columns are warnings; bad zips are clear errors."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.bundle.formats.base import REFUSED, BundleLimits, Header
from ferry.errors import FerryError, InvalidArgument, ResourceExhausted
from ferry.oneroster.format import OneRosterBundle
from ferry.oneroster.importing import map_package
from ferry.oneroster.validate import Limits, Package, read_package
from tests.oneroster.corpus import CLEAN, T, manifest, package, replace_row


def read(data: bytes, limits: Limits | None = None) -> Package:
    return read_package(io.BytesIO(data), limits)


def errors(data: bytes) -> list[str]:
    """The refusals themselves (without the rows refused because they stand on them)."""
    return [str(p) for p in read(data).errors if p.rule != "refused-parent"]


def test_the_hand_written_package_is_valid() -> None:
    pkg = read(package())
    assert pkg.errors == [] and pkg.warnings == []
    assert pkg.modes["users"] == "bulk" and pkg.modes["resources"] == "absent"
    assert [r.get("sourcedId") for r in pkg.rows("users")] == ["u-s1", "u-s2", "u-t1", "u-g1"]


def test_an_empty_status_in_a_delta_file_names_row_column_and_rule() -> None:
    # users.csv row 4 (the header is row 1) is u-t1
    files = replace_row("users.csv", f"u-t1,active,{T}", f"u-t1,,{T}")
    got = errors(package(files, modes={"users": "delta"}))
    assert got == ["row 4 of users.csv: `status` must be active or tobedeleted, got ''"]
    pkg = read(package(files, modes={"users": "delta"}))
    p = pkg.errors[0]
    assert (p.file, p.row, p.column, p.rule) == ("users.csv", 4, "status", "required")


def test_a_bulk_file_may_leave_status_and_date_blank_but_not_misspell_them() -> None:
    blank = replace_row("users.csv", f"u-t1,active,{T}", "u-t1,,")
    assert errors(package(blank)) == []
    bad = replace_row("users.csv", f"u-t1,active,{T}", f"u-t1,Active,{T}")
    assert errors(package(bad)) == [
        "row 4 of users.csv: `status` must be active or tobedeleted, got 'Active'"
    ]


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("roles.csv", "u-t1,primary,teacher", "u-t1,primary,Teacher",
         "row 4 of roles.csv: `role` must be aide, counselor, districtAdministrator, "
         "guardian, parent, principal, proctor, relative, siteAdministrator, student, "
         "systemAdministrator, teacher or an ext: value of one's own, got 'Teacher'"),
        ("academicSessions.csv", "2026-fall,semester,2026-09-01", "2026-fall,semester,01/09/2026",
         "row 3 of academicSessions.csv: `startDate` must be an ISO 8601 date (YYYY-MM-DD), "
         "got '01/09/2026'"),
        ("academicSessions.csv", "2026-fall,semester,", "2026-fall,season,",
         "row 3 of academicSessions.csv: `type` must be gradingPeriod, semester, "
         "schoolYear, term or an ext: value of one's own, got 'season'"),
        ("enrollments.csv", "e-2,active,2026-08-20T10:00:00.000Z",
         "e-2,active,20/08/2026 10:00",
         "row 3 of enrollments.csv: `dateLastModified` must be an ISO 8601 date and time in UTC "
         "or with an offset (2026-09-01T08:00:00.000Z), got '20/08/2026 10:00'"),
        ("enrollments.csv", "2026-09-03", "2026-02-30",
         "row 3 of enrollments.csv: `beginDate` must be an ISO 8601 date (YYYY-MM-DD), "
         "got '2026-02-30'"),
        ("users.csv", f"u-s2,active,{T},false", f"u-s2,active,{T},no",
         "row 3 of users.csv: `enabledUser` must be true or false, got 'no'"),
        ("results.csv", "fully graded,12,", "fully graded,1e999,",
         "row 3 of results.csv: `score` must be a finite number, got '1e999'"),
        ("results.csv", "fully graded,12,", "graded,12,",
         "row 3 of results.csv: `scoreStatus` must be one of exempt, fully graded, not "
         "submitted, partially graded, submitted, got 'graded'"),
        ("classes.csv", "Mathematics A,10,c-math", ",10,c-math",
         "row 2 of classes.csv: `title` is required, got ''"),
        ("results.csv", "res-2,active", "res-1,active",
         "row 3 of results.csv: `sourcedId` 'res-1' is already used by row 2"),
        ("enrollments.csv", "k-hist,org-1,u-s1", "k-hist,org-1,u-s9",
         "row 4 of enrollments.csv: `userSourcedId` names 'u-s9', which is no sourcedId in "
         "users.csv"),
        ("classes.csv", '"as-f,as-gp"', '"as-f,as-x"',
         "row 2 of classes.csv: `termSourcedIds` names 'as-x', which is no sourcedId in "
         "academicSessions.csv"),
        ("users.csv", "10,,,,,,,org-1", "Grade 10,,,,,,,org-1",
         "row 2 of users.csv: `grades` values must be among IT, PR, PK, TK, KG, 01, 02, 03, 04, "
         "05, 06, 07, 08, 09, 10, 11, 12, 13, PS, UG, Other; got 'Grade 10'"),
    ],
)  # fmt: skip
def test_each_refusal_names_file_row_column_and_rule(
    file: str, old: str, new: str, expected: str
) -> None:
    assert errors(package(replace_row(file, old, new))) == [expected]


def test_a_row_with_more_values_than_the_header_is_refused_but_blank_extras_are_not() -> None:
    extra_blank = replace_row("orgs.csv", "LK-01,\n", "LK-01,,,\n")
    assert errors(package(extra_blank)) == []
    extra = replace_row("orgs.csv", "LK-01,\n", "LK-01,,oops\n")
    assert errors(package(extra)) == [
        "row 2 of orgs.csv: has 8 values but the header names 7 columns"
    ]


def test_a_missing_required_column_is_an_error_an_unknown_one_a_warning() -> None:
    no_title = {
        "categories.csv": f"sourcedId,status,dateLastModified,weight\ncat-exam,active,{T},0.6\n"
    }
    assert errors(package(no_title)) == [
        "row 1 of categories.csv: required column `title` is missing"
    ]
    misspelt = {
        "categories.csv": CLEAN["categories.csv"]
        .replace("weight", "Weight")
        .replace("title,", "title,colour,")
        .replace("Exams,", "Exams,red,")
        .replace("Homework,", "Homework,blue,")
    }
    pkg = read(package(misspelt))
    assert pkg.errors == []
    assert [str(w) for w in pkg.warnings] == [
        "row 1 of categories.csv: unknown column `colour` ignored",
        "row 1 of categories.csv: unknown column `Weight` ignored (did you mean `weight`?)",
    ]
    assert "Weight" not in pkg.rows("categories")[0].values


def test_extension_columns_and_a_byte_order_mark_are_fine() -> None:
    text = "\ufeff" + CLEAN["orgs.csv"].replace("parentSourcedId", "parentSourcedId,metadata.x")
    pkg = read(package({"orgs.csv": text.replace("LK-01,", "LK-01,,1")}))
    assert pkg.errors == [] and pkg.warnings == []
    assert pkg.rows("orgs")[0].values["metadata.x"] == "1"


def test_the_manifest_must_name_what_is_there_and_only_that() -> None:
    # names a file that is not in the zip
    got = errors(package(drop=("results.csv",), manifest_text=manifest()))
    assert got == [
        "manifest.csv: the manifest marks results.csv bulk, but the zip has no results.csv"
    ]
    # marks absent a file that is there
    got = errors(package(modes={"demographics": "absent"}))
    assert got == ["manifest.csv: the manifest marks demographics.csv absent, but the zip holds it"]
    # a mode that is not one
    bad = manifest().replace("file.orgs,bulk", "file.orgs,full")
    assert errors(package(manifest_text=bad)) == [
        "row 5 of manifest.csv: `file.orgs` must be bulk, delta or absent, got 'full'"
    ]
    # another version
    v11 = manifest().replace("oneroster.version,1.2", "oneroster.version,1.1")
    assert errors(package(manifest_text=v11)) == [
        "manifest.csv: `oneroster.version` must be 1.2 or 1.2.1, got '1.1'"
    ]


def test_a_zip_without_a_manifest_or_a_non_zip_is_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("users.csv", CLEAN["users.csv"])
    with pytest.raises(InvalidArgument, match=r"no manifest\.csv at its root"):
        read(buf.getvalue())
    with pytest.raises(InvalidArgument, match="not a zip file"):
        read(CLEAN["users.csv"].encode())
    with pytest.raises(InvalidArgument, match="not a zip file"):
        read(b"")


def test_a_package_inside_one_folder_is_read() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package())) as src, zipfile.ZipFile(buf, "w") as dst:
        for name in src.namelist():
            dst.writestr("roster/" + name, src.read(name))
    assert read(buf.getvalue()).errors == []


@pytest.mark.parametrize("name", ["../users.csv", "/etc/users.csv", "a/../../x.csv", "C:/x.csv",
                                  "a\\..\\x.csv"])  # fmt: skip
def test_path_traversal_is_refused(name: str) -> None:
    data = package(extra={name: "x"})
    with pytest.raises(InvalidArgument, match="unsafe path"):
        read(data)


def test_a_zip_bomb_is_refused_before_inflating() -> None:
    bomb = package(extra={"users2.csv": b"0" * (20 * 1024 * 1024)})
    assert len(bomb) < 100_000
    with pytest.raises(ResourceExhausted, match="zip bomb"):
        read(bomb)


def test_an_oversized_single_file_is_refused() -> None:
    big = os.urandom(64 * 1024).hex()  # incompressible: no bomb, only large
    with pytest.raises(ResourceExhausted, match="limit for one file"):
        read(package({"orgs.csv": CLEAN["orgs.csv"] + big}), Limits(max_file_bytes=100_000))
    # The default one-file cap is under 1 GB.
    assert Limits().max_file_bytes < 1024**3


def test_too_many_members_and_too_much_in_all_are_refused() -> None:
    many = package(extra={f"x{i}.txt": "x" for i in range(70)})
    with pytest.raises(ResourceExhausted, match="members"):
        read(many)
    with pytest.raises(ResourceExhausted, match="expands to"):
        read(package(), Limits(max_bytes=1000))


def test_not_utf8_and_nul_bytes_are_refused_naming_the_file() -> None:
    latin = CLEAN["users.csv"].replace("Eleni", "Elén").encode("latin-1")
    with pytest.raises(InvalidArgument, match=r"users\.csv: not UTF-8"):
        read(package({"users.csv": latin}))
    with pytest.raises(InvalidArgument, match=r"users\.csv: line 3 holds a NUL"):
        read(package({"users.csv": CLEAN["users.csv"].replace("Nikos", "Ni\0kos")}))


def test_unknown_files_and_tables_ferry_does_not_read_are_warnings() -> None:
    text = f"sourcedId,status,dateLastModified,title\nres-1,active,{T},Book\n"
    pkg = read(package({"resources.csv": text}, extra={"README.txt": "hello"}))
    assert pkg.errors == []
    assert sorted(str(w) for w in pkg.warnings) == [
        "README.txt: not a OneRoster 1.2 file; not read",
        "resources.csv: Ferry has no place for this table; not read",
    ]


def test_rows_standing_on_a_refused_row_are_refused_too() -> None:
    # the teacher's role is refused: the teacher, the teacher's enrollment, the class
    # (its teacher would go missing), and everything in that class
    bad = replace_row("roles.csv", "u-t1,primary,teacher", "u-t1,primary,Teacher")
    pkg = read(package(bad))
    cascade = [str(p) for p in pkg.errors if p.rule == "refused-parent"]
    assert cascade[:1] == [
        "row 4 of users.csv: user 'u-t1' stands on row 4 of roles.csv, which was refused"
    ]
    assert (
        "row 2 of classes.csv: class 'k-math' stands on row 5 of enrollments.csv, which was refused"
        in cascade
    )
    refused = sorted(pkg.refused)
    assert refused == [
        ("classes", 2), ("enrollments", 2), ("enrollments", 3), ("enrollments", 5),
        ("lineItems", 2), ("results", 2), ("results", 3), ("roles", 4), ("users", 4),
    ]  # fmt: skip
    # what stands apart is untouched
    assert [r.get("sourcedId") for r in pkg.rows("classes")] == ["k-hist"]
    assert [r.get("sourcedId") for r in pkg.rows("results")] == ["res-3"]


# ---- any cell, any text ------------------------------------------------------------

CELL = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "active", "tobedeleted", "2026-13-01", "1e309", "NaN", "true",
                     "u-s1", "as-gp", "org-1", "\ufeff", '"', ",", "\n", "0" * 30]),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_cell_of_any_file_is_read_or_refused_by_name(data: st.DataObject) -> None:
    """Corrupt one cell: the package is read, with each problem naming its file, row and
    column, or refused with a Ferry error; the import's reading never crashes."""
    name = data.draw(st.sampled_from(sorted(CLEAN)))
    rows = list(csv.reader(io.StringIO(CLEAN[name])))
    r = data.draw(st.integers(1, len(rows) - 1))
    c = data.draw(st.integers(0, len(rows[0]) - 1))
    rows[r][c] = data.draw(CELL)
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    zipped = package({name: out.getvalue()})
    try:
        pkg = read(zipped)
    except FerryError:
        return
    for p in pkg.errors:
        assert p.file.endswith(".csv") and p.row >= 1 and p.message
        if p.row >= 2:
            assert p.column or p.rule == "columns"
    try:
        events = list(OneRosterBundle().read(io.BytesIO(zipped), BundleLimits()))
    except FerryError:
        assert any(p.row < 2 for p in pkg.errors)
        return
    head = events[0]
    assert isinstance(head, Header)
    refused = [n for n in head.notes if n.kind == REFUSED]
    assert len(refused) == len(pkg.errors)


def test_extensible_enumerations_take_ext_values_and_closed_ones_do_not() -> None:
    """The 1.2 binding lets `type`, `classType`, `role` and `sex` carry `ext:` values of
    one's own (cross-checked against a public implementation, docs/oneroster.md);
    `status` and `roleType` stay closed, and an `ext:` value needs a name."""
    files = {
        **replace_row("roles.csv", "u-g1,primary,guardian", "u-g1,primary,ext:mentor"),
        **replace_row("classes.csv", "scheduled,Room 2", "ext:online,Room 2"),
        **replace_row("enrollments.csv", "u-t1,teacher,true", "u-t1,ext:coTeacher,true"),
    }
    files["orgs.csv"] = CLEAN["orgs.csv"].replace(",school,", ",ext:campus,")
    files["demographics.csv"] = CLEAN["demographics.csv"].replace("female", "ext:x-nb")
    files["academicSessions.csv"] = CLEAN["academicSessions.csv"].replace(
        ",gradingPeriod,", ",ext:quarter,"
    )
    assert errors(package(files)) == []
    pkg = read(package(files))
    mapped = map_package(pkg)
    assert mapped.loss.count("users") == 1  # the ext: role crosses as neither student nor teacher
    closed = replace_row("roles.csv", "u-g1,primary,guardian", "u-g1,ext:main,guardian")
    assert errors(package(closed)) == [
        "row 5 of roles.csv: `roleType` must be primary or secondary, got 'ext:main'"
    ]
    status = replace_row("roles.csv", f"r-g1,active,{T}", f"r-g1,ext:gone,{T}")
    assert errors(package(status)) == [
        "row 5 of roles.csv: `status` must be active or tobedeleted, got 'ext:gone'"
    ]
    for bad in ("ext:", "ext:two words", "Ext:mentor"):
        got = errors(package(replace_row("roles.csv", "primary,guardian", f"primary,{bad}")))
        assert got == [
            "row 5 of roles.csv: `role` must be aide, counselor, districtAdministrator, "
            "guardian, parent, principal, proctor, relative, siteAdministrator, student, "
            f"systemAdministrator, teacher or an ext: value of one's own, got {bad!r}"
        ], bad


def test_the_manifest_may_name_oneroster_1_2_or_1_2_1() -> None:
    """Writers of the CSV Binding 1.2.1 (August 2023) put 1.2.1 in the manifest."""
    text = manifest().replace("oneroster.version,1.2\n", "oneroster.version,1.2.1\n")
    assert errors(package(manifest_text=text)) == []
    old = manifest().replace("oneroster.version,1.2\n", "oneroster.version,1.1\n")
    assert errors(package(manifest_text=old)) == [
        "manifest.csv: `oneroster.version` must be 1.2 or 1.2.1, got '1.1'"
    ]


def test_blank_rows_are_skipped_but_a_row_blank_only_in_its_first_cell_is_read() -> None:
    # The validator settles most rows by their first cell; a row of spaces is still blank
    # and one whose first cell is empty is still checked.
    spaces = replace_row("orgs.csv", "LK-01,\n", "LK-01,\n  , ,\t,,,,\n")
    assert errors(package(spaces)) == []
    first_blank = replace_row("orgs.csv", "LK-01,\n", f"LK-01,\n ,active,{T},Other,school,,\n")
    assert errors(package(first_blank)) == ["row 3 of orgs.csv: `sourcedId` is required, got ''"]


def test_a_bad_date_and_time_is_refused_on_every_row_that_repeats_it() -> None:
    # Good values are remembered down a file; a bad one is refused each time it appears.
    text = CLEAN["enrollments.csv"].replace(T, "2026-08-20 10:00:00")
    got = errors(package({"enrollments.csv": text}))
    assert got == [
        f"row {n} of enrollments.csv: `dateLastModified` must be an ISO 8601 date and time in "
        "UTC or with an offset (2026-09-01T08:00:00.000Z), got '2026-08-20 10:00:00'"
        for n in (2, 3, 4, 5)
    ]


@pytest.mark.parametrize(
    "stamp",
    ["2026-08-20T10:00:00.000Z", "2026-08-20T10:00Z", "2026-08-20T12:00:00+02:00",
     "2026-08-20T05:30:00-0430", "2026-08-20T10:00:00.0000001Z"],
)  # fmt: skip
def test_date_last_modified_maps_to_the_instant_it_names(stamp: str) -> None:
    files = {f: t.replace(T, stamp) for f, t in CLEAN.items()}
    pkg = read(package(files))
    assert pkg.errors == []
    mapped = map_package(pkg)
    want = dt.datetime(2026, 8, 20, 10, tzinfo=dt.UTC)
    stamps = [r["updated_at"] for rs in mapped.records.values() for r in rs]
    assert stamps and all(s == want and s.utcoffset() is not None for s in stamps)


def test_a_cell_over_the_length_limit_is_refused_even_in_a_column_with_no_other_check() -> None:
    limits = Limits(max_cell_chars=40)
    # u-s2's row is over 40 characters in all, but no cell of it is: read as it is.
    assert [p for p in read(package(), limits).errors if p.rule == "length"] == []
    long = replace_row("users.csv", ",Andreas,", f",{'A' * 41},")
    got = [(p.file, p.row, p.column, p.rule) for p in read(package(long), limits).errors]
    assert ("users.csv", 3, "middleName", "length") in got


def test_checks_read_per_column_still_name_each_row_in_row_order() -> None:
    """The checks run once per distinct value of a column; refusals still name every
    row holding the bad value, in row then column order, and a date cell holding a line
    break (which a search over the column's joined values could mistake for two) is
    refused as a date."""
    res2 = f"res-2,active,{T},li-1,u-s2,fully graded,"
    res3 = f"res-3,active,{T},li-2,u-s1,fully graded,"
    text = CLEAN["results.csv"]
    text = text.replace(res2 + "12,2026-10-21,", res2 + 'x,"2026-10-21\n2026-10-22",')
    text = text.replace(res3 + "88,", res3.replace(",active,", ",Active,") + "x,")
    got = errors(package({"results.csv": text}))
    assert got == [
        "row 3 of results.csv: `score` must be a finite number, got 'x'",
        "row 3 of results.csv: `scoreDate` must be an ISO 8601 date (YYYY-MM-DD), got "
        "'2026-10-21\\n2026-10-22'",
        "row 4 of results.csv: `status` must be active or tobedeleted, got 'Active'",
        "row 4 of results.csv: `score` must be a finite number, got 'x'",
    ]
    hw = f"cat-hw,active,{T},Homework,"
    pkg = read(package(replace_row("categories.csv", hw, f"cat-hw, active ,{T}, ,")))
    assert [(p.row, p.column, p.rule) for p in pkg.errors if p.rule != "refused-parent"] == [
        (3, "title", "required")  # text of spaces only is blank
    ]
    assert pkg.tables["categories"][1].get("status") == "active"  # a code loses its spaces
