"""recete lab: Debian machines on systemd-nspawn for the collection's tests and demo.

Entry point: tools/lab (python -m recete_lab). See cli.py for the commands.
"""
