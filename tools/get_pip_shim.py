"""Stand-in for the get-pip.py bootstrap script that ansible-test downloads.

ansible-test bootstraps pip into each of its sanity venvs with a script it
fetches from a host this network cannot reach. This does the same job with
what the interpreter ships: pip runs straight from the wheel bundled with
`ensurepip` and installs the pinned packages from PyPI (one install; the older
way, `ensurepip` and then the pinned pip over it, installed pip twice and is
kept as the fallback). tools/sanity places this file where ansible-test caches
that script. ansible-test runs it with get-pip's arguments (pip options, then
the pinned packages).
"""
import ensurepip
import glob
import os
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}
ARGS = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]

bundled = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")))
if bundled:
    # A pip wheel is runnable as it is: python pip-X.whl/pip install ...
    subprocess.check_call([sys.executable, os.path.join(bundled[-1], "pip"), "install", "-q"] + ARGS)
else:
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"],
                          stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q"] + ARGS)
