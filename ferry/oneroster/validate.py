"""Reading and validating a OneRoster 1.2 CSV package (a zip) against ferry.oneroster.spec.

`read_package(src)` checks the zip before inflating anything (entries, sizes, compression
ratio, unsafe names), reads `manifest.csv`, checks that the files the manifest names
`bulk`/`delta` are there and those it marks `absent` are not, then parses and checks each
table: required columns, required values, enumerations, ISO 8601 dates, booleans and
numbers, unique sourcedIds, and the sourcedId references between files. Rows are numbered
as a spreadsheet shows them: the header is row 1, the first record row 2.

Problems are values (`Problem`): errors refuse the package or a row; warnings (an unknown
or misspelt optional column, a blank trailing column) are ignored by the import and
reported. `read_package` raises only for a package that cannot be read at all (not a zip,
a zip bomb, an unsafe path, a missing manifest, a file too large); everything else is in
`Package.errors`.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import gc
import io
import math
import re
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import IO

from ferry.errors import InvalidArgument, ResourceExhausted
from ferry.oneroster.spec import (
    EXTENSION_ENUM,
    EXTENSION_PREFIX,
    FERRY_COLUMNS,
    MANIFEST,
    MODES,
    ONEROSTER_VERSIONS,
    OTHER_TABLES,
    TABLES,
    Column,
    Table,
    Type,
)


@dataclass(frozen=True)
class Limits:
    """What a package may be: a zip of at most `max_entries` members, `max_bytes` in all
    once inflated, no member over `max_file_bytes` or compressed more than `max_ratio`:1."""

    max_bytes: int = 2 * 1024 * 1024 * 1024
    max_file_bytes: int = 512 * 1024 * 1024
    max_entries: int = 64
    max_ratio: float = 200.0
    max_cell_chars: int = 100_000


RATIO_MIN_BYTES = 64 * 1024  # small members may compress well without being bombs


@dataclass(frozen=True)
class Problem:
    file: str
    row: int  # 0: the file itself; 1: its header; 2..: its records
    column: str
    rule: str  # a short machine name: required, enum, date, reference, ...
    message: str

    def __str__(self) -> str:
        where = f"row {self.row} of {self.file}" if self.row else self.file
        return f"{where}: {self.message}"


@dataclass(slots=True)
class Row:
    """One record row: its cells in the file's column order, padded to the header's
    width plus one "" past it (what a column the file lacks reads as), and the table's
    column -> position map, one per table, shared by its rows (no dict per row)."""

    number: int
    cells: list[str]
    index: dict[str, int]

    def get(self, name: str) -> str:
        """The cell of column `name`; "" when the file has no such column."""
        return self.cells[self.index.get(name, -1)]

    def value(self, name: str, default: str) -> str:
        """The cell of column `name` (even when empty); `default` when the file has no
        such column."""
        i = self.index.get(name)
        return default if i is None else self.cells[i]

    @property
    def values(self) -> dict[str, str]:
        """The row as column -> value (the columns the file has and Ferry reads)."""
        return {name: self.cells[i] for name, i in self.index.items()}


@dataclass
class Package:
    """A read package: manifest properties, each table's mode and rows, and problems."""

    manifest: dict[str, str] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)  # table -> bulk|delta|absent
    tables: dict[str, list[Row]] = field(default_factory=dict)
    extensions: dict[str, list[str]] = field(default_factory=dict)  # table -> metadata.* cols
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    refused: set[tuple[str, int]] = field(default_factory=set)  # (table, row) refused

    def rows(self, table: str) -> list[Row]:
        """The table's rows that passed every check."""
        rows = self.tables.get(table, [])
        if not self.refused:
            return list(rows)
        return [r for r in rows if (table, r.number) not in self.refused]

    def error(self, p: Problem) -> None:
        self.errors.append(p)
        if p.row >= 2:
            self.refused.add((p.file.removesuffix(".csv"), p.row))


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_on = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a package is read and mapped: reading
    makes a list per row and nothing to collect, yet each few hundred rows would start
    a collection walking every row read so far (a quarter of the read). It resumes
    when the last reader in the process is done, and only if it was on."""
    global _gc_pauses, _gc_was_on
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_on = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_on:
                gc.enable()


def read_package(src: IO[bytes], limits: Limits | None = None) -> Package:
    """Read and validate the OneRoster zip `src` (seekable); see the module docstring."""
    limits = limits or Limits()
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise InvalidArgument(
            "not a zip file: a OneRoster CSV package is a zip of manifest.csv and the table files",
            field="file",
        ) from None
    with zf:
        members = _members(zf, limits)
        pkg = Package()
        prefix = _prefix(members)
        names = {n[len(prefix) :]: info for n, info in members.items() if n.startswith(prefix)}
        for n in members:
            if not n.startswith(prefix):
                pkg.warnings.append(
                    Problem(n, 0, "", "unknown-file", "not read: outside the package folder")
                )
        pkg.manifest = _manifest(_read_text(zf, names[MANIFEST], MANIFEST, limits), pkg)
        if pkg.errors:
            return pkg
        _check_files(pkg, names)
        if pkg.errors:
            return pkg
        for table, mode in pkg.modes.items():
            if mode == "absent" or table not in TABLES:
                continue
            text = _read_text(zf, names[f"{table}.csv"], f"{table}.csv", limits)
            _parse_table(TABLES[table], mode, text, pkg, limits)
        for table, mode in pkg.modes.items():
            if table in OTHER_TABLES and mode != "absent":
                pkg.warnings.append(
                    Problem(
                        f"{table}.csv",
                        0,
                        "",
                        "not-read",
                        "Ferry has no place for this table; not read",
                    )
                )
        _check_references(pkg)
        if pkg.refused:
            _cascade(pkg)
    return pkg


# ---- the zip -----------------------------------------------------------------------


def _members(zf: zipfile.ZipFile, limits: Limits) -> dict[str, zipfile.ZipInfo]:
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > limits.max_entries:
        raise ResourceExhausted(
            f"the zip has {len(infos):,} members, more than {limits.max_entries:,}", field="file"
        )
    total = 0
    out: dict[str, zipfile.ZipInfo] = {}
    for i in infos:
        name = i.filename
        parts = name.replace("\\", "/").split("/")
        if (
            name.startswith(("/", "\\"))
            or "\\" in name
            or ".." in parts
            or re.match(r"^[A-Za-z]:", name)
            or "\x00" in name
        ):
            raise InvalidArgument(
                f"unsafe path in the zip: {name!r} (absolute or leaving the package folder); "
                "refused",
                field="file",
            )
        if i.file_size > limits.max_file_bytes:
            raise ResourceExhausted(
                f"{name} is {i.file_size:,} bytes inflated, more than the {limits.max_file_bytes:,}"
                "-byte limit for one file",
                field="file",
            )
        if (
            i.file_size >= RATIO_MIN_BYTES
            and i.file_size / max(i.compress_size, 1) > limits.max_ratio
        ):
            raise ResourceExhausted(
                f"{name} compresses {i.file_size / max(i.compress_size, 1):,.0f}:1, more than "
                f"{limits.max_ratio:,.0f}:1: refusing a zip bomb",
                field="file",
            )
        total += i.file_size
        if name in out:
            raise InvalidArgument(f"the zip holds {name} twice", field="file")
        out[name] = i
    if total > limits.max_bytes:
        raise ResourceExhausted(
            f"the zip expands to {total:,} bytes, more than the {limits.max_bytes:,}-byte limit",
            field="file",
        )
    return out


def _prefix(members: dict[str, zipfile.ZipInfo]) -> str:
    """ "" when manifest.csv is at the zip's root; "folder/" when the package sits in one."""
    if MANIFEST in members:
        return ""
    nested = [n for n in members if n.endswith("/" + MANIFEST) and n.count("/") == 1]
    if len(nested) == 1:
        return nested[0][: -len(MANIFEST)]
    raise InvalidArgument(
        "the zip has no manifest.csv at its root: a OneRoster CSV package starts with one",
        field="file",
    )


def _read_text(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limits: Limits) -> str:
    """A member's text, inflated under the per-file cap whatever its header claims."""
    buf = bytearray()
    try:
        with zf.open(info) as f:
            while block := f.read(1024 * 1024):
                buf += block
                if len(buf) > limits.max_file_bytes:
                    raise ResourceExhausted(
                        f"{name} inflates past the {limits.max_file_bytes:,}-byte limit for one "
                        "file",
                        field="file",
                    )
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as e:
        raise InvalidArgument(f"{name}: cannot be read from the zip ({e})", field="file") from None
    data = bytes(buf)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgument(
            f"{name}: not UTF-8 text (byte {e.start + 1} cannot be decoded); OneRoster CSV "
            "files are UTF-8",
            field="file",
        ) from None


def _csv_rows(text: str, name: str) -> Iterator[list[str]]:
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise InvalidArgument(f"{name}: line {line} holds a NUL character", field="file")
    try:
        yield from csv.reader(io.StringIO(text, newline=""), strict=True)
    except csv.Error as e:
        raise InvalidArgument(f"{name}: not readable as CSV ({e})", field="file") from None


# ---- the manifest ------------------------------------------------------------------


def _manifest(text: str, pkg: Package) -> dict[str, str]:
    rows = list(_csv_rows(text, MANIFEST))
    if not rows or [c.strip() for c in rows[0][:2]] != ["propertyName", "value"]:
        pkg.error(Problem(MANIFEST, 1, "", "header", "the header must be `propertyName,value`"))
        return {}
    props: dict[str, str] = {}
    for n, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        key = row[0].strip()
        value = row[1].strip() if len(row) > 1 else ""
        if key in props:
            pkg.error(Problem(MANIFEST, n, "propertyName", "unique", f"`{key}` appears twice"))
        props[key] = value
        if key.startswith("file."):
            table = key[5:]
            if table not in TABLES and table not in OTHER_TABLES:
                pkg.warnings.append(
                    Problem(
                        MANIFEST, n, "propertyName", "unknown", f"unknown table `{table}`; ignored"
                    )
                )
                continue
            if value not in MODES:
                pkg.error(
                    Problem(
                        MANIFEST,
                        n,
                        "value",
                        "enum",
                        f"`{key}` must be bulk, delta or absent, got {value!r}",
                    )
                )
                continue
            pkg.modes[table] = value
    version = props.get("oneroster.version")
    if version not in ONEROSTER_VERSIONS:
        pkg.error(
            Problem(
                MANIFEST,
                0,
                "oneroster.version",
                "version",
                f"`oneroster.version` must be {' or '.join(ONEROSTER_VERSIONS)}, "
                f"got {version or ''!r}",
            )
        )
    if "manifest.version" not in props:
        pkg.error(
            Problem(MANIFEST, 0, "manifest.version", "required", "`manifest.version` is missing")
        )
    for table in TABLES:
        pkg.modes.setdefault(table, "absent")
    return props


def _check_files(pkg: Package, names: dict[str, zipfile.ZipInfo]) -> None:
    for table, mode in sorted(pkg.modes.items()):
        fname = f"{table}.csv"
        if mode != "absent" and fname not in names:
            pkg.error(
                Problem(
                    MANIFEST,
                    0,
                    f"file.{table}",
                    "file-missing",
                    f"the manifest marks {fname} {mode}, but the zip has no {fname}",
                )
            )
        if mode == "absent" and fname in names:
            pkg.error(
                Problem(
                    MANIFEST,
                    0,
                    f"file.{table}",
                    "file-absent",
                    f"the manifest marks {fname} absent, but the zip holds it",
                )
            )
    known = {f"{t}.csv" for t in (*TABLES, *OTHER_TABLES)} | {MANIFEST}
    for name in sorted(names):
        if name not in known:
            pkg.warnings.append(
                Problem(name, 0, "", "unknown-file", "not a OneRoster 1.2 file; not read")
            )


# ---- tables ------------------------------------------------------------------------


def _parse_table(table: Table, mode: str, text: str, pkg: Package, limits: Limits) -> None:
    fname = table.filename
    rows = _csv_rows(text, fname)
    header = next(rows, None)
    if header is None:
        pkg.error(Problem(fname, 1, "", "header", "the file is empty: it needs a header row"))
        return
    header = [h.strip() for h in header]
    while header and header[-1] == "":
        header.pop()
    known = {c.name for c in table.columns}
    seen: set[str] = set()
    use: dict[int, str] = {}
    ext: list[str] = []
    for i, h in enumerate(header):
        if h in seen:
            pkg.error(Problem(fname, 1, h, "header", f"column `{h}` appears twice"))
            continue
        seen.add(h)
        if h in known:
            use[i] = h
        elif h.startswith(EXTENSION_PREFIX):
            use[i] = h
            ext.append(h)
        elif h == "":
            pkg.warnings.append(
                Problem(fname, 1, "", "unknown-column", f"column {i + 1} has no name; ignored")
            )
        else:
            near = difflib.get_close_matches(h, known, n=1, cutoff=0.75)
            near += [k for k in known if k.lower() == h.lower()]
            hint = f" (did you mean `{near[-1]}`?)" if near else ""
            pkg.warnings.append(
                Problem(fname, 1, h, "unknown-column", f"unknown column `{h}` ignored{hint}")
            )
    for c in table.columns:
        delta_needs = mode == "delta" and c.name in ("status", "dateLastModified")
        if (c.required or delta_needs) and c.name not in seen:
            pkg.error(
                Problem(
                    fname, 1, c.name, "required-column", f"required column `{c.name}` is missing"
                )
            )
    pkg.extensions[table.name] = ext
    as_is = {c.name for c in table.columns if c.type is Type.STR} | set(ext)
    if any(
        p.file == fname and p.row == 1 and p.rule in ("required-column", "header")
        for p in pkg.errors
    ):
        return
    width = len(header)
    index = {name: i for i, name in use.items()}
    out: list[Row] = []
    lists: list[list[str]] = []  # each row's cells (out[k].cells is lists[k])
    wide: set[int] = set()  # positions (in out) of rows with values past the header
    found: list[tuple[int, int, Problem]] = []  # (row, check, problem): sorted at the end
    for n, cells in enumerate(rows, 2):
        # Blank (every cell empty or spaces) rows are skipped; a first cell with text is
        # the common case and settles it without looking at the rest.
        first = cells[0] if cells else ""
        if (not first or first.isspace()) and not "".join(cells).strip():
            continue
        k = len(cells)
        if k == width:
            cells.append("")
        elif k < width:
            cells.extend([""] * (width - k + 1))
        else:
            if any(c.strip() for c in cells[width:]):
                problem = Problem(
                    fname, n, "", "columns", f"has {k} values but the header names {width} columns"
                )
                found.append((n, -1, problem))
                wide.add(len(out))
            del cells[width:]
            cells.append("")
        out.append(Row(n, cells, index))
        lists.append(cells)
    # Column by column from here: each check runs once per distinct value of a column
    # (codes, dates and numbers repeat down a file), and only a column holding a bad
    # value is walked row by row, to name the rows. Codes, dates and numbers lose stray
    # spaces; text is kept as it is.
    distinct: dict[int, set[str]] = {}
    for i, name in use.items():
        if name in as_is:
            continue
        values = distinct[i] = set(map(itemgetter(i), lists))
        # One search over the column's values joined by NUL (no cell holds one).
        if _EDGE_SPACE.search("\x00".join(values)):
            for cells in lists:
                v = cells[i]
                if v[:1].isspace() or v[-1:].isspace():
                    cells[i] = v.strip()
            distinct[i] = set(map(itemgetter(i), lists))
    max_chars = limits.max_cell_chars
    k = 0
    for c in (*table.columns, *FERRY_COLUMNS.get(table.name, ())):
        required = c.required or (mode == "delta" and c.name in ("status", "dateLastModified"))
        if c.name not in seen:
            continue  # a missing required column is a header error above
        k += 1
        i = index[c.name]
        values = distinct.pop(i) if i in distinct else set(map(itemgetter(i), lists))
        bad = _bad_values(c, required, values, max_chars)
        if bad:
            for pos, cells in enumerate(lists):
                why = bad.get(cells[i])
                if why is not None and pos not in wide:
                    n = out[pos].number
                    found.append((n, k, Problem(fname, n, c.name, why[0], why[1])))
    if "sourcedId" in index:
        i = index["sourcedId"]
        sids = [x[i] for p, x in enumerate(lists) if p not in wide] if wide else None
        column = sids if sids is not None else list(map(itemgetter(i), lists))
        unique = set(column)
        unique.discard("")
        if len(unique) != len(column) - column.count(""):  # a sourcedId used twice
            ids: dict[str, int] = {}
            for pos, cells in enumerate(lists):
                sid = cells[i]
                if not sid or pos in wide:
                    continue
                n = out[pos].number
                if sid in ids:
                    problem = Problem(
                        fname,
                        n,
                        "sourcedId",
                        "unique",
                        f"`sourcedId` {sid!r} is already used by row {ids[sid]}",
                    )
                    found.append((n, k + 1, problem))
                else:
                    ids[sid] = n
    found.sort(key=lambda f: (f[0], f[1]))
    for _, _, problem in found:
        pkg.error(problem)
    pkg.tables[table.name] = out


def _bad_values(
    c: Column, required: bool, values: set[str], max_chars: int
) -> dict[str, tuple[str, str]]:
    """The values of `values` (one column's distinct cells) that column `c` refuses,
    each with (rule, message): blank when required, too long, or failing c's check."""
    bad: dict[str, tuple[str, str]] = {}
    blank = set(filter(str.isspace, values))
    if "" in values:
        blank.add("")
    if blank:
        if required:
            if c.type is Type.ENUM:
                message = f"`{c.name}` must be {_either(c.enum)}, got ''"
            else:
                why = " in a delta file" if not c.required else ""
                message = f"`{c.name}` is required{why}, got ''"
            bad.update(dict.fromkeys(blank, ("required", message)))
        values = values - blank
    if values and max(map(len, values)) > max_chars:
        long = ("length", f"`{c.name}` is longer than {max_chars:,} characters")
        bad.update((v, long) for v in values if len(v) > max_chars)
        values = {v for v in values if len(v) <= max_chars}
    if values and not _all_good(c, values):
        check = _checker(c)
        if check is not None:
            for v in values:
                if (problem := check(v)) is not None:
                    bad[v] = problem
    return bad


def _all_good(c: Column, values: set[str]) -> bool:
    """Whether every value passes c's check, decided for the column at once where that
    is cheaper (False: ask each value; a column without a check is always good)."""
    t = c.type
    if t is Type.ENUM and not c.extensible:
        return values <= frozenset(c.enum)
    if t is Type.BOOL:
        return values <= {"true", "false"}
    if t in (Type.DATE, Type.DATETIME):
        # Each value matches the pattern whole: one search over the lines of the column
        # (no value holds a line break, or each is asked on its own), then each parses.
        lines = "\n".join(values)
        if lines.count("\n") != len(values) - 1:
            return False
        pattern = _DATE_LINES if t is Type.DATE else _DATETIME_LINES
        if len(pattern.findall(lines)) != len(values):
            return False
        parse = dt.date.fromisoformat if t is Type.DATE else dt.datetime.fromisoformat
        try:
            for _ in map(parse, values):
                pass
        except ValueError:
            return False
        return True
    if t is Type.FLOAT:
        try:
            return all(map(math.isfinite, map(float, values)))
        except ValueError:
            return False
    return _checker(c) is None


_DATE_PATTERN = r"\d{4}-\d\d-\d\d"
_DATETIME_PATTERN = r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)"
# Matched whole (fullmatch); groups do not capture.
_DATE = re.compile(_DATE_PATTERN)
_DATETIME = re.compile(_DATETIME_PATTERN)
# The same, each matching one whole line of a column's values joined by line breaks.
_DATE_LINES = re.compile(f"(?m)^{_DATE_PATTERN}$")
_DATETIME_LINES = re.compile(f"(?m)^{_DATETIME_PATTERN}$")
_EXTENSION = re.compile(EXTENSION_ENUM)
# A value (of values joined by NUL) that starts or ends with a space: \s is what
# str.isspace and str.strip take for one.
_EDGE_SPACE = re.compile(r"(?:\A|\x00)\s|\s(?:\x00|\Z)")


Check = Callable[[str], "tuple[str, str] | None"]


def _checker(c: Column) -> Check | None:
    """A check of one filled-in value of `c`: None when good, else (rule, message). Values
    found good are remembered (dates and codes repeat down a file)."""
    n = c.name
    test: Callable[[str], bool]
    if c.type is Type.ENUM and c.extensible:
        allowed = frozenset(c.enum)

        def test(v: str) -> bool:
            return v in allowed or _EXTENSION.fullmatch(v) is not None

        rule = "enum"
        msg = f"`{n}` must be {', '.join(c.enum)} or an ext: value of one's own, got "
    elif c.type is Type.ENUM:
        allowed = frozenset(c.enum)
        test, rule, msg = allowed.__contains__, "enum", f"`{n}` must be {_either(c.enum)}, got "
    elif c.type is Type.ENUMS:
        allowed = frozenset(c.enum)

        def test(v: str) -> bool:
            return all(p in allowed for p in _split(v))

        rule, msg = "enum", f"`{n}` values must be among {', '.join(c.enum)}; got "
    elif c.type is Type.DATE:
        test, rule = (lambda v: _date(v) is not None), "date"
        msg = f"`{n}` must be an ISO 8601 date (YYYY-MM-DD), got "
    elif c.type is Type.DATETIME:
        test, rule = (lambda v: _datetime(v) is not None), "datetime"
        msg = (
            f"`{n}` must be an ISO 8601 date and time in UTC or with an offset "
            "(2026-09-01T08:00:00.000Z), got "
        )
    elif c.type is Type.FLOAT:
        test, rule, msg = (
            (lambda v: _float(v) is not None),
            "number",
            f"`{n}` must be a finite number, got ",
        )
    elif c.type is Type.BOOL:
        test, rule, msg = (
            ("true", "false").__contains__,
            "boolean",
            f"`{n}` must be true or false, got ",
        )
    elif c.type is Type.INT:
        test, rule = (lambda v: re.fullmatch(r"-?\d{1,18}", v) is not None), "integer"
        msg = f"`{n}` must be an integer, got "
    elif c.type is Type.YEAR:
        test, rule = (lambda v: re.fullmatch(r"\d{4}", v) is not None), "year"
        msg = f"`{n}` must be a four-digit year, got "
    else:
        return None
    good: set[str] = set()

    def check(v: str) -> tuple[str, str] | None:
        if v in good:
            return None
        if test(v):
            if len(good) < 10_000:
                good.add(v)
            return None
        if c.type is Type.ENUMS:
            bad = next(p for p in _split(v) if p not in c.enum)
            return rule, f"{msg}{bad!r}"
        return rule, f"{msg}{v!r}"

    return check


def _either(values: tuple[str, ...]) -> str:
    if len(values) == 2:
        return f"{values[0]} or {values[1]}"
    return "one of " + ", ".join(values)


def _split(v: str) -> list[str]:
    return [p.strip() for p in v.split(",") if p.strip()]


def _date(v: str) -> dt.date | None:
    if _DATE.fullmatch(v) is None:
        return None
    try:
        return dt.date.fromisoformat(v)
    except ValueError:
        return None


def _datetime(v: str) -> dt.datetime | None:
    if _DATETIME.fullmatch(v) is None:
        return None
    try:  # Python >= 3.11 reads a trailing Z as UTC
        return dt.datetime.fromisoformat(v)
    except ValueError:
        return None


def _float(v: str) -> float | None:
    try:
        f = float(v)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def parse_date(v: str) -> dt.date | None:
    return _date(v)


def parse_datetime(v: str) -> dt.datetime | None:
    return _datetime(v)


def split_list(v: str) -> list[str]:
    return _split(v)


# ---- references --------------------------------------------------------------------


def _check_references(pkg: Package) -> None:
    """Each reference names a sourcedId of its table, when that table came `bulk` (a
    delta or absent table may name records the receiver already holds)."""
    ids = {t: {r.get("sourcedId") for r in rows} for t, rows in pkg.tables.items()}
    for tname, rows in pkg.tables.items():
        table = TABLES[tname]
        for c in table.columns:
            if not c.ref or pkg.modes.get(c.ref) != "bulk" or c.ref not in pkg.tables:
                continue
            if not rows or c.name not in rows[0].index:
                continue  # the file has no such column: it names nothing
            targets = ids.get(c.ref, set())
            name, many = c.name, c.type is Type.IDS
            i = rows[0].index[name]
            if not many:
                # The common case: every id is there (one set difference for the column).
                named = {r.cells[i] for r in rows}
                named.discard("")
                if named <= targets:
                    continue
            for row in rows:
                v = row.cells[i]
                if not many:
                    if not v or v in targets:
                        continue
                    values = [v]
                else:
                    values = _split(v)
                for one in values:
                    if one not in targets:
                        pkg.error(
                            Problem(
                                table.filename,
                                row.number,
                                c.name,
                                "reference",
                                f"`{c.name}` names {one!r}, which is no sourcedId in {c.ref}.csv",
                            )
                        )
                        break


_ONE = {"users": "user", "classes": "class"}


def _cascade(pkg: Package) -> None:
    """Refuse the rows that stand on a refused row, so a refusal never turns into a
    silent change: a row naming a refused sourcedId (orgs, sessions, courses, classes,
    users, categories, line items), a user whose role or demographics row was refused,
    a class whose teacher's enrollment was refused. Repeated until nothing changes."""
    by_id: dict[str, dict[str, Row]] = {
        t: {r.get("sourcedId"): r for r in rows} for t, rows in pkg.tables.items()
    }

    def refused(table: str, sid: str) -> Row | None:
        row = by_id.get(table, {}).get(sid)
        return row if row is not None and (table, row.number) in pkg.refused else None

    def refuse(table: str, row: Row, column: str, what: str, parent: str, prow: Row) -> None:
        pkg.error(
            Problem(
                f"{table}.csv",
                row.number,
                column,
                "refused-parent",
                f"{what} stands on row {prow.number} of {parent}.csv, which was refused",
            )
        )

    changed = True
    while changed:
        changed = False
        for tname, rows in pkg.tables.items():
            table = TABLES[tname]
            for row in rows:
                if (tname, row.number) in pkg.refused:
                    continue
                for c in table.columns:
                    if not c.ref:
                        continue
                    v = row.get(c.name)
                    for sid in _split(v) if c.type is Type.IDS else ([v] if v else []):
                        prow = refused(c.ref, sid)
                        if prow is not None:
                            refuse(tname, row, c.name, f"`{c.name}` {sid!r}", c.ref, prow)
                            changed = True
                            break
                    if (tname, row.number) in pkg.refused:
                        break
        # A user stands on its roles and demographics; a class on its teachers.
        for tname, target, column in (
            ("roles", "users", "userSourcedId"),
            ("demographics", "users", "sourcedId"),
            ("enrollments", "classes", "classSourcedId"),
        ):
            for row in pkg.tables.get(tname, []):
                if (tname, row.number) not in pkg.refused:
                    continue
                if tname == "enrollments" and row.get("role") != "teacher":
                    continue
                trow = by_id.get(target, {}).get(row.get(column))
                if trow is not None and (target, trow.number) not in pkg.refused:
                    what = f"{_ONE[target]} {trow.get('sourcedId')!r}"
                    refuse(target, trow, "sourcedId", what, tname, row)
                    changed = True
