"""Import hygiene: `import aiayn` only defines things; the command line sets OpenMP's wait policy for itself."""

import os
import subprocess
import sys
from pathlib import Path


def _env(policy: str | None, *paths: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), *filter(None, [env.get("PYTHONPATH")])])
    return env


def test_import_changes_neither_the_environment_nor_matplotlib():
    backend = "dict.__getitem__(matplotlib.rcParams, 'backend')"  # unresolved: get_backend() would import pyplot
    code = (f"import os, sys, matplotlib; before = {backend}; import aiayn, aiayn.cli; "
            f"print(os.environ.get('OMP_WAIT_POLICY'), {backend} is before, 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(None), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "True", "False"]


def _policies_seen(policy: str | None, tmp_path: Path) -> list[str]:
    """The wait policy each interpreter started by `python -m aiayn translate MISSING x` saw at its start."""
    (tmp_path / "sitecustomize.py").write_text(  # runs first in every interpreter, before torch can load
        "import os, sys\nprint('policy', os.environ.get('OMP_WAIT_POLICY'), file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-m", "aiayn", "translate", str(tmp_path / "missing"), "x"],
                         env=_env(policy, tmp_path), capture_output=True, text=True)
    assert out.returncode == 1, out.stderr  # the missing model: a user error, after the re-execution
    return [line.split()[1] for line in out.stderr.splitlines() if line.startswith("policy ")]


def test_the_command_line_restarts_once_with_passive_waiters(tmp_path):
    assert _policies_seen(None, tmp_path) == ["None", "PASSIVE"]


def test_the_users_wait_policy_wins_and_nothing_restarts(tmp_path):
    assert _policies_seen("ACTIVE", tmp_path) == ["ACTIVE"]
