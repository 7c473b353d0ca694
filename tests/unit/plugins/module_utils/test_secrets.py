"""Secrets refused on the controller: placeholders, short, line breaks, repeats; never the value shown."""
import pytest

from ansible_collections.recete.stack.plugins.module_utils._secrets import secret_problems

GOOD = "9f2c4e7a1b3d5f60"


def one(value, name="redis_app_password", distinct=True):
    return secret_problems([{"name": name, "host": "redis1", "value": value, "distinct": distinct}])


@pytest.mark.parametrize("value,reason", [
    ("CHANGE-ME", "is a placeholder"),
    ("change_me_before_production", "is a placeholder"),
    ("xxxxxxxxxxxxxxxxxxxx", "is a placeholder"),
    ("password", "is a placeholder"),
    ("short-secret", "is shorter than 16 characters"),
    (GOOD + "\n", "holds a line break"),
    ("9f2c4e7a\n1b3d5f60aa", "holds a line break"),
    (GOOD + "\t", "holds a control character"),
])
def test_a_bad_value_is_refused_by_name_without_showing_it(value, reason):
    problems = one(value)
    prefix = "redis_app_password (redis1) "
    assert len(problems) == 1 and problems[0].startswith(prefix + reason), problems
    assert value.strip() not in problems[0][len(prefix):], problems


@pytest.mark.parametrize("value", [GOOD, "lab-app-password", "a" * 15 + "b", None, ""])
def test_good_and_unset_values_pass(value):
    assert one(value) == []


def test_repeated_distinct_secrets_are_refused_once_and_copies_may_repeat():
    checks = [
        {"name": "redis_admin_password", "host": "redis1", "value": GOOD, "distinct": True},
        {"name": "redis_admin_password", "host": "redis2", "value": GOOD, "distinct": True},   # the same on each host
        {"name": "redis_app_password", "host": "redis1", "value": GOOD, "distinct": True},
        {"name": "redis_app_password", "host": "redis2", "value": GOOD, "distinct": True},
        {"name": "app_release_redis_password", "host": "api1", "value": GOOD, "distinct": False},   # a client's copy
    ]
    assert secret_problems(checks) == [
        "redis_app_password (redis1) has the same value as redis_admin_password (each secret must be its own)"]


def test_the_minimum_can_be_raised():
    assert secret_problems([{"name": "x", "value": GOOD}], minimum=32) == ["x is shorter than 32 characters"]


def test_placeholders_alike_are_named_once_each_not_as_repeats():
    checks = [{"name": n, "host": h, "value": "CHANGE-ME", "distinct": True}
              for n in ("redis_admin_password", "redis_app_password") for h in ("redis1", "redis2")]
    assert [p.split(" is ")[0] for p in secret_problems(checks)] == [
        "redis_admin_password (redis1)", "redis_app_password (redis1)"]
