"""Stand-in for the get-pip.py bootstrap script that ansible-test downloads.

ansible-test bootstraps pip into each of its sanity venvs with a script it
fetches from a host this network cannot reach. The venv's own `ensurepip`
followed by a pip install from PyPI does the same job: tools/sanity places
this file where ansible-test caches that script. ansible-test runs it with
get-pip's arguments (pip options, then the pinned packages).
"""
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"],
                      stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "-q"]
                      + [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY])
