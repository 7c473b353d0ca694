"""Make `ansible_collections.recete.stack` importable from the checkout.

tools/setup links .collections/ansible_collections/recete/stack to the repo root.
"""
import os
import sys

_COLLECTIONS = os.path.join(os.path.dirname(__file__), "..", "..", ".collections")
sys.path.insert(0, os.path.abspath(_COLLECTIONS))
