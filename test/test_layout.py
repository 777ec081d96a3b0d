"""The package layout's rules, checked on the source (AST): who may import whom, module size.

* The ROS-free core (mono_depth_ros/ outside ros/) never imports the trainer, and only the ROS
  layer imports rclpy; the trainer imports rclpy only in its demo (which runs the node).
* mono_depth_ros.bagio and mono_depth_ros.simulation import only the core (no trainer, no rclpy).
* The core never imports the ROS layer (which would load rclpy), except the deprecated
  mono_depth_ros/depth_node.py shim, inside its functions only.
* No module imports another module's private (underscore) names.
* No module is longer than MAX_LINES.
* Nothing (package, tests, benchmarks, scripts) imports the bare name ``training``: the folder
  training/ is installed as ``mono_depth_ros_training`` (setup.py), and importing it under both
  names would load two copies of the trainer.

* docs/architecture.md, the map of where each concept lives, lists every module, and only modules
  that exist.
* No test module imports another test module: what tests share lives in test/helpers.py (and the
  DDS harness in test/node_harness.py).
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mono_depth_ros", "training")
MAX_LINES = 600
TRAINER_NAMES = ("training", "mono_depth_ros_training")
ROS_LAYER = ("mono_depth_ros/ros/",)
# Files that may import rclpy outside the ROS layer: the trainer's demo runs the node on a recording.
RCLPY_ALLOWED = ("training/demo.py",)
# Core files that may import the ROS layer, inside a function only: the deprecated shim that keeps
# `python -m mono_depth_ros.depth_node` working (it imports no rclpy until its main() runs).
ROS_IMPORT_ALLOWED = ("mono_depth_ros/depth_node.py",)
# Folders whose Python files must not import the bare name `training` (test_no_bare_training_import).
IMPORTING_FOLDERS = ("mono_depth_ros", "training", "test", "benchmarks", "scripts")

ARCHITECTURE_DOC = ROOT / "docs" / "architecture.md"


def source_files(root: Path) -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((root / package).rglob("*.py"))


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path, top_level_only: bool = False) -> List[Tuple[str, List[str], int]]:
    """(absolute module, imported names, line) for every import in the file, functions included
    (with top_level_only, the imports that run when the module is imported: outside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path, root) if path.name == "__init__.py" else module_name(path, root).rpartition(".")[0]
    found = []
    for node in (module_level(tree) if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def module_level(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a module outside function bodies (class bodies, if/try blocks included)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        pending += [child for child in ast.iter_child_nodes(node)
                    if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]


def top(module: str) -> str:
    return module.split(".")[0]


def violations(root: Path = ROOT) -> Dict[Tuple[str, str], List[str]]:
    found: Dict[Tuple[str, str], List[str]] = {}

    def add(rule: str, path: Path, text: str) -> None:
        found.setdefault((rule, relative(path, root)), []).append(text)

    for path in source_files(root):
        name = relative(path, root)
        in_core = name.startswith("mono_depth_ros/") and not name.startswith(ROS_LAYER)
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > MAX_LINES:
            add("size", path, f"{lines} lines")
        for module, names, line in imports(path, root):
            if in_core and top(module) in TRAINER_NAMES:
                add("core imports trainer", path, f"line {line}: {module}")
            if top(module) == "rclpy" and not name.startswith(ROS_LAYER) and name not in RCLPY_ALLOWED:
                add("rclpy outside the ROS layer", path, f"line {line}")
            if in_core and module.startswith("mono_depth_ros.ros") and name not in ROS_IMPORT_ALLOWED:
                add("core imports the ROS layer", path, f"line {line}: {module}")
            if name.startswith(("mono_depth_ros/bagio/", "mono_depth_ros/simulation/")) and (
                    module.startswith("mono_depth_ros.ros") or top(module) in TRAINER_NAMES + ("rclpy",)):
                add("bagio/simulation beyond the core", path, f"line {line}: {module}")
            if module.startswith(PACKAGES):
                private = [item for item in names if item.startswith("_") and not item.startswith("__")]
                if private:
                    add("private import", path, f"line {line}: {module} {', '.join(private)}")
        if in_core:
            for module, _, line in imports(path, root, top_level_only=True):
                if module.startswith("mono_depth_ros.ros"):
                    add("core imports the ROS layer at import time", path, f"line {line}: {module}")
    return found


def bare_training_imports(root: Path = ROOT) -> List[str]:
    """'file:line: module' for each import of the bare name `training` under IMPORTING_FOLDERS.

    Relative imports inside training/ resolve to `training...` by folder name and are fine: they
    follow whatever name the package was imported under.
    """
    found = []
    for folder in IMPORTING_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    modules = [node.module or ""]
                else:
                    continue
                found += [f"{relative(path, root)}:{node.lineno}: {module}" for module in modules
                          if top(module) == "training"]
    return found


def test_layout_rules_hold():
    new = violations()
    assert not new, "layout rules broken:\n" + "\n".join(
        f"  {rule}: {path}: {'; '.join(details)}" for (rule, path), details in sorted(new.items()))


def documented_modules(text: str) -> Set[str]:
    """Package module paths (mono_depth_ros/..., training/...) written in backticks in the architecture map."""
    return set(re.findall(r"`((?:%s)/[\w/]+\.py)`" % "|".join(PACKAGES), text))


def test_the_architecture_map_lists_every_module_and_only_real_ones():
    listed = documented_modules(ARCHITECTURE_DOC.read_text(encoding="utf-8"))
    modules = {relative(path, ROOT) for path in source_files(ROOT) if path.name != "__init__.py"}
    assert not modules - listed, f"add these modules to docs/architecture.md: {sorted(modules - listed)}"
    assert not listed - modules, f"docs/architecture.md names modules that do not exist: {sorted(listed - modules)}"


def test_the_architecture_map_check_sees_a_module_in_backticks():
    assert documented_modules("| x | `training/run.py`, `mono_depth_ros/geometry/camera.py` | `config.py` `test/t.py` |") == {
        "training/run.py", "mono_depth_ros/geometry/camera.py"}


def test_checker_sees_each_kind_of_violation(tmp_path):
    """The checker itself: a planted module breaking every rule is reported under each rule."""
    planted = tmp_path / "mono_depth_ros" / "bagio" / "probe.py"
    planted.parent.mkdir(parents=True)
    body = ("from training.trainer import train\nimport rclpy\nfrom ..networks import _hidden\n"
            "from ..ros import depth_node\n")
    planted.write_text(body + "\n" * (MAX_LINES + 1), encoding="utf-8")
    (tmp_path / "mono_depth_ros" / "ros").mkdir()
    (tmp_path / "mono_depth_ros" / "ros" / "node.py").write_text("import rclpy\nfrom ..networks import DepthNet\n")
    # The shim's pattern: the ROS layer imported inside a function is allowed for it, at import time never.
    shim = "def main():\n    from .ros.depth_node import main\n    return main()\n"
    (tmp_path / "mono_depth_ros" / "depth_node.py").write_text(shim + "from .ros import parameters\n")
    found = violations(tmp_path)
    assert {rule for rule, path in found if path == "mono_depth_ros/bagio/probe.py"} == {
        "size", "core imports trainer", "rclpy outside the ROS layer", "bagio/simulation beyond the core",
        "private import", "core imports the ROS layer", "core imports the ROS layer at import time"}
    assert found[("private import", "mono_depth_ros/bagio/probe.py")] == ["line 3: mono_depth_ros.networks _hidden"]
    assert not [path for _, path in found if path.startswith("mono_depth_ros/ros/")]
    assert {rule for rule, path in found if path == "mono_depth_ros/depth_node.py"} == {
        "core imports the ROS layer at import time"}
    assert found[("core imports the ROS layer at import time", "mono_depth_ros/depth_node.py")] == [
        "line 4: mono_depth_ros.ros"]


def test_no_bare_training_import():
    found = bare_training_imports()
    assert not found, "import the trainer as mono_depth_ros_training, not training:\n" + "\n".join(found)


def test_bare_training_checker_sees_each_form(tmp_path):
    for folder in IMPORTING_FOLDERS:
        (tmp_path / folder).mkdir()
    (tmp_path / "test" / "probe.py").write_text(
        "import training\nimport training.trainer as t\nfrom training import cli\nfrom training.data import x\n"
        "def f():\n    from training.evaluate import main\n"
        "import mono_depth_ros_training.trainer\nfrom .training import y\nimport trainingset\n")
    assert bare_training_imports(tmp_path) == [
        "test/probe.py:1: training", "test/probe.py:2: training.trainer", "test/probe.py:3: training",
        "test/probe.py:4: training.data", "test/probe.py:6: training.evaluate"]


def imports_of_test_modules(root: Path = ROOT) -> List[str]:
    """'file:line: module' for each import of a test module (test_*) by a file under test/."""
    found = []
    for path in sorted((root / "test").rglob("*.py")):
        for module, _, line in imports(path, root):
            if module.split(".")[-1].startswith("test_") or top(module).startswith("test_"):
                found.append(f"{relative(path, root)}:{line}: {module}")
    return found


def test_no_test_module_imports_another():
    found = imports_of_test_modules()
    assert not found, "move what tests share to test/helpers.py (or test/node_harness.py):\n" + "\n".join(found)


def test_test_module_import_checker_sees_each_form(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "test_probe.py").write_text(
        "import test_trainer\nfrom test_infer_bag import read_bag\ndef f():\n    import test_node_dds as dds\n"
        "import helpers\nfrom node_harness import scene\nimport pytest\n")
    assert imports_of_test_modules(tmp_path) == [
        "test/test_probe.py:1: test_trainer", "test/test_probe.py:2: test_infer_bag", "test/test_probe.py:4: test_node_dds"]


def test_deprecated_node_module_imports_without_rclpy():
    """`import mono_depth_ros.depth_node` (the shim) loads neither rclpy nor the ROS layer."""
    code = ("import sys, mono_depth_ros.depth_node as shim; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rclpy' or m.startswith('mono_depth_ros.ros')))")
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


@pytest.mark.slow
def test_trainer_is_one_package_under_its_installed_name():
    """From the repository root (where `training` would be importable as a folder), the trainer loads
    once, as mono_depth_ros_training: no module imports it a second time under the bare name."""
    code = ("import sys, mono_depth_ros_training.cli, mono_depth_ros_training.run, "
            "mono_depth_ros_training.evaluate, mono_depth_ros_training.demo; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'training'))")
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
