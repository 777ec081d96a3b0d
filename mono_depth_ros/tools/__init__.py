"""The command-line tools (console scripts of setup.py), each a module with a ``main``.

create_model (a model file with random or ImageNet weights), infer_bag (a model over a recorded
bag), export_onnx (a model file -> ONNX) and import_monodepth2 (Monodepth2's weights -> a model
file). The node itself is :mod:`mono_depth_ros.ros.depth_node`; the trainer's tools (train,
evaluate) are in :mod:`mono_depth_ros_training`.
"""
