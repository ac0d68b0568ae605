from hypothesis import given
from hypothesis import strategies as st

from ferry.tabular.safety import TRIGGERS, neutralise, restore

# Strings built from the characters the scheme cares about, so the edge cases come often.
tricky = st.text(alphabet=st.sampled_from(["'", "=", "+", "-", "@", "\t", "\r", "\0", "a", "1"]))


@given(st.one_of(st.text(), tricky))
def test_restore_undoes_neutralise_for_every_string(s: str) -> None:
    assert restore(neutralise(s)) == s


@given(st.one_of(st.text(), tricky))
def test_neutralised_strings_never_start_with_a_formula_trigger(s: str) -> None:
    assert neutralise(s)[:1] not in TRIGGERS or not s


def test_each_trigger_is_prefixed_with_a_single_quote() -> None:
    for ch in "=+-@\t\r\0":
        assert neutralise(ch + "1+1") == "'" + ch + "1+1"


def test_plain_and_leading_quote_strings_are_left_alone() -> None:
    assert neutralise("Ελένη") == "Ελένη"
    assert neutralise("'tis") == "'tis"
    assert restore("'tis") == "'tis"


def test_a_quoted_trigger_gets_one_more_quote_so_it_restores_exactly() -> None:
    assert neutralise("'=1") == "''=1"
    assert restore("''=1") == "'=1"
