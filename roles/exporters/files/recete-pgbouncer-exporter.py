"""PgBouncer metrics for Prometheus, read from PgBouncer's admin console on each scrape.

Why our own: Debian 12's prometheus-pgbouncer-exporter (1.7) crashes at start
against Debian 12's PgBouncer 1.18 (KeyError 'total_requests': SHOW STATS
renamed its columns in PgBouncer 1.8), and prometheus-community's Go
pgbouncer_exporter is not packaged. This uses Debian's python3-prometheus-client
and python3-psycopg2 and the metric names of prometheus-community's exporter,
so its dashboards and rules apply.

Settings come from the environment (the unit's settings file):
PGBOUNCER_HOST, PGBOUNCER_PORT, PGBOUNCER_USER (a stats user: SHOW commands
only), LISTEN_ADDRESS, LISTEN_PORT; the password from PGPASSFILE.
"""
import os
import signal
import sys

import psycopg2
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

# SHOW POOLS column -> (metric, help); per database and user.
POOLS = {
    "cl_active": ("pgbouncer_pools_client_active_connections", "Client connections linked to a server connection"),
    "cl_waiting": ("pgbouncer_pools_client_waiting_connections", "Client connections waiting for a server connection"),
    "sv_active": ("pgbouncer_pools_server_active_connections", "Server connections linked to a client"),
    "sv_idle": ("pgbouncer_pools_server_idle_connections", "Server connections idle and ready"),
    "sv_used": ("pgbouncer_pools_server_used_connections", "Server connections idle longer than server_check_delay"),
    "sv_login": ("pgbouncer_pools_server_login_connections", "Server connections logging in"),
}
# SHOW STATS column -> (metric, help, divisor to seconds or 1); per database.
STATS = {
    "total_xact_count": ("pgbouncer_stats_sql_transactions_pooled_total", "Transactions pooled", 1),
    "total_query_count": ("pgbouncer_stats_queries_pooled_total", "Queries pooled", 1),
    "total_received": ("pgbouncer_stats_received_bytes_total", "Bytes received from clients", 1),
    "total_sent": ("pgbouncer_stats_sent_bytes_total", "Bytes sent to clients", 1),
    "total_xact_time": ("pgbouncer_stats_server_in_transaction_seconds_total", "Time in transactions", 1e6),
    "total_query_time": ("pgbouncer_stats_queries_duration_seconds_total", "Time running queries", 1e6),
    "total_wait_time": ("pgbouncer_stats_client_wait_seconds_total", "Time clients waited for a server", 1e6),
}
# SHOW DATABASES column -> (metric, help); per database.
DATABASES = {
    "pool_size": ("pgbouncer_databases_pool_size", "Maximum server connections of the pool"),
    "current_connections": ("pgbouncer_databases_current_connections", "Server connections of the database"),
    "max_connections": ("pgbouncer_databases_max_connections", "Maximum server connections (0 = unlimited)"),
}


def rows(cursor, command):
    cursor.execute(command)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, r)) for r in cursor.fetchall()]


class PgbouncerCollector:
    def __init__(self, host, port, user):
        self.dsn = {"host": host, "port": port, "user": user, "dbname": "pgbouncer", "connect_timeout": 3}

    def collect(self):
        up = GaugeMetricFamily("pgbouncer_up", "Whether the admin console answered")
        try:
            # The admin console speaks the simple query protocol only: no
            # transaction around the SHOW commands (autocommit).
            conn = psycopg2.connect(**self.dsn)
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    pools, stats, databases = rows(cur, "SHOW POOLS"), rows(cur, "SHOW STATS"), rows(cur, "SHOW DATABASES")
                    config = {r["key"]: r["value"] for r in rows(cur, "SHOW CONFIG")}
            finally:
                conn.close()
        except psycopg2.Error as exc:
            print("pgbouncer admin console: %s" % str(exc).strip(), file=sys.stderr, flush=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for column, (name, text) in POOLS.items():
            family = GaugeMetricFamily(name, text, labels=["database", "user"])
            for row in pools:
                family.add_metric([row["database"], row["user"]], float(row.get(column) or 0))
            yield family
        wait = GaugeMetricFamily("pgbouncer_pools_client_maxwait_seconds", "Longest wait of a client in the queue",
                                 labels=["database", "user"])
        for row in pools:
            wait.add_metric([row["database"], row["user"]], float(row["maxwait"]) + float(row.get("maxwait_us") or 0) / 1e6)
        yield wait
        for column, (name, text, divisor) in STATS.items():
            family = CounterMetricFamily(name, text, labels=["database"])
            for row in stats:
                if column in row:
                    family.add_metric([row["database"]], float(row[column]) / divisor)
            yield family
        for column, (name, text) in DATABASES.items():
            family = GaugeMetricFamily(name, text, labels=["database"])
            for row in databases:
                family.add_metric([row["name"]], float(row.get(column) or 0))
            yield family
        limit = GaugeMetricFamily("pgbouncer_config_max_client_connections", "max_client_conn")
        limit.add_metric([], float(config.get("max_client_conn", 0)))
        yield limit


def main():
    env = os.environ
    REGISTRY.register(PgbouncerCollector(env.get("PGBOUNCER_HOST", "127.0.0.1"), int(env.get("PGBOUNCER_PORT", "6432")),
                                         env.get("PGBOUNCER_USER", "pgbouncer_stats")))
    start_http_server(int(env.get("LISTEN_PORT", "9127")), addr=env["LISTEN_ADDRESS"])
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
