"""The entry script of the sandbox's two exec'd child-side programs.

The grader runs it by path, never imports it, before a command starts:

``python -I -S -B .../grader/sandbox/__main__.py --basic-monitor CONFIG_FD``
    basic mode's monitor (``monitor.py``): it reads its marshalled
    configuration from CONFIG_FD, forks the command and watches it.
``python -I -S -B .../grader/sandbox/__main__.py --probe-user-namespace``
    exits 0 when this process can enter a user namespace of its own.
``python -I -S -B .../grader/sandbox/__main__.py --namespace-init CONFIG``
    full mode's monitor and init (``namespace.py``), exec'd by unshare in the
    new namespaces; CONFIG is the marshalled configuration, in hex.

Run so, this directory is no package of ``grader``: it becomes one named
``grader_sandbox`` without running ``__init__.py`` (the grader's side), so
that only the standard library and the child-side modules load, quickly.
"""

import os
import sys


def main(args: list[str]) -> None:
    package = type(sys)("grader_sandbox")
    package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
    sys.modules["grader_sandbox"] = package
    if args[:1] == ["--basic-monitor"] and len(args) == 2:
        import marshal

        from grader_sandbox.monitor import _exec_monitor

        with open(int(args[1]), "rb") as config:
            _exec_monitor(marshal.loads(config.read()))
    elif args[:1] == ["--probe-user-namespace"]:
        from grader_sandbox.common import _enter_user_namespace

        _enter_user_namespace()
        sys.exit(0)
    elif args[:1] == ["--namespace-init"] and len(args) == 2:
        import marshal

        from grader_sandbox.namespace import _namespace_monitor

        _namespace_monitor(marshal.loads(bytes.fromhex(args[1])))
    sys.exit(f"usage: {sys.argv[0]} --basic-monitor CONFIG_FD | --namespace-init CONFIG")


if __name__ == "__main__":
    main(sys.argv[1:])
