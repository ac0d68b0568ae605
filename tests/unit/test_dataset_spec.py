import pytest

from ferry.datasets.school import SCHOOL
from ferry.datasets.spec import Dataset, Entity, Field, Reference, Scope, SpecError
from ferry.db import models as m
from ferry.v1 import bundle_pb2 as pb


def test_school_order_puts_every_parent_first() -> None:
    order = SCHOOL.order
    for e in SCHOOL.in_order():
        for ref in e.references:
            if not SCHOOL.is_late(e.name, ref):
                assert order.index(ref.parent) < order.index(e.name), (e.name, ref.parent)
    assert order[:2] == ("courses", "students")
    assert set(order) == set(SCHOOL.entities)


def test_self_references_are_late_bound() -> None:
    assert SCHOOL.late == {("courses", "prerequisite_id"), ("students", "mentor_id")}


def entity(name: str, refs: tuple[Reference, ...]) -> Entity:
    return Entity(
        name, m.Course, pb.Course, ("code",), (Field("code"),), refs, (Scope(column="code"),)
    )


def test_cycle_through_nullable_links_is_cut_and_marked_late() -> None:
    ds = Dataset.of(
        "cyc",
        "x",
        [
            entity("a", (Reference(("b_code",), "b", "b_id", nullable=True),)),
            entity("b", (Reference(("a_code",), "a", "a_id", nullable=True),)),
            entity("c", (Reference(("a_code",), "a", "a_id"),)),
        ],
    )
    assert ds.late == {("a", "b_id"), ("b", "a_id")}
    assert ds.order.index("a") < ds.order.index("c")


def test_cycle_without_a_nullable_link_is_rejected() -> None:
    with pytest.raises(SpecError, match="inside a cycle and must be nullable"):
        Dataset.of(
            "bad",
            "x",
            [
                entity("a", (Reference(("b_code",), "b", "b_id"),)),
                entity("b", (Reference(("a_code",), "a", "a_id"),)),
            ],
        )


def test_reference_to_unknown_entity_or_mismatched_key_is_rejected() -> None:
    with pytest.raises(SpecError, match="unknown entity 'zz'"):
        Dataset.of("bad", "x", [entity("a", (Reference(("z",), "zz", "z_id"),))])
    with pytest.raises(SpecError, match="do not match the natural key"):
        Dataset.of("bad", "x", [entity("a", (Reference(("p", "q"), "a", "a_id", nullable=True),))])


def test_unknown_entity_lookup_lists_known() -> None:
    with pytest.raises(SpecError, match="known: courses, students"):
        SCHOOL.entity("teachers")


def test_natural_keys_match_the_design() -> None:
    keys = {e.name: e.natural_key for e in SCHOOL.in_order()}
    assert keys == {
        "courses": ("course_code",),
        "students": ("student_id",),
        "enrollments": ("student_id", "course_code"),
        "grades": ("student_id", "course_code", "assessment"),
        "attendance": ("student_id", "course_code", "date"),
        "daily_performance": ("student_id", "course_code", "date", "category"),
        "highlights": ("student_id", "semester", "title"),
    }


def test_every_record_batch_field_has_an_entity() -> None:
    batch_fields = {f.name for f in pb.RecordBatch.DESCRIPTOR.fields}
    assert batch_fields == set(SCHOOL.entities)
    for e in SCHOOL.in_order():
        assert pb.RecordBatch.DESCRIPTOR.fields_by_name[e.name].message_type is e.message.DESCRIPTOR
