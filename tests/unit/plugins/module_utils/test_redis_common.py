"""The Sentinel modules' TLS options, as redis-py takes them."""
from ansible_collections.recete.stack.plugins.module_utils._redis_common import sentinel_argument_spec, tls_options


def test_no_tls_adds_nothing():
    assert tls_options({"tls": False, "ca_file": "/etc/recete/tls/ca.crt"}) == {}
    assert tls_options({}) == {}


def test_tls_verifies_the_certificate_and_the_name():
    assert tls_options({"tls": True, "ca_file": "/etc/recete/tls/ca.crt"}) == {
        "ssl": True, "ssl_ca_certs": "/etc/recete/tls/ca.crt", "ssl_cert_reqs": "required", "ssl_check_hostname": True}


def test_the_options_are_in_every_sentinel_module():
    spec = sentinel_argument_spec()
    assert spec["tls"] == {"type": "bool", "default": False}
    assert spec["ca_file"] == {"type": "path"}
