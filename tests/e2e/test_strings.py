"""The page's string tables: a key missing in either language, a placeholder that one
language lacks, or a key the page builds at run time (statuses, field labels) that no
table holds fails here. No browser needed."""

from __future__ import annotations

import json
import re

from ferry.datasets.school import SCHOOL
from ferry.v1 import export_pb2, import_pb2, notify_pb2
from tests.e2e.test_export_center import STATIC

EN = json.loads((STATIC / "i18n" / "en.json").read_text(encoding="utf-8"))
EL = json.loads((STATIC / "i18n" / "el.json").read_text(encoding="utf-8"))
JS = (STATIC / "app.js").read_text(encoding="utf-8")
HTML = (STATIC / "index.html").read_text(encoding="utf-8")


def test_both_languages_have_every_key_and_the_same_placeholders() -> None:
    assert sorted(set(EN) - set(EL)) == [] and sorted(set(EL) - set(EN)) == []
    for key in EN:
        assert EN[key].strip() and EL[key].strip(), key
        assert set(re.findall(r"\{(\w+)\}", EN[key])) == set(re.findall(r"\{(\w+)\}", EL[key])), key


def test_every_key_the_page_uses_exists() -> None:
    used = set(re.findall(r'data-i18n(?:-placeholder)?="([^"]+)"', HTML))
    used |= set(re.findall(r'\b(?:t|say)\("([A-Za-z_]+)"', JS))
    used |= {f"err_{c}" for c in re.findall(r'code: "([A-Z_]+)"', JS)}
    assert sorted(k for k in used if k not in EN) == []


def test_every_key_the_page_builds_at_run_time_exists() -> None:
    """Keys made from data: statuses, field labels (fields and reference columns of every
    entity), entities, filter values, attendance statuses, trends, risk reasons, roles."""
    built: set[str] = set()
    for enum in (export_pb2.ExportJobStatus, import_pb2.ImportStatus,
                 notify_pb2.NotificationStatus):  # fmt: skip
        built |= set(enum.keys())
    for entity in SCHOOL.entities.values():
        built.add(f"entity_{entity.name}")
        built |= {f"field_{f.name}" for f in entity.fields}
        built |= {f"field_{name}" for r in entity.references for name in r.fields}
    built |= {f"st_{v}" for v in re.findall(r'<option value="([a-z]+)" data-i18n="st_', HTML)}
    built |= {f"att_{v}" for v in ("present", "late", "absent", "excused")}  # demo/generate.py
    built |= {f"trend_{v}" for v in ("rising", "falling", "steady", "not_enough_data")}
    built |= {f"reason_{v}" for v in ("low_grade", "low_attendance", "falling_trend")}
    built |= {f"role_{v}" for v in ("admin", "operator", "viewer")}
    built |= {f"action_{v}" for v in ("create", "update", "delete")}
    assert sorted(k for k in built if k not in EN) == []


def test_no_key_is_left_unused() -> None:
    """A key nothing uses is a translation nobody checks."""
    prefixes = ("EXPORT_JOB_STATUS_", "IMPORT_STATUS_", "NOTIFICATION_STATUS_", "field_",
                "entity_", "att_", "trend_", "reason_", "role_", "action_", "col_", "err_",
                "sum_", "st_", "why_")  # fmt: skip
    job_types = set(
        re.findall(
            r'<option value="([a-z_]+)"', HTML.split('id="job-type"')[1].split("</select>")[0]
        )
    )
    unused = [
        k for k in EN
        if k not in job_types  # t(job.export_type)
        and not k.startswith(prefixes) and f'"{k}"' not in JS and f'data-i18n="{k}"' not in HTML
        and f'data-i18n-placeholder="{k}"' not in HTML
    ]  # fmt: skip
    assert unused == []


def test_every_server_reason_is_worded_in_both_languages() -> None:
    """The machine reasons the server sends (ferry.errors.REASONS, google.rpc.ErrorInfo):
    each has its words in both tables using only the values it carries, every why_ key is
    a reason the server sends, and every reason raised anywhere in ferry/ or gateway/ is
    listed."""
    from pathlib import Path

    from ferry.errors import REASONS

    for reason, keys in REASONS.items():
        for table in (EN, EL):
            assert f"why_{reason}" in table, reason
            assert set(re.findall(r"\{(\w+)\}", table[f"why_{reason}"])) <= set(keys), reason
    assert sorted(k[4:] for k in EN if k.startswith("why_")) == sorted(REASONS)
    root = Path(__file__).resolve().parents[2]
    raised = {
        m
        for folder in ("ferry", "gateway")
        for path in (root / folder).rglob("*.py")
        for m in re.findall(r'reason="([A-Z_]+)"', path.read_text(encoding="utf-8"))
    }
    assert raised and sorted(raised - set(REASONS)) == []


def _slots(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


def test_every_server_string_table_has_both_languages() -> None:
    """The server's own tables, walked like the page's: export headers, titles and pdf
    words (ferry.tabular.labels), the reports' words, policies, notes and at-risk reasons
    (ferry.reports.words), and the notification templates: a key in one language and not
    the other, an empty text, or a placeholder one language lacks fails here."""
    from ferry.notify import templates
    from ferry.reports import words
    from ferry.tabular import labels

    by_language: dict[str, dict[str, dict[str, str]]] = {
        "formats.labels.FIELDS": labels.FIELDS,
        "formats.labels.ENTITIES": labels.ENTITIES,
        "formats.labels.WORDS": labels.WORDS,
        "reports.words.STUDENT_POLICY": {k: {"": v} for k, v in words.STUDENT_POLICY.items()},
        "reports.words.SEMESTER_POLICY": {k: {"": v} for k, v in words.SEMESTER_POLICY.items()},
        "reports.words.EMPTY_NOTE": {k: {"": v} for k, v in words.EMPTY_NOTE.items()},
        "reports.words.ANY_DAY": {k: {"": v} for k, v in words.ANY_DAY.items()},
        "reports.words.REASONS": words.REASONS,
    }
    for name, table in by_language.items():
        assert sorted(table) == sorted(("en", "el")), name
        assert sorted(table["en"]) == sorted(table["el"]), name
        for key in table["en"]:
            en, el = table["en"][key], table["el"][key]
            assert en.strip() and el.strip(), (name, key)
            assert _slots(en) == _slots(el), (name, key)
    # The printed words of the report PDFs: English -> Greek, the same placeholders.
    for en, el in words.GREEK.items():
        assert el.strip() and _slots(en) == _slots(el), en
    assert words.CLASS_NOTE in words.GREEK
    # The gateway's page for an expired mail link.
    from gateway.errors import EXPIRED_PAGE

    assert sorted(EXPIRED_PAGE) == ["el", "en"]
    assert len(EXPIRED_PAGE["en"]) == len(EXPIRED_PAGE["el"])
    assert all(x.strip() for x in EXPIRED_PAGE["el"])
    # Every template in both languages, each part (subject, text, html) there.
    for lang in ("en", "el"):
        have = {p.name for p in (templates.FOLDER / lang).iterdir()}
        for name in templates.names():
            for part in (".subject.txt", ".txt", ".html"):
                assert name + part in have, (lang, name + part)


def test_export_headers_are_the_pages_field_labels() -> None:
    """Every column of every entity export has a label in both languages (never the
    fallback made from its name), and it is the label the page shows for that field, so a
    file's header reads as the page does."""
    from ferry.datasets.query import entity_columns
    from ferry.tabular import labels

    for entity in SCHOOL.entities.values():
        _, _, columns = entity_columns(SCHOOL, entity, entity.table.alias("t"))
        title = f"entity_{entity.name}"
        assert labels.ENTITIES["en"][entity.name] == EN[title]
        assert labels.ENTITIES["el"][entity.name] == EL[title]
        for c in columns:
            assert labels.FIELDS["en"][c.name] == EN[f"field_{c.name}"], c.name
            assert labels.FIELDS["el"][c.name] == EL[f"field_{c.name}"], c.name
    # No two fields share a label in one language: an import could not tell them apart.
    for lang, table in labels.FIELDS.items():
        assert len(set(table.values())) == len(table), lang


def test_every_loss_reason_has_a_machine_reason_the_page_words() -> None:
    """Every reason a OneRoster loss is added with (each `loss.add(...)` of
    ferry/oneroster, its text or the constant it names) maps to a reason of its own, never
    LOSS_OTHER, and each of those reasons is worded in both languages (issue 24)."""
    import ast
    from pathlib import Path

    from ferry.errors import REASONS
    from ferry.oneroster.loss import OTHER, REASON_CODES, code_of

    root = Path(__file__).resolve().parents[2] / "ferry" / "oneroster"
    texts: list[str] = []
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            t.id: node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "loss"
                and len(node.args) == 4
            ):
                continue
            reason = node.args[3]
            if isinstance(reason, ast.Name):
                reason = constants[reason.id]
            if isinstance(reason, ast.JoinedStr):  # its text up to the first value
                first = reason.values[0]
                assert isinstance(first, ast.Constant), path
                reason = first
            value = ast.literal_eval(reason)
            texts.append(value if isinstance(value, str) else "".join(value))
    assert len(texts) >= 20
    assert [t for t in texts if code_of(t) == OTHER] == []
    for _, code in REASON_CODES:
        assert code in REASONS and f"why_{code}" in EN and f"why_{code}" in EL, code
