"""ament_python build (colcon) and plain pip install of mono_depth_ros."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mono_depth_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*", "training", "training.*"]),
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
            f"depth_node = {PACKAGE}.depth_node:main",
            f"create_model = {PACKAGE}.create_model:main",
            f"infer_bag = {PACKAGE}.infer_bag:main",
            f"import_monodepth2 = {PACKAGE}.import_monodepth2:main",
            f"export_onnx = {PACKAGE}.export_onnx:main",
            "train = training.cli:main",
            "evaluate = training.evaluate:main",
            "sample_recording = mono_depth_ros.simulation.cli:main",
        ],
    },
)
