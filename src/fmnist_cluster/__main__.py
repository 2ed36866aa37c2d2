"""``python -m fmnist_cluster`` and the ``fmnist-cluster`` command: :func:`run`."""

import signal
import sys


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run() -> None:
    """Import the command line and run it; Ctrl-C or SIGTERM while the imports are still loading
    ends in one line too (nothing has been written yet)."""
    signal.signal(signal.SIGTERM, _stop)  # the command line installs its own once loaded
    try:
        from fmnist_cluster.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted while starting; nothing was written\n")
        raise SystemExit(130) from None
    main()


if __name__ == "__main__":
    run()
