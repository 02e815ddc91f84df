"""Input that would mislead the people who read it, or the rules that use it, is refused."""

from __future__ import annotations

import pytest

from tests.integration.api.conftest import Api
from tests.integration.api.test_registry_api import resident

pytestmark = pytest.mark.integration  # the `api` fixture: SQLite and PostgreSQL

# A right-to-left override makes "张建国\u202e13800" read backwards in an alert; a
# control character can cut an SMS short or forge a line.
TRICKS = ["张建国\u202e00831", "王芳\u2066x\u2069", "李\x00四", "赵\x1b[31m", "   "]


@pytest.mark.parametrize("name", TRICKS)
def test_names_with_control_or_direction_characters_are_refused(api: Api, name: str) -> None:
    created = resident(api)
    for method, path, body in (
        ("POST", "/residents", {"name": name, "grid_id": api.ids["grid_a"]}),
        ("PATCH", f"/residents/{created['id']}", {"name": name}),
        (
            "PATCH",
            f"/residents/{created['id']}",
            {"contacts": [{"name": name, "relation": "儿子", "phone": "13800138000"}]},
        ),
        ("POST", "/grids", {"name": name, "community_id": api.ids["community"]}),
    ):
        answer = api.request("admin", method, path, json=body)
        assert answer.status_code == 422, (method, path, answer.text)


def test_a_plain_chinese_name_with_a_middle_dot_is_fine(api: Api) -> None:
    created = resident(api, name="阿依古丽·买买提")
    assert created["name"] == "阿依古丽·买买提"


def test_a_low_heart_rate_limit_above_the_high_one_is_refused(api: Api) -> None:
    created = resident(api)
    answer = api.request(
        "admin",
        "PATCH",
        f"/residents/{created['id']}",
        json={"vital_limits": {"hr_low": 130, "hr_high": 100}},
    )
    assert answer.status_code == 422
    assert "hr_low must be below hr_high" in answer.text
