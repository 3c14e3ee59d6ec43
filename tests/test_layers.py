"""The import layers: every project import points down the stack, and model code knows no DeepSpeed.

    clips_tower.io, clips_tower.images         leaves: import nothing of the project
    clips_tower (world/, pretraining, adapter/) never imports llava_train or eval
    llava_train (training, model, data, chat/)  never imports eval or llava_train.pipeline
    eval (installed as clips_llava_eval)       never imports llava_train.pipeline
    llava_train.pipeline (clips-llava, demo)    on top

Imports inside functions count too: a lazy import is still an arrow. The scan reads the source
(ast), so it sees every import whether or not the code path runs.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"clips_tower": "clips_tower", "llava_train": "llava_train", "eval": "clips_llava_eval"}  # folder -> import name
PACKAGES = tuple(FOLDERS.values())


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    parts[0] = FOLDERS[parts[0]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module)
    return found


def _modules() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for folder in FOLDERS for p in sorted((REPO / folder).rglob("*.py"))}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# (importer prefix, forbidden import prefixes, exempt importer prefixes)
RULES = [
    ("clips_tower", ("llava_train", "clips_llava_eval"), ()),
    ("llava_train", ("clips_llava_eval", "llava_train.pipeline"), ("llava_train.pipeline",)),
    ("clips_llava_eval", ("llava_train.pipeline",), ()),
]
LEAVES = ("clips_tower.io", "clips_tower.images")
MODEL_CODE = ("llava_train.model", "clips_tower.model", "clips_tower.captioner", "clips_tower.losses",
              "clips_tower.text_reduction", "clips_tower.adapter")


def upward_imports(modules: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, imported in modules.items():
        for importer, forbidden, exempt in RULES:
            if not _within(module, importer) or any(_within(module, e) for e in exempt):
                continue
            bad += [f"{module} -> {name}" for name in sorted(imported) if any(_within(name, f) for f in forbidden)]
    return bad


def test_no_upward_imports():
    modules = _modules()
    assert len(modules) > 50  # the scan found the packages
    assert upward_imports(modules) == []


def test_the_rule_catches_an_upward_import():
    """The checker itself: a clips_tower module importing llava_train is reported."""
    assert upward_imports({"clips_tower.world.scene": {"llava_train.data", "numpy"}}) == \
        ["clips_tower.world.scene -> llava_train.data"]
    assert upward_imports({"llava_train.pipeline.demo": {"clips_llava_eval.cli"}}) == []


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_nothing_of_the_project(leaf):
    imported = _modules()[leaf]
    assert not [n for n in imported if any(_within(n, p) for p in PACKAGES)], imported


def test_model_code_never_imports_deepspeed():
    modules = _modules()
    model = {m: imp for m, imp in modules.items() if any(_within(m, p) for p in MODEL_CODE)}
    assert "llava_train.model" in model and "clips_tower.model" in model
    ds = {m: sorted(i for i in imp if "deepspeed" in i) for m, imp in model.items()}  # also transformers.integrations.deepspeed
    assert {m: i for m, i in ds.items() if i} == {}


def test_pyproject_installs_every_package():
    """pyproject.toml lists its packages by hand (eval/ is renamed): a new subpackage must be added there."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {_module_name(p.parent / "__init__.py") for folder in FOLDERS for p in (REPO / folder).rglob("__init__.py")}
    assert listed == found
