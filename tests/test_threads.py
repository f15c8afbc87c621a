"""Import hygiene: `import aiayn` only defines things (the command line's wait policy: test_cli_startup.py), and
model/ and data/ import nothing from the packages above them."""

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


def test_model_and_data_import_nothing_from_the_packages_above_them():
    import ast

    root = Path(__file__).resolve().parents[1] / "src" / "aiayn"
    upward = []
    for package in ("model", "data"):
        for path in (root / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level >= 2 and \
                        (node.module or "").split(".")[0] in ("inference", "io", "training", "cli", "serving", "viz"):
                    upward.append(f"{package}/{path.name}: from {'.' * node.level}{node.module}")
    assert upward == []


# The README's "data flows one way": each package imports only from the tiers after its own (serving also viz)
TIERS = (("cli",), ("serving", "training", "viz"), ("inference", "io"), ("model", "data", "runtime"))


def test_every_package_imports_only_from_the_tiers_below_it():
    import ast

    root = Path(__file__).resolve().parents[1] / "src" / "aiayn"
    tier = {package: i for i, packages in enumerate(TIERS) for package in packages}
    assert sorted(tier) == sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())
    arrows = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if len(parts) == 1:
            continue  # aiayn/__init__.py and __main__.py gather the API and the command line
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = [*parts[:len(parts) - node.level], *(node.module or "").split(".")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiayn."):
                target = node.module.split(".")[1:]
            else:
                continue
            source, used = parts[0], target[0] if target and target[0] else ""
            if used in tier and used != source and tier[used] <= tier[source] and (source, used) != ("serving", "viz"):
                arrows.append(f"{'/'.join(parts)} imports {used}")
    assert arrows == []


def test_the_models_generate_and_save_through_what_inference_and_io_register(tmp_path):
    import torch

    import aiayn
    from aiayn.model import services

    assert services.Services.generate_seq2seq is aiayn.generate_seq2seq
    cfg = aiayn.ModelConfig.preset("tiny", vocab_size=20, dropout=0.0)
    model = aiayn.Transformer(cfg).eval()
    src = torch.tensor([[5, 6, 7]])
    assert model.generate(src, beam_size=2, max_new_tokens=4) == aiayn.generate_seq2seq(model, src, beam_size=2,
                                                                                         max_new_tokens=4)
    assert aiayn.load(model.save(tmp_path / "m")).cfg == cfg
