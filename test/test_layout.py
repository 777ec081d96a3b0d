"""The package layout's rules, checked on the source (AST): who may import whom, module size.

* The ROS-free core (mono_depth_ros/ outside ros/) never imports the trainer, and only the ROS
  layer imports rclpy; the trainer imports rclpy only in its demo (which runs the node).
* mono_depth_ros.bagio and mono_depth_ros.simulation import only the core (no trainer, no rclpy).
* No module imports another module's private (underscore) names.
* No module is longer than MAX_LINES.

KNOWN_EXCEPTIONS lists what is still to be moved; the test fails when an exception is no longer
needed, so the list only shrinks.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mono_depth_ros", "training")
MAX_LINES = 600
TRAINER_NAMES = ("training", "mono_depth_ros_training")
ROS_LAYER = ("mono_depth_ros/ros/",)
# Files that may import rclpy outside the ROS layer: the trainer's demo runs the node on a recording.
RCLPY_ALLOWED = ("training/demo.py",)

# (rule, file) pairs still to be fixed by the layout work of issue 14.
KNOWN_EXCEPTIONS: Set[Tuple[str, str]] = {
    ("rclpy outside the ROS layer", "mono_depth_ros/bag_playback.py"),
    ("rclpy outside the ROS layer", "mono_depth_ros/depth_node.py"),
    ("size", "training/data.py"),
    ("size", "training/trainer.py"),
}


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


def imports(path: Path, root: Path) -> List[Tuple[str, List[str], int]]:
    """(absolute module, imported names, line) for every import in the file, functions included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path, root) if path.name == "__init__.py" else module_name(path, root).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
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
            if name.startswith(("mono_depth_ros/bagio/", "mono_depth_ros/simulation/")) and (
                    module.startswith("mono_depth_ros.ros") or top(module) in TRAINER_NAMES + ("rclpy",)):
                add("bagio/simulation beyond the core", path, f"line {line}: {module}")
            if module.startswith(PACKAGES):
                private = [item for item in names if item.startswith("_") and not item.startswith("__")]
                if private:
                    add("private import", path, f"line {line}: {module} {', '.join(private)}")
    return found


def test_layout_rules_hold():
    found = violations()
    new = {key: value for key, value in found.items() if key not in KNOWN_EXCEPTIONS}
    assert not new, "layout rules broken:\n" + "\n".join(
        f"  {rule}: {path}: {'; '.join(details)}" for (rule, path), details in sorted(new.items()))


def test_known_exceptions_are_still_needed():
    stale = sorted(KNOWN_EXCEPTIONS - set(violations()))
    assert not stale, f"fixed, remove from KNOWN_EXCEPTIONS: {stale}"


def test_checker_sees_each_kind_of_violation(tmp_path):
    """The checker itself: a planted module breaking every rule is reported under each rule."""
    planted = tmp_path / "mono_depth_ros" / "bagio" / "probe.py"
    planted.parent.mkdir(parents=True)
    body = "from training.trainer import train\nimport rclpy\nfrom ..networks import _hidden\n"
    planted.write_text(body + "\n" * (MAX_LINES + 1), encoding="utf-8")
    (tmp_path / "mono_depth_ros" / "ros").mkdir()
    (tmp_path / "mono_depth_ros" / "ros" / "node.py").write_text("import rclpy\nfrom ..networks import DepthNet\n")
    found = violations(tmp_path)
    assert {rule for rule, path in found if path == "mono_depth_ros/bagio/probe.py"} == {
        "size", "core imports trainer", "rclpy outside the ROS layer", "bagio/simulation beyond the core",
        "private import"}
    assert found[("private import", "mono_depth_ros/bagio/probe.py")] == ["line 3: mono_depth_ros.networks _hidden"]
    assert not [path for _, path in found if path.startswith("mono_depth_ros/ros/")]
