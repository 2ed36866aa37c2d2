"""The artefact contract shared by every stage.

A stage writes into its output folder through a :class:`StageRun`
(:mod:`~fmnist_cluster.artefacts.stage_run`):

* every file is first written into a hidden staging folder beside the output folder;
* :meth:`StageRun.commit` writes ``manifest.json`` into it last and swaps it in for the output
  folder in one atomic rename, so a reader sees the old artefact or the new one, never a mixture;
* a folder without ``manifest.json`` is not an artefact, so an interrupted stage never leaves
  something a later stage would read as complete, and a stage that fails before commit
  leaves the previous artefact untouched.

``manifest.json`` (:mod:`~fmnist_cluster.artefacts.manifest`) holds the stage name, the config
as resolved, the seed, package versions, the sha256 of every input and output file, timings and
the creation time. Readers check an upstream file against its manifest hash, so a file swapped
or damaged after the fact is caught.

Arrays are stored as ``.npz`` written with fixed zip timestamps
(:mod:`~fmnist_cluster.artefacts.files`), so the same arrays give the same bytes: same config
and seed, byte-identical arrays. Progress reporting (:mod:`~fmnist_cluster.artefacts.progress`)
and the allocator setting of training loops (:mod:`~fmnist_cluster.artefacts.memory`) complete
what stages share. Every public name is importable from this package.
"""

from fmnist_cluster.artefacts.files import (
    array_digest,
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    dumps_json,
    figure_name,
    loads_json,
    npz_bytes,
    read_hashed,
    save_json,
    save_npz,
    sha256_file,
    write_npz,
)
from fmnist_cluster.artefacts.manifest import (
    MANIFEST,
    check_digest,
    load_checked_npz,
    load_npz,
    locate_file,
    package_versions,
    read_checked,
    read_manifest,
    require_file,
)
from fmnist_cluster.artefacts.memory import keep_freed_memory
from fmnist_cluster.artefacts.progress import NULL_PROGRESS, NullProgress, Progress, Task
from fmnist_cluster.artefacts.stage_run import StageRun, check_out_dir, command_line

__all__ = [
    "MANIFEST",
    "NULL_PROGRESS",
    "NullProgress",
    "Progress",
    "StageRun",
    "Task",
    "array_digest",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_digest",
    "check_out_dir",
    "command_line",
    "dumps_json",
    "figure_name",
    "keep_freed_memory",
    "load_checked_npz",
    "load_npz",
    "loads_json",
    "locate_file",
    "npz_bytes",
    "package_versions",
    "read_checked",
    "read_hashed",
    "read_manifest",
    "require_file",
    "save_json",
    "save_npz",
    "sha256_file",
    "write_npz",
]
