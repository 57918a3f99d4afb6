"""The import allow-list: a recipe, a checkpoint or a stored run naming a module outside it imports nothing.

Each test writes a module whose import (and whose function, when called) writes a sentinel file; the
sentinel must stay absent. The CLI runs in-process through `nde_lab.cli.main` (the same code path as
`nde-lab`; jsonargparse's policy is restored after each call) and once in a subprocess.
"""

from __future__ import annotations

import secrets
import textwrap

import pytest
import torch
from cli import RECIPES, run_cli, runs_in

import nde_lab
from nde_lab.cli import main
from nde_lab.safety import ImportNotAllowedError, allow_imports, import_policy
from nde_lab.store.writer import RunWriter

SPIRAL = RECIPES / "spiral_node.yaml"


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """A fresh module `evil_<hex>` on sys.path: importing it writes `imported`, calling `make` writes `called`."""
    name = f"evil_{secrets.token_hex(4)}"
    sentinel = tmp_path / "sentinel"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / f"{name}.py").write_text(textwrap.dedent(f"""
        import pathlib
        import torch
        pathlib.Path({str(sentinel)!r} + ".imported").write_text("import-time code ran")

        class Thing(torch.nn.Module):
            def __init__(self, dim: int = 2) -> None:
                super().__init__()

        def make(params) -> torch.optim.Optimizer:
            pathlib.Path({str(sentinel)!r} + ".called").write_text("called")
            return torch.optim.SGD(params, lr=0.1)
    """))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.delenv("NDE_LAB_ALLOW_IMPORT", raising=False)

    class Evil:
        module = name
        imported = sentinel.with_suffix(".imported")
        called = sentinel.with_suffix(".called")

        def untouched(self) -> bool:
            return not self.imported.exists() and not self.called.exists()

    return Evil()


def _main(*argv: str) -> int:
    with import_policy():  # main() enforces the policy process-wide; restore jsonargparse's settings after
        return main(list(argv))


def _recipe(tmp_path, old: str, new: str, header: str = ""):
    text = SPIRAL.read_text()
    assert old in text
    path = tmp_path / "recipe.yaml"
    path.write_text(header + text.replace(old, new))
    return path


@pytest.mark.parametrize("where", ["recipe_data_source", "argv_vector_field", "argv_callable_optimizer"])
def test_class_paths_and_callables_outside_the_allow_list_are_never_imported(tmp_path, evil, capsys, where):
    store = tmp_path / "s"
    if where == "recipe_data_source":
        recipe = _recipe(tmp_path, "source: {class_path: nde_lab.data.Spiral}", f"source: {{class_path: {evil.module}.Thing}}")
        code = _main("fit", "--config", str(recipe), "--store", str(store))
    elif where == "argv_vector_field":
        code = _main("fit", "--config", str(SPIRAL), "--model.init_args.vector_field", f"{evil.module}.Thing",
                     "--store", str(store))
    else:
        code = _main("fit", "--config", str(SPIRAL), "--model.init_args.optimizer", f"{evil.module}.make",
                     "--store", str(store))
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert evil.untouched()
    assert f"{evil.module}." in err and f"--allow_import {evil.module}" in err and "NDE_LAB_ALLOW_IMPORT" in err
    assert len(err.strip().splitlines()) <= 3, err  # no usage dump
    assert runs_in(store) == []


def test_checkpoint_hyper_parameters_naming_a_module_are_not_imported(tmp_path, evil, capsys):
    checkpoint = tmp_path / "shared.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": f"{evil.module}.Thing", "dim": 2}}, checkpoint)
    code = _main("fit", "--config", str(SPIRAL), "--ckpt_path", str(checkpoint), "--store", str(tmp_path / "s"))
    err = capsys.readouterr().err
    assert code == 2 and evil.untouched() and f"{evil.module}.Thing" in err, err[-2000:]
    assert runs_in(tmp_path / "s") == []


def test_a_shared_runs_config_naming_a_module_is_not_imported_by_open_run(tmp_path, evil):
    writer = RunWriter(tmp_path / "s", "shared", "r1")
    recipe = textwrap.dedent(f"""
        allow_import: [{evil.module}]
        model:
          class_path: {evil.module}.Thing
          init_args: {{dim: 2}}
    """)
    writer.begin(recipe_yaml=recipe, seed=0)
    writer.complete({})
    run = nde_lab.open_run(tmp_path / "s" / "shared" / "r1")
    with pytest.raises(ImportNotAllowedError, match=rf"{evil.module}\.Thing.*allow_imports"):
        run.model  # noqa: B018  (the config's own allow_import is ignored)
    assert evil.untouched()
    # allowed explicitly, the module is imported (and then rejected: Thing is not a LabTask)
    with allow_imports(evil.module), pytest.raises(nde_lab.errors.StoreError):
        nde_lab.open_run(tmp_path / "s" / "shared" / "r1").model  # noqa: B018
    assert evil.imported.exists()


@pytest.mark.parametrize("how", ["flag", "environment", "recipe_header"])
def test_allow_listed_user_modules_still_work(tmp_path, evil, capsys, monkeypatch, how):
    recipe = _recipe(tmp_path, "source: {class_path: nde_lab.data.Spiral}", "source: {class_path: nde_lab.data.Spiral}",
                     header=f"allow_import: [{evil.module}]\n" if how == "recipe_header" else "")
    extra = ["--allow_import", evil.module] if how == "flag" else []
    if how == "environment":
        monkeypatch.setenv("NDE_LAB_ALLOW_IMPORT", f"other_pkg,{evil.module}")
    code = _main("fit", "--config", str(recipe), *extra, "--model.init_args.optimizer", f"{evil.module}.make",
                 "--print_config")
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    assert f"{evil.module}.make" in out.out and evil.imported.exists()


def test_recipe_class_path_through_the_real_command(tmp_path, evil):
    recipe = _recipe(tmp_path, "source: {class_path: nde_lab.data.Spiral}", f"source: {{class_path: {evil.module}.Thing}}")
    out = run_cli("fit", "--config", str(recipe), store=tmp_path / "s", extra_path=tmp_path / "mods")
    assert out.returncode == 2, out.stderr[-2000:]
    assert evil.untouched() and "outside the import allow-list" in out.stderr
    assert runs_in(tmp_path / "s") == []
