#!/usr/bin/env python3
"""Make a broken variant of a release artifact, for deploy tests and benches.

    tests/support/faulty_release.py GOOD.tar.gz VERSION FAULT

FAULT is one of:
  not-ready          GET /ready always answers 503 (the readiness gate fails)
  failing-migration  node src/migrate.js exits 1 (the deploy must stop before any instance changes)
  server-errors      /ready passes but every other request answers 500 (the canary must catch it)

Writes recete-app-VERSION.tar.gz and its .sha256 next to GOOD and prints the
path. The code is patched in place of a real bug: these are the failures a
deploy must survive, made on purpose. Test support only, never shipped.
"""
import hashlib
import io
import os
import sys
import tarfile

PATCHES = {
    # (file inside the release, text to find, replacement)
    "not-ready": ("src/api.js", "ok ? 200 : 503);", "503); // injected: never ready"),
    "failing-migration": ("src/migrate.js", "  const client = await db.connect();",
                          "  throw new Error('injected migration failure');\n  const client = await db.connect();"),
    "server-errors": ("src/api.js", "  app.get('/ready', async (c) => {",
                      "  app.use('/items/*', async (c) => c.json({ error: 'injected' }, 500));\n"
                      "  app.get('/ready', async (c) => {"),
}


def main(argv):
    if len(argv) != 4 or argv[3] not in PATCHES:
        sys.stderr.write(__doc__)
        return 2
    good, version, fault = argv[1], argv[2], argv[3]
    target, find, replace = PATCHES[fault]
    out = os.path.join(os.path.dirname(os.path.abspath(good)), "recete-app-%s.tar.gz" % version)
    patched = False
    with tarfile.open(good) as src, tarfile.open(out + ".tmp", "w:gz") as dst:
        for member in src.getmembers():
            top, _, rest = member.name.partition("/")
            data = src.extractfile(member).read() if member.isfile() else None
            member.name = "recete-app-%s" % version + ("/" + rest if rest else "")
            if rest == target:
                text = data.decode()
                if find not in text:
                    sys.exit("faulty_release: %r not found in %s: update the patch" % (find, target))
                data = text.replace(find, replace, 1).encode()
                patched = True
            if rest == "VERSION":
                data = (version + "\n").encode()
            if data is not None:
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
            else:
                dst.addfile(member)
    if not patched:
        sys.exit("faulty_release: %s not in %s" % (target, good))
    os.replace(out + ".tmp", out)
    with open(out, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    with open(out + ".sha256", "w") as handle:
        handle.write("%s  %s\n" % (digest, os.path.basename(out)))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
