"""PostgreSQL's SCRAM-SHA-256 secrets, checked against RFC 7677's worked exchange."""
import base64
import hashlib
import hmac

from ansible_collections.recete.stack.plugins.module_utils._scram import saslprep, scram_secret, scram_sha_256

# RFC 7677, section 3: user "user", password "pencil", this salt, 4096 iterations.
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_AUTH_MESSAGE = (
    "n=user,r=rOprNGfwEbeRWgbNEkqO,"
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").encode()
RFC_CLIENT_PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_SIGNATURE = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def keys(secret):
    head, salt_part, key_part = secret.split("$")
    iterations, salt = salt_part.split(":")
    stored, server = key_part.split(":")
    return head, int(iterations), base64.b64decode(salt), base64.b64decode(stored), base64.b64decode(server)


def test_the_secret_accepts_the_rfc_clients_proof_and_signs_as_the_rfc_server():
    head, iterations, salt, stored_key, server_key = keys(scram_secret("pencil", RFC_SALT))
    assert (head, iterations, salt) == ("SCRAM-SHA-256", 4096, RFC_SALT)
    # What a server holding only the secret does: recover the client key from the proof, compare its hash.
    signature = hmac.new(stored_key, RFC_AUTH_MESSAGE, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(RFC_CLIENT_PROOF, signature))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert base64.b64encode(hmac.new(server_key, RFC_AUTH_MESSAGE, hashlib.sha256).digest()).decode() \
        == RFC_SERVER_SIGNATURE


def test_a_wrong_password_gives_other_keys():
    assert keys(scram_secret("pencil", RFC_SALT))[3:] != keys(scram_secret("pencil!", RFC_SALT))[3:]


def test_the_same_password_and_seed_give_the_same_secret_and_other_seeds_another_salt():
    first = scram_sha_256("a-long-enough-secret-value", "pgbouncer_admin")
    assert first == scram_sha_256("a-long-enough-secret-value", "pgbouncer_admin")
    other_user = scram_sha_256("a-long-enough-secret-value", "pgbouncer_stats")
    other_password = scram_sha_256("another-long-secret-value", "pgbouncer_admin")
    assert len({keys(first)[2], keys(other_user)[2], keys(other_password)[2]}) == 3
    assert len(keys(first)[2]) == 16


def test_saslprep_maps_spaces_and_drops_soft_hyphens_and_keeps_what_it_refuses():
    assert saslprep("I\u00adX") == "IX"            # RFC 4013 example: soft hyphen mapped to nothing
    assert saslprep("user\u00a0name") == "user name"  # non-ASCII space to space
    assert saslprep("\u2168") == "IX"               # NFKC
    assert saslprep("a\u0007b") == "a\u0007b"       # prohibited: PostgreSQL then hashes the raw text
