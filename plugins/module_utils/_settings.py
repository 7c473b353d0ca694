# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of the free-form `*_extra` dictionaries, on the controller and in the roles.

Each role merges an operator's extra settings over the ones it writes. Without
a check, an extra key silently replaced a security setting the role manages
(PgBouncer `auth_type: trust`, `listen_addr: "*"`, Redis `bind 0.0.0.0`, the
API's HOST), and an environment value with a line break or `%` broke the unit
file it lands in. The lists name what each role manages; a key the role sets
from a variable of its own names that variable.
"""
from __future__ import annotations

import re

# variable -> {managed key (lower case): the role's own variable, or None}
MANAGED = {
    "redis_config_extra": {
        "bind": "redis_bind_address", "port": "redis_port", "protected-mode": None, "dir": None, "aclfile": None,
        "appendonly": None, "appendfilename": None, "appenddirname": None, "pidfile": None, "logfile": None,
        "maxmemory": "redis_maxmemory", "maxmemory-policy": "redis_maxmemory_policy",
        "appendfsync": "redis_appendfsync", "min-replicas-to-write": "redis_min_replicas_to_write",
        "min-replicas-max-lag": "redis_min_replicas_max_lag", "masteruser": "redis_replication_user",
        "masterauth": "redis_replication_password", "requirepass": None, "replicaof": None, "slaveof": None,
        "user": None, "include": None, "rename-command": None, "unixsocket": None, "unixsocketperm": None,
        "daemonize": None, "supervised": None, "enable-debug-command": None, "enable-module-command": None,
        "enable-protected-configs": None,
    },
    "pgbouncer_extra_settings": {
        "listen_addr": "pgbouncer_listen_address", "listen_port": "pgbouncer_listen_port", "auth_type": "pgbouncer_auth_method",
        "auth_file": None, "auth_hba_file": None, "auth_user": "pgbouncer_auth_user", "auth_query": None,
        "auth_dbname": None, "admin_users": None, "stats_users": None, "unix_socket_dir": "pgbouncer_unix_socket_dir",
        "unix_socket_mode": None, "unix_socket_group": None, "logfile": None, "pidfile": None,
        "pool_mode": "pgbouncer_pool_mode", "max_client_conn": "pgbouncer_max_client_conn",
        "default_pool_size": "pgbouncer_default_pool_size", "server_tls_sslmode": "pgbouncer_server_tls_sslmode",
        "server_tls_ca_file": "pgbouncer_server_tls_ca_file", "client_tls_sslmode": None, "client_tls_key_file": None,
        "client_tls_cert_file": None, "client_tls_ca_file": None,
    },
    "postgresql_extra_settings": {
        "listen_addresses": None, "port": "postgresql_port", "password_encryption": None, "hba_file": None,
        "ident_file": None, "data_directory": None, "config_file": None, "unix_socket_directories": None,
        "unix_socket_permissions": None, "archive_mode": None, "archive_command": None, "restore_command": None,
        "primary_conninfo": None, "primary_slot_name": None, "ssl": None, "ssl_cert_file": None, "ssl_key_file": None,
        "ssl_ca_file": None, "ssl_min_protocol_version": None,
    },
    "api_env_extra": {
        "port": None, "host": "api_listen_address", "app_instance": None, "pg_pool_size": "api_pg_pool_size",
        "shutdown_timeout_ms": "api_shutdown_timeout_ms", "node_env": None, "cpu_quota_cores": "api_cpu_quota",
    },
    "worker_env_extra": {
        "metrics_host": "worker_metrics_listen_address", "metrics_port_base": "worker_metrics_port_base",
        "worker_concurrency": "worker_concurrency", "worker_index": None, "node_env": None,
    },
    "app_release_env_extra": {},
    # The web tier's unit (roles/web): what the role sets from its own variables.
    "web_env_extra": {
        "port": None, "hostname": "web_listen_address", "web_instance": None, "api_url": "web_api_url",
        "keep_alive_timeout": "web_keep_alive_timeout_ms", "node_env": None, "next_telemetry_disabled": None,
        "node_extra_ca_certs": "web_api_ca_file",
    },
}
# The release's environment file (0600) is read by every instance; the tier
# extras may not replace what it says either.
RELEASE_ENV = ("database_url", "database_hosts", "database_ro_urls", "redis_sentinels", "redis_master_name",
               "redis_username", "redis_password", "redis_sentinel_username", "redis_sentinel_password",
               "redis_tls_ca_file", "queue_name", "cache_sentinels", "cache_redis_url")
# ... and those of its keys that a variable of app_release sets. The rate limit
# is one budget for the whole API tier: an instance must not count differently.
RELEASE_ENV_OWN = {"rate_limit_points": "app_release_rate_limit_points",
                   "rate_limit_window_s": "app_release_rate_limit_window_s",
                   "trusted_proxies": "app_release_trusted_proxies_extra",
                   # One cache for the tier: an instance reading another cache would serve stale items.
                   "cache_master_name": "app_release_cache_master_name",
                   "cache_username": "app_release_cache_user",
                   "cache_password": "app_release_cache_password",
                   "cache_ttl_s": "app_release_cache_ttl_s"}
for _tier in ("api_env_extra", "worker_env_extra", "app_release_env_extra"):
    MANAGED[_tier].update(dict.fromkeys(RELEASE_ENV))
    MANAGED[_tier].update(RELEASE_ENV_OWN)
# Environment dictionaries that end up in a unit file readable by every local user.
IN_UNIT_FILE = ("api_env_extra", "worker_env_extra", "web_env_extra")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
LOOKS_SECRET = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|CREDENTIAL|(^|_)KEY(_|$)", re.IGNORECASE)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def extra_problems(variable, extra):
    """Messages for one `*_extra` dictionary (its keys and values, never printing a value)."""
    if extra in (None, ""):
        return []
    if not isinstance(extra, dict):
        return ["%s must be a dictionary of settings" % variable]
    managed = MANAGED.get(variable, {})
    environment = variable.endswith("_env_extra")
    problems = []
    for key in sorted(extra, key=str):
        name = str(key)
        own = managed.get(name.lower(), False)
        if own is not False:
            problems.append("%s sets %s, which the role manages%s" % (
                variable, name, " (use %s)" % own if own else ""))
            continue
        if environment and not ENV_NAME.match(name):
            problems.append("%s: %r is not an environment variable name (letters, digits, _)" % (variable, name))
            continue
        if environment and variable in IN_UNIT_FILE and LOOKS_SECRET.search(name):
            problems.append("%s sets %s, which looks like a secret, in a unit file every local user can read "
                            "(put it in app_release_env_extra: the release's 0600 environment file)" % (variable, name))
            continue
        if CONTROL.search(str(extra[key])):
            problems.append("%s: the value of %s holds a line break or another control character" % (variable, name))
    return problems
