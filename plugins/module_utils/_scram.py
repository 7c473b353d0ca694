# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL's SCRAM-SHA-256 secret of a password (RFC 5802 and 7677), as pg_authid stores it.

PgBouncer's auth_file takes the same secrets as pg_authid, so a console user's
password need not be on disk in plain text. Written here because no maintained
Python library makes this string: passlib's scram hashes have another format, and
psycopg and community.postgresql hand the password to the server, which hashes it.
The salt is derived from the password and a seed (the user's name), so the file is
the same on every run (idempotence) and differs between users and passwords.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import stringprep
import unicodedata

ITERATIONS = 4096   # PostgreSQL's default scram_iterations
SALT_BYTES = 16     # what PostgreSQL generates


def saslprep(password):
    """The password as libpq and PostgreSQL hash it (RFC 4013; the raw text where SASLprep refuses it)."""
    mapped = "".join(" " if stringprep.in_table_c12(ch) else ch
                     for ch in password if not stringprep.in_table_b1(ch))
    normal = unicodedata.normalize("NFKC", mapped)
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
                  stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
                  stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
                  stringprep.in_table_a1)
    if not normal or any(check(ch) for ch in normal for check in prohibited):
        return password
    return normal


def derived_salt(password, seed):
    """A salt that stays the same for one password and seed, and differs otherwise."""
    return hmac.new(password.encode("utf-8"), b"recete.stack scram salt\0" + seed.encode("utf-8"),
                    hashlib.sha256).digest()[:SALT_BYTES]


def scram_secret(password, salt, iterations=ITERATIONS):
    """SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, each part base64."""
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data):
        return base64.b64encode(data).decode("ascii")
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored_key), b64(server_key))


def scram_sha_256(password, seed, iterations=ITERATIONS):
    """The secret of `password`, its salt derived from it and `seed` (same input, same secret)."""
    password = str(password)
    return scram_secret(password, derived_salt(password, str(seed)), iterations)
