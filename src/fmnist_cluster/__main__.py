"""``python -m fmnist_cluster`` and the ``fmnist-cluster`` command: :func:`run`."""

import sys


def run() -> None:
    """Import the command line and run it; Ctrl-C while the imports are still loading ends in
    the same one line as later (nothing has been written yet)."""
    try:
        from fmnist_cluster.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted while starting; nothing was written\n")
        raise SystemExit(130) from None
    main()


if __name__ == "__main__":
    run()
