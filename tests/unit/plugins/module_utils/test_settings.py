"""Extra settings may not override what a role manages, nor smuggle line breaks or secrets into unit files."""
import pytest

from ansible_collections.recete.stack.plugins.module_utils._settings import extra_problems


@pytest.mark.parametrize("variable,extra,message", [
    ("pgbouncer_extra_settings", {"auth_type": "trust"}, "pgbouncer_extra_settings sets auth_type, which the role manages (use pgbouncer_auth_method)"),
    ("pgbouncer_extra_settings", {"listen_addr": "*"}, "sets listen_addr, which the role manages (use pgbouncer_listen_address)"),
    ("redis_config_extra", {"bind": "0.0.0.0"}, "redis_config_extra sets bind, which the role manages (use redis_bind_address)"),
    ("redis_config_extra", {"Protected-Mode": "no"}, "redis_config_extra sets Protected-Mode, which the role manages"),
    ("postgresql_extra_settings", {"listen_addresses": "*"}, "postgresql_extra_settings sets listen_addresses"),
    ("api_env_extra", {"HOST": "0.0.0.0"}, "api_env_extra sets HOST, which the role manages (use api_listen_address)"),
    ("worker_env_extra", {"REDIS_PASSWORD": "x"}, "worker_env_extra sets REDIS_PASSWORD, which the role manages"),
    ("app_release_env_extra", {"DATABASE_URL": "postgres://"}, "app_release_env_extra sets DATABASE_URL"),
    ("app_release_env_extra", {"RATE_LIMIT_POINTS": "100"},
     "app_release_env_extra sets RATE_LIMIT_POINTS, which the role manages (use app_release_rate_limit_points)"),
    ("api_env_extra", {"RATE_LIMIT_WINDOW_S": "60"}, "api_env_extra sets RATE_LIMIT_WINDOW_S, which the role manages (use app_release_rate_limit_window_s)"),
    ("api_env_extra", {"TRUSTED_PROXIES": "0.0.0.0/0"}, "api_env_extra sets TRUSTED_PROXIES, which the role manages (use app_release_trusted_proxies_extra)"),
    ("api_env_extra", {"STRIPE_SECRET_KEY": "sk_live_abc"}, "api_env_extra sets STRIPE_SECRET_KEY, which looks like a secret"),
    ("api_env_extra", {"BAD-NAME": "1"}, "'BAD-NAME' is not an environment variable name"),
    ("worker_env_extra", {"GREETING": "hello\nExecStartPre=/bin/sh"}, "the value of GREETING holds a line break"),
    ("api_env_extra", "not a dict", "api_env_extra must be a dictionary"),
    ("web_env_extra", {"API_URL": "http://x"}, "web_env_extra sets API_URL, which the role manages (use web_api_url)"),
    ("web_env_extra", {"HOSTNAME": "0.0.0.0"}, "web_env_extra sets HOSTNAME, which the role manages (use web_listen_address)"),
    ("web_env_extra", {"SESSION_SECRET": "abcdef"}, "web_env_extra sets SESSION_SECRET, which looks like a secret"),
])
def test_a_bad_extra_is_refused_naming_the_key_not_the_value(variable, extra, message):
    problems = extra_problems(variable, extra)
    assert len(problems) == 1 and message in problems[0], problems
    if isinstance(extra, dict):
        assert all(str(v) not in problems[0] for v in extra.values() if len(str(v)) > 2), problems


@pytest.mark.parametrize("variable,extra", [
    ("pgbouncer_extra_settings", {"server_idle_timeout": 60, "query_wait_timeout": 30}),
    ("redis_config_extra", {"hz": 20, "latency-tracking": "yes"}),
    ("postgresql_extra_settings", {"shared_buffers": "1GB", "work_mem": "8MB"}),
    ("api_env_extra", {"LOG_LEVEL": "info", "DISCOUNT": "10%"}),
    ("app_release_env_extra", {"STRIPE_SECRET_KEY": "sk_live_abc"}),   # the 0600 file is the place for secrets
    ("worker_env_extra", {}),
    ("web_env_extra", {"NODE_OPTIONS": "--max-old-space-size=256"}),
    ("api_env_extra", None),
])
def test_ordinary_extras_pass(variable, extra):
    assert extra_problems(variable, extra) == []
