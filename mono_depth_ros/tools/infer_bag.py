"""infer_bag: run depth_node's computation over a recorded bag and write its outputs to a new bag.

    infer_bag --bag rosbag2_2026_11_21 --model model.safetensors --out rosbag2_depth

Every image of the camera topic goes through :class:`FramePipeline`, the code depth_node
runs, with the camera_info recorded before it. The output bag holds what the node would
have published, under the names ``depth_node`` publishes with the launch file's defaults
(``/depth``, ``/points``, ``/depth_colored``; ``--namespace /ns`` gives ``/ns/depth``, ...),
which the shipped RViz config shows as it is. Each output message carries the input image's
header (stamp, frame_id) and receive time. With ``--copy-input`` (the default) the input
image and camera_info topics are copied too, so the output bag alone plays in RViz or opens
in Foxglove.

No ROS installation needed: bags are read and written with the ``rosbags`` package.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..bagio import BagError, BagReader, decode_image, select_camera_topics
from ..bagio.messages import image_from_fields
from ..bagio.writer import STORAGES, BagWriter, make_typestore
from ..camera import CameraInfoError
from ..camera_info_pairing import header_stamp
from ..config import DepthNodeConfig, load_node_config
from ..frame_pipeline import FrameOutputs, FramePipeline, camera_info_intrinsics, camera_info_lens
from ..image_conversion import ImageFormatError, depth_to_image_fields
from ..model_file import ModelFileError
from ..msgtypes import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    OUTPUT_NAMES,
    POINT_CLOUD_TYPE,
    POINT_FIELD_TYPE,
)
from ..inference import load_estimator
from ..pointcloud import POINT_FIELDS, POINT_STEP

# Why a frame was skipped -> what the summary line calls it.
SKIP_NO_CAMERA_INFO = "before the first camera_info"
SKIP_RAW_IMAGE = "raw image unreadable"
SKIP_COMPRESSED_IMAGE = "compressed image undecodable"
SKIP_CAMERA_INFO = "camera_info unusable for the image"


class InferBagError(RuntimeError):
    """infer_bag cannot run as asked; the text says what was wrong and what to do."""


# --------------------------------------------------------------------------- output messages


class OutputMessages:
    """Builds depth_node's output messages as rosbags objects (ROS 2 Humble definitions)."""

    def __init__(self, typestore):
        self.typestore = typestore
        types = typestore.types
        self._cloud = types[POINT_CLOUD_TYPE]
        point_field = types[POINT_FIELD_TYPE]
        self._fields = [point_field(name=n, offset=o, datatype=t, count=c) for n, o, t, c in POINT_FIELDS]

    def depth(self, header, depth: np.ndarray):
        encoding, step, data = depth_to_image_fields(depth)
        return image_from_fields(self.typestore, header, depth.shape[0], depth.shape[1], encoding, step, data)

    def colored(self, header, bgr: np.ndarray):
        return image_from_fields(
            self.typestore, header, bgr.shape[0], bgr.shape[1], "bgr8", bgr.shape[1] * 3,
            np.ascontiguousarray(bgr).reshape(-1),
        )

    def cloud(self, header, cloud):
        return self._cloud(
            header=header, height=cloud.height, width=cloud.width, fields=self._fields, is_bigendian=False,
            point_step=POINT_STEP, row_step=POINT_STEP * cloud.width, data=cloud.data, is_dense=False,
        )


# --------------------------------------------------------------------------- the run


@dataclass
class InferSummary:
    """What :func:`infer_bag` did."""

    output: Path
    topics: Dict[str, str]  # role (depth, points, depth_colored, image, camera_info) -> topic written
    frames_read: int = 0
    frames_written: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> frames

    def line(self) -> str:
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common())
        return (
            f"infer_bag: wrote {self.frames_written} of {self.frames_read} frames to {self.output}; "
            f"skipped {skipped}" + (f" ({reasons})" if reasons else "")
        )


def output_topics(namespace: str) -> Dict[str, str]:
    """Output name -> topic under ``namespace`` ('/camera' -> /camera/depth, ...)."""
    prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return {name: f"{prefix}/{name}" for name in OUTPUT_NAMES}


def infer_bag(
    bag,
    model,
    out,
    *,
    image_topic: str = "",
    camera_info_topic: str = "",
    device: str = "",
    config: DepthNodeConfig = DepthNodeConfig(),
    storage: str = "mcap",
    copy_input: bool = True,
    namespace: str = "",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> InferSummary:
    """Run depth_node's per-frame computation over ``bag`` and write the outputs as a new bag ``out``.

    ``config`` supplies output_min/max_depth, depth_scale, points_stride, publish_points,
    publish_colored_depth and half_precision; ``namespace`` prefixes the output topics, as the
    launch file's namespace argument does (default: none). Raises InferBagError, BagError or
    ModelFileError.
    """
    from tqdm import tqdm

    out = Path(out)
    if storage not in STORAGES:
        raise InferBagError(f"--storage {storage!r} is not supported; use one of {', '.join(STORAGES)}")
    if out.exists():
        raise InferBagError(f"--out {out} already exists; infer_bag never overwrites: give a new directory")
    # Before the bag: a bad model fails at once. The backend follows the file name (.onnx: onnxruntime).
    model_file = load_estimator(model, device, half=config.half_precision)
    with BagReader(bag, log=log) as reader:
        topics = select_camera_topics(reader, image_topic, camera_info_topic)
        written_topics = output_topics(namespace)
        copied = {"image": topics.image, "camera_info": topics.camera_info} if copy_input else {}
        clash = sorted(set(written_topics.values()) & set(copied.values()))
        if clash:
            raise InferBagError(
                f"output topic {clash[0]} is also an input topic being copied; pass --namespace to put the "
                "outputs elsewhere, or --no-copy-input"
            )
        for topic in written_topics.values():
            if topic in reader.topics:
                log(
                    f"note: {topic} is also a topic of the input bag ({reader.topics[topic].msgtype}); the output "
                    "bag has only the new one, but playing both bags together mixes them (see --namespace)"
                )

        for warning in model_file.warnings:
            log(f"WARNING: {warning}")
        estimator = model_file.estimator
        meta = model_file.metadata
        if not meta.metric and config.depth_scale == 1.0:
            log(
                "WARNING: this model's depth is not metric and depth_scale is 1.0: distances are relative, "
                "not metres (set depth_scale in --params; see docs/node.md, 'Scale')"
            )
        pipeline = FramePipeline(estimator)
        typestore = make_typestore()
        messages = OutputMessages(typestore)
        enabled = {
            "depth": True, "points": config.publish_points, "depth_colored": config.publish_colored_depth,
        }
        written_topics = {name: topic for name, topic in written_topics.items() if enabled[name]}
        summary = InferSummary(output=out, topics={**written_topics, **copied})
        bar = tqdm(
            total=reader.topics[topics.image].count, unit="frame", desc="infer_bag", disable=not progress,
            file=sys.stderr, dynamic_ncols=True,
        )
        say = bar.write if progress else log
        explained = set()

        def skip(reason: str, text: str) -> None:
            summary.skipped[reason] += 1
            if reason not in explained:  # one message per kind of problem; the summary has the counts
                explained.add(reason)
                say(f"skipping frames: {text} (further frames skipped for this reason are only counted)")

        exists_hint = "infer_bag never overwrites: give a new directory"
        with BagWriter(out, storage, typestore, exists_hint=exists_hint) as writer:

            def write(role: str, msgtype: str, bag_time: int, msg) -> None:
                writer.write(summary.topics[role], msgtype, bag_time, msg)

            def handle(bag_time: int, msg, msgtype: str, info) -> None:
                try:
                    rgb = decode_image(msg, msgtype)
                except (ImageFormatError, ValueError) as error:
                    if msgtype == COMPRESSED_TYPE:
                        skip(SKIP_COMPRESSED_IMAGE, f"a compressed image on {topics.image} cannot be decoded: {error}")
                    else:
                        skip(SKIP_RAW_IMAGE, f"an image on {topics.image} cannot be read: {error}")
                    return
                try:
                    K = camera_info_intrinsics(info, rgb.shape[1], rgb.shape[0], config.image_is_rectified)
                    lens = camera_info_lens(info, config.image_is_rectified)
                except CameraInfoError as error:
                    skip(SKIP_CAMERA_INFO, f"{topics.camera_info} does not fit an image on {topics.image}: {error}")
                    return
                outputs: FrameOutputs = pipeline.run(rgb, K, config, lens)
                header = msg.header
                write("depth", IMAGE_TYPE, bag_time, messages.depth(header, outputs.depth))
                if enabled["points"]:
                    write("points", POINT_CLOUD_TYPE, bag_time, messages.cloud(header, outputs.cloud))
                if enabled["depth_colored"]:
                    write("depth_colored", IMAGE_TYPE, bag_time, messages.colored(header, outputs.colored))
                summary.frames_written += 1

            def no_camera_info() -> None:
                skip(
                    SKIP_NO_CAMERA_INFO,
                    f"no CameraInfo on {topics.camera_info} before this image on {topics.image}",
                )

            info = None
            # Drivers publish the image, then its camera_info: each image is held until the next
            # message and uses that camera_info when it has the image's stamp, else the newest one
            # recorded before it (as depth_node pairs them).
            held: Optional[Tuple[int, object, str]] = None

            def release(own_info=None) -> None:
                held_time, held_msg, held_type = held
                use = own_info if own_info is not None else info
                if use is None:
                    no_camera_info()
                else:
                    handle(held_time, held_msg, held_type, use)
                bar.update(1)

            for topic, msgtype, bag_time, msg in reader.messages([topics.image, topics.camera_info]):
                if topic == topics.camera_info:
                    if held is not None:
                        release(msg if header_stamp(held[1]) == header_stamp(msg) else None)
                        held = None
                    info = msg
                    if copy_input:
                        write("camera_info", CAMERA_INFO_TYPE, bag_time, msg)
                    continue
                summary.frames_read += 1
                if copy_input:
                    write("image", msgtype, bag_time, msg)
                if held is not None:
                    release()
                held = (bag_time, msg, msgtype)
            if held is not None:
                release()
        bar.close()
        for problem in reader.damage:
            log(problem)
    return summary


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infer_bag",
        description="Run a depth model over a bag's camera images, as depth_node would, and write depth, "
        "points and depth_colored into a new bag (for ros2 bag play + RViz, or Foxglove).",
    )
    parser.add_argument("--bag", required=True, help="input bag: rosbag2 directory, .mcap or .db3 file")
    parser.add_argument("--model", required=True, help="model file (.safetensors, or .onnx run through onnxruntime)")
    parser.add_argument("--out", required=True, help="output bag directory (must not exist)")
    parser.add_argument(
        "--image-topic", default="",
        help="camera image topic, sensor_msgs/Image or CompressedImage (default: the one with a CameraInfo beside it)",
    )
    parser.add_argument(
        "--camera-info-topic", default="", help="its CameraInfo topic (default: camera_info beside the image topic)"
    )
    parser.add_argument("--device", default="", help="cuda, cuda:N or cpu (default: cuda when available, else cpu)")
    parser.add_argument(
        "--params", default=None,
        help="depth_node parameter file (as config/depth.yaml) for output_min_depth, output_max_depth, "
        "depth_scale, points_stride, publish_points, publish_colored_depth, half_precision (default: the node's "
        "defaults)",
    )
    parser.add_argument("--storage", default="mcap", choices=STORAGES, help="output storage format (default: mcap)")
    parser.add_argument(
        "--copy-input", default=True, action=argparse.BooleanOptionalAction,
        help="also copy the input image and camera_info topics into the output bag (default: on)",
    )
    parser.add_argument(
        "--namespace", default="",
        help="namespace of the output topics, like the launch file's namespace argument "
        "(default: none: /depth, /points, /depth_colored)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    config = DepthNodeConfig()
    if args.params:
        try:
            config = load_node_config(args.params, warn=lambda text: print(
                f"infer_bag: warning: --params {args.params}: {text}", file=sys.stderr))
        except FileNotFoundError:
            print(f"infer_bag: error: --params {args.params} does not exist", file=sys.stderr)
            return 2
        except Exception as error:  # YAML syntax, wrong types, bad ranges: all say what is wrong
            print(f"infer_bag: error: --params {args.params}: {error}", file=sys.stderr)
            return 2
    try:
        summary = infer_bag(
            args.bag, args.model, args.out,
            image_topic=args.image_topic, camera_info_topic=args.camera_info_topic, device=args.device,
            config=config, storage=args.storage, copy_input=args.copy_input, namespace=args.namespace,
            progress=not args.no_progress,
        )
    except (InferBagError, BagError, ModelFileError, ValueError) as error:
        print(f"infer_bag: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"infer_bag: interrupted; {args.out} holds the frames written so far", file=sys.stderr)
        return 130
    print(f"topics: {', '.join(f'{role} {topic}' for role, topic in summary.topics.items())}")
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
