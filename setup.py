"""ament_python build (colcon) and plain pip install of mono_depth_ros."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mono_depth_ros"
# The trainer's folder training/ is installed as mono_depth_ros_training: a top-level package called
# `training` would clash with other projects'. Its subpackages (training/data/, ...) follow the mapping.
TRAINER = "mono_depth_ros_training"
TRAINER_DIR = "training"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=(find_packages(include=[PACKAGE, f"{PACKAGE}.*"])
              + [TRAINER] + [f"{TRAINER}.{name}" for name in find_packages(where=TRAINER_DIR)]),
    package_dir={TRAINER: TRAINER_DIR},
    # KITTI split lists (frame names) read by mono_depth_ros_training.kitti.splits.
    package_data={f"{TRAINER}.kitti": ["splits/*.txt", "splits/*.txt.gz"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="mono_depth_ros maintainers",
    maintainer_email="maintainers@mono-depth-ros.dev",
    description="Monocular depth node and self-supervised trainer for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            f"depth_node = {PACKAGE}.ros:depth_node_main",
            f"create_model = {PACKAGE}.tools.create_model:main",
            f"infer_bag = {PACKAGE}.tools.infer_bag:main",
            f"import_monodepth2 = {PACKAGE}.tools.import_monodepth2:main",
            f"export_onnx = {PACKAGE}.tools.export_onnx:main",
            f"train = {TRAINER}.cli:main",
            f"evaluate = {TRAINER}.evaluate:main",
            f"sample_recording = {PACKAGE}.simulation.cli:main",
        ],
    },
)
