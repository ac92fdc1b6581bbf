"""The rooms of src/sarvit import only downwards: ops <- losses <- models <- data/metrics/checkpoints <- figures
<- train <- analysis/experiments <- cli (read from the source with ast, so a lazy import inside a function counts too);
the launcher package src/sarvit_cli (the option table and the ``sarvit`` script) imports nothing of sarvit's but the
hand-off to sarvit.cli, and the library never imports it."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sarvit"
LAUNCHER = PACKAGE.parent / "sarvit_cli"
# A room may import rooms of a strictly lower level; errors.py and checks.py (the door checks) are the floor
# everyone stands on; options.py (the launcher's option table plus the check of a configuration's values) sits above
# the library, which never reads the table.
# figures (pictures drawn from tensors) sits between metrics, whose threshold it draws, and train and analysis,
# which both draw them.
LEVELS = {"errors": -1, "checks": -0.5, "ops": 1, "losses": 2, "models": 3, "options": 3.5, "data": 4, "metrics": 4,
          "checkpoints": 4, "figures": 4.5, "train": 5, "analysis": 6, "experiments": 6, "cli": 7, "__main__": 8,
          "__init__": 8}
# The library (and `import sarvit`) never imports the launcher: the rooms that a Python caller gets.
LIBRARY = ("errors", "checks", "ops", "losses", "models", "metrics", "__init__")
# What the launcher's modules may import of sarvit: the hand-off of a parsed command line, and the package's version
# number when the distribution is not installed (no metadata).
LAUNCHER_REACHES = {"__init__": {"sarvit.cli"}, "parser": {"sarvit"}}


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


def _imports(path: Path, root: Path = PACKAGE, top: str = "sarvit") -> list[str]:
    """Every module of package ``top`` that ``path`` imports, relative imports resolved."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == top]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == top:
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


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_library_never_imports_the_launcher(path):
    room = _room(_module_name(path))
    launcher = _imports(path, top="sarvit_cli") + [target for target in _imports(path)
                                                   if _room(target) in ("options", "cli")]
    assert not (room in LIBRARY and launcher), f"{path.relative_to(PACKAGE)} ({room}) imports {launcher}"


LAUNCHER_SOURCES = sorted(LAUNCHER.rglob("*.py"))


@pytest.mark.parametrize("path", LAUNCHER_SOURCES, ids=lambda p: p.name)
def test_the_launcher_imports_only_the_hand_off(path):
    """The table and parser stand alone (standard library), so ``sarvit --help`` loads neither sarvit nor torch."""
    found = set(_imports(path, LAUNCHER))
    assert found <= LAUNCHER_REACHES.get(path.stem, set()), f"sarvit_cli/{path.name} imports {found}"
    third_party = {"torch", "timm", "numpy", "torchvision", "torchmetrics", "yaml", "scipy", "kornia"}
    tree = ast.parse(path.read_text())
    named = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    named |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and not node.level}
    assert not named & third_party, f"sarvit_cli/{path.name} imports {named & third_party}"


def test_the_launcher_checker_sees_an_import_of_sarvit(tmp_path):
    fake = tmp_path / "sarvit_cli" / "table.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from sarvit.options import OPTIONS\nimport sarvit_cli.parser\n")
    assert _imports(fake, tmp_path / "sarvit_cli") == ["sarvit.options"]
    assert _imports(fake, tmp_path / "sarvit_cli", top="sarvit_cli") == ["sarvit_cli.parser"]
