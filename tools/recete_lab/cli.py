"""tools/lab: Debian lab machines (systemd-nspawn) for recete.stack.

  tools/lab image [--release bookworm|trixie|all]   build or reuse the cached image
  tools/lab up [--name demo] [--topology default] [--inventory PATH]
  tools/lab add --machine HOST [--machine HOST]... --groups GROUP[,GROUP]... [--var KEY=VALUE]...
                [--release bookworm|trixie] [--name demo]
  tools/lab remove --machine HOST [--machine HOST]... [--name demo]
  tools/lab down [--name demo]
  tools/lab list
  tools/lab ssh HOST [--name demo] [-- CMD...]
  tools/lab leftovers [--name NAME]...              exit 1 if a lab left something

State lives in /var/lib/recete-lab/<name>/ (RECETE_LAB_STATE_DIR overrides the
root), images in /var/cache/recete-lab/images/ (RECETE_LAB_CACHE_DIR).
Errors are one line starting with 'lab:' and exit code 2, before any change.
"""
from __future__ import annotations

import argparse
import sys

from . import down, image, members, report, up
from .names import RELEASES
from .util import LabError, require_root


def cmd_image(args) -> int:
    require_root()
    releases = RELEASES if args.release == "all" else (args.release,)
    for release in releases:
        _, line = image.ensure(release)
        print(line, flush=True)
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors in the tool's own format: one `lab:` line, exit 2."""

    def error(self, message):
        self.exit(2, f"lab: {self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tools/lab", description=__doc__.split("\n\n", 1)[0],
        epilog="Run 'tools/lab COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("image", help="build the Debian image (cached by recipe hash)",
                       description="Build the lab image with mmdebstrap, or report the cached "
                                   "one. Rebuilt only when lab/images/ changes.")
    p.add_argument("--release", choices=[*RELEASES, "all"], default="bookworm")
    p.set_defaults(func=cmd_image)

    p = sub.add_parser("up", help="create (or check) a lab and write its inventory",
                       description="Boot every machine of a topology on a private bridge "
                                   "with NAT and write the Ansible inventory. On a running "
                                   "lab: restart dead machines, re-create topology machines "
                                   "taken out by 'remove', keep those added by 'add', "
                                   "rewrite the inventories.")
    p.add_argument("--name", default="demo", help="lab name, ^[a-z][a-z0-9]{0,7}$ (default: demo)")
    p.add_argument("--topology", default="default",
                   help="name in lab/topologies/ or path to a .yml (default: default)")
    p.add_argument("--inventory", metavar="PATH",
                   help="also write the inventory here (removed again by down)")
    p.set_defaults(func=lambda a: up.up(a.name, a.topology, a.inventory))

    p = sub.add_parser(
        "add", help="add machines to a running lab and to its inventories",
        description="Boot new machines in a running lab, on the lowest free addresses of its "
                    "subnet, in the given inventory groups, and rewrite every inventory the lab "
                    "writes. The new machines' /etc/hosts lists every machine; the running "
                    "machines' /etc/hosts gets the new ones. 'up' keeps added machines.")
    p.add_argument("--name", default="demo", help="lab name (default: demo)")
    p.add_argument("--machine", action="append", required=True, metavar="HOST",
                   help="new machine, ^[a-z][a-z0-9]{0,11}$ (repeatable: all get the same groups)")
    p.add_argument("--groups", action="append", required=True, metavar="GROUP[,GROUP]",
                   help="inventory group(s) of the new machines (repeatable)")
    p.add_argument("--var", action="append", metavar="KEY=VALUE",
                   help="host variable in the inventory, a string (repeatable)")
    p.add_argument("--release", choices=RELEASES,
                   help="Debian release (default: the one most of the lab's machines run, "
                        "the older on a tie)")
    p.set_defaults(func=lambda a: members.add(a.name, a.machine, a.groups, a.var, a.release))

    p = sub.add_parser(
        "remove", help="stop machines of a running lab and take them out of its inventories",
        description="Stop machines of a running lab, delete their files and rewrite every "
                    "inventory the lab writes and the other machines' /etc/hosts. Any machine "
                    "may go, one from the topology too ('up' re-creates those).")
    p.add_argument("--name", default="demo", help="lab name (default: demo)")
    p.add_argument("--machine", action="append", required=True, metavar="HOST",
                   help="machine to remove (repeatable)")
    p.set_defaults(func=lambda a: members.remove(a.name, a.machine))

    p = sub.add_parser("down", help="remove everything a lab made (safe to repeat)")
    p.add_argument("--name", default="demo")
    p.set_defaults(func=lambda a: down.down(a.name))

    p = sub.add_parser("list", help="every lab with its machines and their status")
    p.set_defaults(func=lambda a: report.list_labs())

    p = sub.add_parser("ssh", help="ssh into a lab machine as ops with the lab key",
                       usage="tools/lab ssh HOST [--name NAME] [-- CMD...]")
    p.add_argument("host")
    p.add_argument("--name", default="demo")
    p.set_defaults(func=lambda a: report.ssh(a.host, a.name, a.remote))

    p = sub.add_parser("leftovers", help="list what labs left on the host; exit 1 if anything")
    p.add_argument("--name", action="append", metavar="NAME",
                   help="only what this lab left (repeatable); default: every lab")
    p.set_defaults(func=lambda a: report.leftovers(a.name))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `ssh HOST -- CMD...`: everything after -- is the remote command, untouched.
    remote: list[str] = []
    if argv[:1] == ["ssh"] and "--" in argv:
        cut = argv.index("--")
        argv, remote = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.remote = remote
    try:
        return args.func(args)
    except LabError as err:
        print(f"lab: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tools/lab list | head`
        sys.stderr.close()
        return 0
