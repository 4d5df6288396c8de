"""Parsing display filters: precedence, operator spellings, the needles the decoder scans for,
the shortcuts, and one-line errors for anything else."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podcap.dfilter import compile_filter, contains_filter, uri_filter
from podcap.dfilter.lexer import NotNative
from podcap.dfilter.nodes import And, Compare, Exists, Literal, Not, Or
from podcap.dfilter.parser import parse
from podcap.errors import FilterError


def test_precedence_is_not_then_and_then_or():
    node = compile_filter("tcp.port == 81 || not tcp.port == 80 && tcp.flags.syn").node
    assert node == Or(
        Compare("tcp.port", "==", Literal("81", False)),
        And(Not(Compare("tcp.port", "==", Literal("80", False))), Exists("tcp.flags.syn")),
    )


def test_word_and_symbol_operators_parse_the_same():
    words = compile_filter("not (ip.src eq 10.0.0.1 and tcp.port ne 80) or udp").node
    symbols = compile_filter("!(ip.src == 10.0.0.1 && tcp.port != 80) || udp").node
    assert words == symbols


def test_contains_values_become_payload_needles():
    assert compile_filter('tcp contains "lbtest"').needles == {b"lbtest"}
    assert compile_filter("tcp contains 6c:62:74").needles == {b"lbt"}
    assert compile_filter(r'udp contains "\x6c\xffb"').needles == {b"l\xffb"}


def test_shortcuts_quote_their_text():
    assert contains_filter('say "hi"') == r'tcp contains "say \"hi\""'
    assert uri_filter("/mytest") == 'http.request.uri == "/mytest"'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ip.addr == bogus", '"bogus" is not a valid hostname or IPv4 address'),
        ("foo.bar == 1", "foo.bar"),
        ('tcp contains "open', "not closed"),
        ("(tcp", "Unexpected end of filter expression"),
        ("", "empty"),
        ("tcp.port == 99999", "too big for this field"),
    ],
)
def test_bad_filters_raise_one_line_filter_errors(text, message):
    with pytest.raises(FilterError) as caught:
        compile_filter(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@given(st.text(alphabet='tcpudiphtr.=!&|()" 0123456789:/~<>andornotcontains', max_size=40))
@settings(max_examples=300, deadline=None)
def test_any_text_parses_or_is_refused_cleanly(text):
    # The native parser either builds nodes, hands the text to tshark (NotNative), or
    # raises a one-line FilterError; nothing else escapes.
    try:
        parse(text)
    except NotNative:
        pass
    except FilterError as exc:
        assert "\n" not in str(exc)
