"""The rooms of src/sarvit import only downwards: ops <- losses <- models <- data/metrics/checkpoints <- figures
<- train <- analysis/experiments <- cli (read from the source with ast, so a lazy import inside a function counts too)."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sarvit"
# A room may import rooms of a strictly lower level; errors.py, checks.py (the door checks) and options.py (the option table, standard library
# only) are the floor everyone stands on; errors.py, option_values.py (what the table's rows take) and option_schema.py
# (the row and command types, command groups, rooms) lie below it, and the parts options.py joins (option_rows_ssl.py,
# option_commands.py) between them.
# figures (pictures drawn from tensors) sits between metrics, whose threshold it draws, and train and analysis,
# which both draw them.
LEVELS = {"errors": -1, "checks": -0.5, "option_values": -1, "option_schema": -1, "option_rows_ssl": -0.5,
          "option_commands": -0.5, "options": 0, "option_parser": 0.5, "ops": 1, "losses": 2, "models": 3, "data": 4, "metrics": 4,
          "checkpoints": 4, "figures": 4.5, "train": 5, "analysis": 6, "experiments": 6, "cli": 7, "__main__": 8,
          "__init__": 8}


def _room(module: str) -> str:
    """``sarvit.train.loop`` -> ``train``; ``sarvit`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    relative = path.relative_to(package.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(path: Path) -> bool:
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path, root: Path = PACKAGE) -> list[str]:
    """Every sarvit module ``path`` imports, relative imports resolved."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "sarvit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "sarvit":
                # ``from . import build`` names a submodule, ``from . import __version__`` an attribute
                folder = root.parent.joinpath(*target.split("."))
                found += [f"{target}.{alias.name}" if not node.module and _is_module(folder / alias.name) else target
                          for alias in node.names]
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_room_has_a_level():
    rooms = {_room(_module_name(path)) for path in SOURCES}
    assert rooms <= set(LEVELS), f"rooms without a level: {rooms - set(LEVELS)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    room = _room(_module_name(path))
    # ``from . import __version__``: the package root loads its public names lazily, so reading it is no import of a room
    upward = [target for target in _imports(path)
              if target != "sarvit" and _room(target) != room and LEVELS[_room(target)] >= LEVELS[room]]
    assert not upward, f"{path.relative_to(PACKAGE)} ({room}) imports a room at its level or above: {upward}"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule is not vacuous: a train module importing analysis and the cli is caught."""
    fake = tmp_path / "sarvit" / "train" / "fake.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..analysis import attention_maps\nimport sarvit.cli\nfrom . import build, VERSION\n")
    (fake.parent / "build.py").write_text("")
    assert _imports(fake, tmp_path / "sarvit") == ["sarvit.analysis", "sarvit.cli", "sarvit.train.build", "sarvit.train"]
