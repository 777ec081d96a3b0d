"""Pictures for people: depth comparison grids and a rendered view of a point cloud (NumPy/OpenCV)."""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np


def colorize_inverse_depth(depth: np.ndarray, near_m: float) -> np.ndarray:
    """Colour-map depth on a fixed scale so several maps compare: near_m and closer is brightest.

    depth: (H, W) metres; +inf (too far, sky) is darkest; NaN, -inf and <= 0 are black
    -> (H, W, 3) uint8 BGR (magma on inverse depth, as the node's depth_colored).
    """
    depth = np.asarray(depth, dtype=np.float32)
    shown = (depth > 0) & ~np.isnan(depth)
    inverse = np.zeros(depth.shape, dtype=np.float32)
    np.divide(near_m, depth, out=inverse, where=shown & np.isfinite(depth))
    colour = cv2.applyColorMap(np.clip(inverse * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_MAGMA)
    colour[~shown] = 0
    return colour


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    scale = max(0.35, image.shape[1] / 700.0)
    thickness = max(1, int(round(scale * 2)))
    cv2.putText(out, text, (6, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(out, text, (6, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def comparison_grid(
    rgbs: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    ground_truths: Sequence[np.ndarray],
    near_m: Optional[float] = None,
    titles: Sequence[str] = ("input", "predicted depth", "ground-truth depth"),
) -> np.ndarray:
    """One row per frame: input | predicted depth | ground truth, all depths on one colour scale.

    rgbs: (H, W, 3) uint8 RGB; predictions, ground_truths: (H', W') metres (resized to H, W)
    -> (rows * H, 3 * W, 3) uint8 BGR. near_m: depth drawn brightest (default: 5th percentile of GT).
    """
    if not (len(rgbs) == len(predictions) == len(ground_truths)) or not rgbs:
        raise ValueError("comparison_grid needs the same, non-zero number of images, predictions and ground truths")
    if near_m is None:
        finite = np.concatenate([g[np.isfinite(g) & (g > 0)].ravel() for g in ground_truths])
        near_m = float(np.percentile(finite, 5)) if finite.size else 1.0
    rows = []
    for index, (rgb, prediction, truth) in enumerate(zip(rgbs, predictions, ground_truths)):
        height, width = rgb.shape[:2]
        tiles = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)]
        for depth in (prediction, truth):
            # Nearest: keeps +inf and invalid pixels as they are instead of blending them.
            resized = cv2.resize(np.asarray(depth, np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
            tiles.append(colorize_inverse_depth(resized, near_m))
        if index == 0:
            tiles = [_label(tile, title) for tile, title in zip(tiles, titles)]
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def look_at_view(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Pose of a virtual optical-frame camera -> T_view_world (4, 4) (x right, y down, z forward)."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # rows: view axes in world coordinates
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ eye
    return T


def render_point_cloud(
    xyz: np.ndarray,
    rgb: np.ndarray,
    width: int = 640,
    height: int = 480,
    eye: Sequence[float] = (0.0, -6.0, -8.0),
    target: Optional[Sequence[float]] = None,
    focal_factor: float = 0.9,
    point_size: int = 2,
    background: Sequence[int] = (40, 40, 40),
) -> np.ndarray:
    """Draw a coloured cloud from a virtual camera behind and above the sensor (z-buffered splats).

    xyz: (N, 3) metres in the sensor's optical frame (x right, y down, z forward; NaN rows skipped),
    rgb: (N, 3) uint8; eye/target in that frame (target default: the cloud's median point)
    -> (height, width, 3) uint8 BGR.
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    keep = np.all(np.isfinite(xyz), axis=1)
    xyz, rgb = xyz[keep], rgb[keep]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = np.asarray(background, dtype=np.uint8)
    if xyz.shape[0] == 0:
        return image
    eye = np.asarray(eye, dtype=np.float64)
    target = np.median(xyz, axis=0) if target is None else np.asarray(target, dtype=np.float64)
    # "Up" in the optical frame is -y.
    T = look_at_view(eye, target, np.array([0.0, -1.0, 0.0]))
    view = xyz @ T[:3, :3].T + T[:3, 3]
    front = view[:, 2] > 0.1
    view, rgb = view[front], rgb[front]
    focal = focal_factor * width
    u = np.round(focal * view[:, 0] / view[:, 2] + 0.5 * width).astype(np.int64)
    v = np.round(focal * view[:, 1] / view[:, 2] + 0.5 * height).astype(np.int64)
    # Far to near, so nearer splats overwrite farther ones (a painter's z-buffer).
    order = np.argsort(-view[:, 2], kind="stable")
    u, v, colours = u[order], v[order], rgb[order][:, ::-1]
    for du in range(point_size):
        for dv in range(point_size):
            uu, vv = u + du, v + dv
            inside = (uu >= 0) & (uu < width) & (vv >= 0) & (vv < height)
            image[vv[inside], uu[inside]] = colours[inside]
    return image
