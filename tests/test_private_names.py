"""Private helpers stay private: no package imports another package's ``_name``, and no test does.

A test that imports ``slimtorch.x._helper`` pins an implementation detail; a unit worth testing on its
own is a public name of its module (no underscore, not necessarily in the package's ``__all__``).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "slimtorch"


def _absolute(module: str | None, level: int, path: Path) -> str:
    if not level:
        return module or ""
    base = list(path.relative_to(ROOT / "src").with_suffix("").parts)[:-level]
    return ".".join(base + ([module] if module else []))


def _private_imports(path: Path) -> list[tuple[str, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(node.module, node.level, path)
            if not module.startswith("slimtorch"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append((module, alias.name))
    return found


def test_no_test_imports_a_private_name():
    offenders = [
        f"{p.relative_to(ROOT)}: from {m} import {n}"
        for p in (ROOT / "tests").rglob("*.py")
        for m, n in _private_imports(p)
    ]
    assert not offenders, "tests import private helpers:\n" + "\n".join(offenders)


def test_no_package_imports_another_packages_private_name():
    offenders = []
    for p in SRC.rglob("*.py"):
        own = p.relative_to(SRC).parts[0].removesuffix(".py")
        for module, name in _private_imports(p):
            parts = module.split(".")
            other = parts[1] if len(parts) > 1 else ""
            if other != own:
                offenders.append(f"{p.relative_to(ROOT)}: from {module} import {name}")
    assert not offenders, "packages import each other's private helpers:\n" + "\n".join(offenders)
