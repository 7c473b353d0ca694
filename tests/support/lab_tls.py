"""TLS of the lab's internal hops, as the Molecule tests and benches reach them.

recete.stack.internal_tls writes the CA's certificate to CA on every host that
needs it; the redis role speaks TLS when redis_tls is on (by default
internal_tls_enabled, on in the lab).
"""
CA = "/etc/recete/tls/ca.crt"


def redis_tls(variables):
    """Whether the inventory variables of a host say Redis and Sentinel speak TLS."""
    return bool(variables.get("redis_tls", variables.get("internal_tls_enabled", False)))


def redis_cli_tls_args(variables):
    """redis-cli's TLS arguments, as a list ([] without TLS)."""
    return ["--tls", "--cacert", CA] if redis_tls(variables) else []


def redis_cli_tls(variables):
    """redis-cli's TLS arguments for a command line (with a trailing space), or ''."""
    return "".join(arg + " " for arg in redis_cli_tls_args(variables))
