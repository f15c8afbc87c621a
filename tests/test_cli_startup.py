"""Starting the command line: `import aiayn` and `import aiayn.cli` load no torch, so `aiayn` sets
OMP_WAIT_POLICY=PASSIVE before torch loads libgomp (which reads it once), in one interpreter, with no re-execution;
the lazy package still gives every public name."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import aiayn

ROOT = Path(__file__).resolve().parents[1]

# Runs first in every interpreter started with it on the path: prints the wait policy the interpreter starts with,
# and the one in the environment at the moment torch is first imported (before libgomp reads it).
WATCH = """\
import os, sys
print('start', os.environ.get('OMP_WAIT_POLICY'), file=sys.stderr, flush=True)
class _WatchTorch:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch':
            sys.meta_path.remove(self)
            print('torch', os.environ.get('OMP_WAIT_POLICY'), file=sys.stderr, flush=True)
        return None
sys.meta_path.insert(0, _WatchTorch())
"""


def _run(args: list[str], policy: str | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`python ARGS` with OMP_WAIT_POLICY unset (or `policy`), this tree's src first on the path and WATCH loaded."""
    (tmp_path / "sitecustomize.py").write_text(WATCH)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, cwd=tmp_path)


def _seen(stderr: str) -> list[tuple[str, str]]:
    """The WATCH lines: ('start', policy) per interpreter, ('torch', policy) where torch was imported."""
    return [tuple(line.split()) for line in stderr.splitlines() if line.split()[:1] in (["start"], ["torch"])]


def test_importing_the_package_and_the_command_line_loads_no_torch(tmp_path):
    out = _run(["-c", "import sys, aiayn; a = 'torch' in sys.modules; import aiayn.cli; "
                      "print(a, 'torch' in sys.modules, aiayn.__version__)"], None, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "0.1.0"]
    assert _seen(out.stderr) == [("start", "None")]  # nor did either set the wait policy


# `python -m aiayn` and the console script (pyproject's aiayn = "aiayn.cli:main", which pip writes as below)
ENTRIES = {"module": ["-m", "aiayn"],
           "script": ["-c", "import sys; from aiayn.cli import main; sys.argv[0] = 'aiayn'; sys.exit(main())"]}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["translate", "missing-model", "x"], 1)])
def test_the_command_line_sets_passive_waiters_before_torch_loads_in_one_interpreter(entry, argv, code, tmp_path):
    out = _run([*ENTRIES[entry], *argv], None, tmp_path)
    assert out.returncode == code, out.stderr
    assert _seen(out.stderr) == [("start", "None"), ("torch", "PASSIVE")]  # one interpreter: nothing re-executed


def test_the_users_wait_policy_wins(tmp_path):
    out = _run([*ENTRIES["module"], "translate", "missing-model", "x"], "ACTIVE", tmp_path)
    assert out.returncode == 1, out.stderr
    assert _seen(out.stderr) == [("start", "ACTIVE"), ("torch", "ACTIVE")]


def test_main_called_from_python_changes_nothing_in_the_environment(monkeypatch, capsys):
    from aiayn.cli import main

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "OMP_WAIT_POLICY" not in os.environ  # an argv given: not this process's own command line


def test_every_public_name_imports_lazily_and_is_the_defining_modules_object(tmp_path):
    code = ("import sys, aiayn\n"
            "for name in aiayn.__all__:\n"
            "    exec(f'from aiayn import {name}')\n"
            "    assert name in dir(aiayn), name\n"
            "print(len(aiayn.__all__), 'torch' in sys.modules)\n")
    out = _run(["-c", code], None, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(aiayn.__all__)), "True"]
    # the TYPE_CHECKING imports (what type checkers see) name exactly __all__, each from the module that defines it
    tree = ast.parse((ROOT / "src" / "aiayn" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    imported = {alias.name: node.module for node in block.body for alias in node.names}
    assert sorted(imported) == sorted(aiayn.__all__)
    for name, module in imported.items():
        assert getattr(aiayn, name) is getattr(importlib.import_module(f"aiayn.{module}"), name), name
    with pytest.raises(AttributeError, match="no attribute 'Transformr'"):
        aiayn.Transformr  # noqa: B018


def test_the_first_public_name_loads_what_the_eager_import_did(tmp_path):
    code = ("import sys, aiayn\n"
            "from aiayn import ModelConfig\n"  # one name: then every module the names come from, as before
            "print(aiayn.io.loading.load_with_tokenizer.__module__, aiayn.model.recurrent.RecurrentSeq2Seq.__name__, "
            "aiayn.runtime.__name__, all(name in vars(aiayn) for name in aiayn.__all__))\n")
    out = _run(["-c", code], None, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["aiayn.io.loading", "RecurrentSeq2Seq", "aiayn.runtime", "True"]


def test_a_model_imported_from_its_module_generates_and_saves(tmp_path):
    """model.generate / model.save reach inference/ and io/ (model/services.py) though nothing imported them."""
    code = ("import sys, torch\n"
            "from aiayn.model.config import ModelConfig\n"
            "from aiayn.model.models import Transformer\n"
            "model = Transformer(ModelConfig.preset('tiny', vocab_size=20, dropout=0.0)).eval()\n"
            "before = [m for m in ('aiayn.inference.decoding', 'aiayn.io.model_folder') if m in sys.modules]\n"
            "hyp = model.generate(torch.tensor([[5, 6, 7]]), beam_size=2, max_new_tokens=3)\n"
            f"path = model.save({str(tmp_path / 'm')!r})\n"
            "print(before, len(hyp), (path / 'model.safetensors').is_file())\n")
    out = _run(["-c", code], None, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "1", "True"]
