from __future__ import annotations

import pytest

from prm.notifications.templates import TemplateError, TemplateSource, check, render


def test_renders_declared_variables() -> None:
    src = TemplateSource(subject="Hi {{ name }}", body="See you at {{ time }}", variables=("name", "time"))
    out = render(src, {"name": "Ana", "time": "10:00", "ignored": "x"})
    assert out.subject == "Hi Ana" and out.body == "See you at 10:00"


def test_missing_variable_is_an_error_not_a_blank() -> None:
    src = TemplateSource(body="At {{ time }}", variables=("time",))
    with pytest.raises(TemplateError) as err:
        render(src, {})
    assert err.value.field == "variables.time"


def test_undeclared_variable_is_refused() -> None:
    with pytest.raises(TemplateError) as err:
        check(TemplateSource(body="{{ secret }}", variables=()))
    assert err.value.field == "variables" and "secret" in err.value.message


def test_syntax_error_names_the_part() -> None:
    with pytest.raises(TemplateError) as err:
        check(TemplateSource(body="ok", subject="{% if %}", variables=()))
    assert err.value.field == "subject"


def test_sandbox_blocks_internals() -> None:
    src = TemplateSource(body="{{ x.__class__.__mro__ }}", variables=("x",))
    with pytest.raises(TemplateError):
        render(src, {"x": "a"})


def test_html_is_escaped_text_is_not() -> None:
    src = TemplateSource(body="{{ n }}", html_body="<p>{{ n }}</p>", variables=("n",))
    out = render(src, {"n": "<b>"})
    assert out.body == "<b>" and out.html_body == "<p>&lt;b&gt;</p>"


def test_invalid_variable_name() -> None:
    with pytest.raises(TemplateError):
        check(TemplateSource(body="x", variables=("not valid",)))
