"""What the Molecule tests know of a lab host: its roles' settings and its private address.

    from lab_settings import private_address, role_settings
    settings_of = role_settings(RUNNER, ["postgresql", "pgbouncer"], "postgresql")
    port = settings_of("pgbouncer1")["pgbouncer_listen_port"]
    address = private_address(RUNNER.get_host("pg1"))

One place for what every data-tier test file used to read on its own. Only the
standard library, PyYAML and testinfra, like the tests that use it.
"""
import functools
import os

import yaml

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())


def _literal(variables, prefixes=None):
    """The variables whose value is not a template: a "{{ }}" is Ansible's to resolve,
    and a test that needs such a value asks the host (or the inventory) instead."""
    return {key: value for key, value in variables.items()
            if "{{" not in str(value) and (prefixes is None or key.startswith(prefixes))}


def _load(path):
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def role_settings(runner, roles, lab_vars_file):
    """settings_of(name), cached: the variables of `roles` as they apply to inventory host
    `name`, lowest first: each role's defaults, the lab's
    inventories/lab/group_vars/all/<lab_vars_file>.yml, then the host's own inventory
    variables (Molecule's inventory) that carry one of the roles' prefixes."""
    paths = [os.path.join(PROJECT, "roles", role, "defaults", "main.yml") for role in roles]
    paths.append(os.path.join(PROJECT, "inventories", "lab", "group_vars", "all", lab_vars_file + ".yml"))
    base = {}
    for path in paths:
        base.update(_literal(_load(path)))
    prefixes = tuple(role + "_" for role in roles)

    @functools.lru_cache(maxsize=None)
    def settings_of(name):
        return {**base, **_literal(runner.get_variables(name), prefixes)}

    return settings_of


def private_address(host):
    """A testinfra host's private address: the source of its default route, which is
    the address the roles bind to (ansible_default_ipv4)."""
    route = host.check_output("ip -4 -o route get 1.1.1.1").split()
    return route[route.index("src") + 1]
