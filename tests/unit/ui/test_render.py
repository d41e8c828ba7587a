"""The UI's HTML: every value escaped unless built as Markup; sparklines scaled to their box."""

from __future__ import annotations

from hypothesis import given, strategies as st

from jobpool.queue.browse import entry_before
from jobpool.ui import render
from jobpool.ui.render import Markup, escape, fragment


def test_a_value_with_markup_is_escaped_and_markup_built_here_is_not():
    html = fragment("<td>$error</td>$cell", error='<script>alert("x")</script>', cell=Markup("<td>ok</td>"))
    assert html == "<td>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</td><td>ok</td>"


@given(st.text())
def test_no_text_survives_escaping_as_a_tag_or_an_attribute_break(text):
    escaped = escape(text)
    assert "<" not in escaped and ">" not in escaped and '"' not in escaped and "'" not in escaped


def test_a_page_escapes_its_values_and_wraps_them_in_the_base_page():
    page = render.page(
        "message.html", root="../", title="<i>t</i>", message="<b>no</b>", status_class="notice"
    )
    assert "&lt;b&gt;no&lt;/b&gt;" in page and "<b>no</b>" not in page and "&lt;i&gt;t&lt;/i&gt;" in page
    assert 'href="../static/ui.css"' in page


def test_a_sparkline_spans_its_box_and_puts_the_largest_value_at_the_top():
    points = [tuple(map(float, p.split(","))) for p in render.sparkline_points([0, 5, 10], 120, 24).split()]
    assert points == [(0.0, 23.0), (60.0, 12.0), (120.0, 1.0)]
    assert render.sparkline_points([]) == ""
    assert render.sparkline_points([0, 0]) == "0.0,23.0 120.0,23.0"


def test_the_entry_before_an_id_is_what_xread_reads_it_after():
    assert entry_before("1700000000000-3") == "1700000000000-2"
    assert entry_before("1700000000000-0") == "1699999999999-18446744073709551615"
    assert entry_before("0-0") == "0-0"
