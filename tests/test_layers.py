"""The layering of sync_invoices is checked, not hoped for: the import-linter contracts of pyproject.toml
hold for the product as it is, and each of them fails when an import breaks it."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# import-linter's own entry point, in a process of its own (it puts the working directory on sys.path).
LINT = ("import sys\n"
        "from importlinter.cli import lint_imports\n"
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))\n")
CONTRACTS = {c["id"]: c
             for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]}


def lint(project: Path) -> subprocess.CompletedProcess:
    """import-linter run on the project in `project` (its pyproject.toml and its sync_invoices package)."""
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run([sys.executable, "-c", LINT, str(project / "pyproject.toml")], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_contracts_cover_the_layering_and_the_forbidden_imports() -> None:
    assert {"layers", "quickbooks-only-in-qbo", "sandbox-only-in-demo", "no-tools-or-tests",
            "mis-below-push"} <= set(CONTRACTS)
    layers = CONTRACTS["layers"]["layers"]
    assert layers[0] == "sync_invoices.cli" and "sync_invoices.push" in layers
    assert layers[-1].startswith("sync_invoices.models")


def test_the_product_keeps_every_import_contract() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in CONTRACTS.values():
        assert f"{contract['name']} KEPT" in result.stdout, result.stdout
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


# (module, an import appended to it, the contracts that import breaks)
BREAKS = [
    ("mis/claims.py", "from sync_invoices.push import stop as _stop", {"layers", "mis-below-push"}),
    ("mapping.py", "import quickbooks as _quickbooks", {"quickbooks-only-in-qbo", "pure-decisions"}),
    ("push/ledger.py", "import intuitlib as _intuitlib", {"quickbooks-only-in-qbo"}),
    ("service.py", "import qbo_sandbox as _sandbox", {"sandbox-only-in-demo"}),
    ("models.py", "from tests import helpers as _helpers", {"no-tools-or-tests"}),
    ("qbo/faults.py", "from sync_invoices.mis import db as _db", {"mis-and-qbo-apart"}),
    ("push/ledger.py", "from sync_invoices import service as _service", {"layers"}),
    ("lock.py", "from sync_invoices.push import ledger as _ledger", {"layers"}),
]


@pytest.mark.parametrize("module, line, broken", BREAKS, ids=[f"{m}:{sorted(b)[0]}" for m, _, b in BREAKS])
def test_an_import_that_breaks_a_contract_fails_the_check(tmp_path: Path, module: str, line: str,
                                                          broken: set[str]) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "sync_invoices", project / "sync_invoices",
                    ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    target = project / "sync_invoices" / module
    target.write_text(target.read_text() + "\n" + line + "\n")
    result = lint(project)
    assert result.returncode == 1, result.stdout + result.stderr
    for contract_id, contract in CONTRACTS.items():
        verdict = "BROKEN" if contract_id in broken else "KEPT"
        assert f"{contract['name']} {verdict}" in result.stdout, result.stdout


def test_no_test_module_imports_another_test_module() -> None:
    # What tests share lives in tests/helpers.py (fixtures in conftest.py), never in a test module.
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] + [f"{node.module or ''}.{alias.name}" for alias in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            if any(part.startswith("test_") for name in names for part in name.split(".")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
