"""`job run -V/-E`: Bacalhau's placeholders rendered, anything else refused by name."""

from __future__ import annotations

import pytest

from edgebac.cli.templating import render, template_values
from edgebac.errors import BadRequest


@pytest.mark.parametrize(
    ("text", "values", "rendered"),
    [
        (
            "echo {{.greeting}} {{.name}}",
            {"greeting": "Hello", "name": "World"},
            "echo Hello World",
        ),
        ("a: {{ .x }}\nb: {{.x}}", {"x": "1"}, "a: 1\nb: 1"),
        ("no template here: {jobID}", {}, "no template here: {jobID}"),
        ("{{.v}}", {"v": "{{.w}}"}, "{{.w}}"),  # values are not templates themselves
    ],
)
def test_placeholders_are_rendered(text, values, rendered):
    assert render(text, values, "spec.yaml") == rendered


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("x\n{{.missing}}", "spec.yaml:2: template: no value for {{.missing}}"),
        ("{{if .a}}b{{end}}", "template action '{{if .a}}': only placeholders"),
        ("{{.a | printf}}", "only placeholders like {{.name}}"),
    ],
)
def test_a_missing_value_or_another_action_is_refused_where_it_is(text, said):
    with pytest.raises(BadRequest) as caught:
        render(text, {"a": "1"}, "spec.yaml")
    assert said in str(caught.value)


def test_values_come_from_matching_env_vars_then_v_pairs():
    environ = {"HOME": "/root", "BACALHAU_X": "env", "OTHER": "o"}
    assert template_values(("BACALHAU_X=flag", "n=1"), "^BACALHAU_", environ) == {
        "BACALHAU_X": "flag",
        "n": "1",
    }
    assert template_values((), "*", environ) == environ
    assert template_values(("a=b=c",), None, environ) == {"a": "b=c"}
    with pytest.raises(BadRequest, match="-V 'novalue': expected KEY=VALUE"):
        template_values(("novalue",), None, environ)
    with pytest.raises(BadRequest, match="not a regular expression"):
        template_values((), "(", environ)
