"""The release artifacts the deploy scenario rolls out besides 1.0.0, in .cache/release: built
on first use by the tests, or all ahead of time by running this file (tools/test does, beside
the Molecule scenarios, so that no test under load waits for a build).

    from releases import app_artifact
    app_artifact("1.2.0-notready", fault="not-ready")   # a broken variant of 1.1.0

Only the standard library (and web_lab for the web tier's artifacts).
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.dirname(os.path.dirname(HERE))
RELEASES = os.path.join(PROJECT, ".cache", "release")

# What molecule/deploy/tests deploy: (version, fault) - a fault makes a broken copy of 1.1.0
# (tests/support/faulty_release.py) or, for the web tier, of 1.0.0 (web_lab.web_artifact).
DEPLOY_APP = [("1.1.0", None), ("1.2.0-notready", "not-ready"), ("1.2.1-errors", "server-errors"),
              ("1.3.0-nomigration", "failing-migration")]
DEPLOY_WEB = [("1.1.0", None), ("1.2.0-notready", "not-ready")]


def app_artifact(version, fault=None):
    """The API's artifact of a version: built from examples/app, or a broken variant of 1.1.0."""
    path = os.path.join(RELEASES, f"recete-app-{version}.tar.gz")
    if not os.path.exists(path):
        if fault:
            subprocess.run([sys.executable, os.path.join(HERE, "faulty_release.py"),
                            app_artifact("1.1.0"), version, fault], check=True, capture_output=True)
        else:
            subprocess.run([os.path.join(PROJECT, "examples", "app", "scripts", "build-release.sh"), RELEASES],
                           check=True, capture_output=True, env=dict(os.environ, APP_VERSION=version))
    return path


def main():
    os.environ.setdefault("MOLECULE_PROJECT_DIRECTORY", PROJECT)
    sys.path.insert(0, HERE)
    from web_lab import web_artifact   # noqa: E402  (imports testinfra: only where the tests run)
    for version, fault in DEPLOY_APP:
        print(app_artifact(version, fault), flush=True)
    for version, fault in DEPLOY_WEB:
        print(web_artifact(version, fault=fault), flush=True)


if __name__ == "__main__":
    main()
