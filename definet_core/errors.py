"""definet's errors: each is one line that names the input or the resource and what is wrong with it.

``DefiNetError`` is the base; the command line prints any of them as ``definet: error: <message>`` and exits
with status 2 (argparse's status for a bad command line), so scripts see one status for "fix and rerun".

- ``DefiNetInputError`` (also a ``ValueError``): bad input: a malformed structure file, a structure that does
  not match its host, an unknown element, an empty enumeration, a bad option value.
- ``workflows.storage.server.DefiNetStoreError``: the database cannot be used (unreachable, refused, a data
  directory held by another server). Not bad input: the command is right and can be run again as it is once
  the database is back; nothing stored is lost, and completed work is not redone.
- ``TrainingDivergedError``: a training run's loss stopped being finite. The command was well formed but the
  optimisation failed (most often a learning rate too high for the architecture); the best checkpoint and the
  resumable state written before it are kept.
"""


class DefiNetError(Exception):
    """Any error definet reports in one line (see the module docstring for the kinds)."""


class DefiNetInputError(DefiNetError, ValueError):
    """Bad input (file, structure, element, host mismatch, option); the message names the input."""


class TrainingDivergedError(DefiNetError):
    """A training run's loss became NaN or infinite; the message names the step and what was kept."""
