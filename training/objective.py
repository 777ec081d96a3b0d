"""The training objective: both networks forward on a batch, and the self-supervised loss.

Monodepth2 (mono, mono+stereo: pose network, per-pixel minimum reprojection, auto-masking,
multi-scale SSIM+L1, edge-aware smoothness) and Monodepth v1-style stereo (both views as targets,
left-right consistency). Scale comes from the stereo baseline, the odometry's distances, or in mono
without odometry from a nominal step per frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from mono_depth_ros.geometry import invert_transform, pose_vector_to_matrix
from mono_depth_ros.networks import intrinsics_from_camera_head

from .health import depth_statistics
from .losses import lr_consistency, multiscale_view_loss, velocity_loss
from .scale import translation_at_distance

INTRINSICS_NAMES = ("fx", "fy", "cx", "cy")  # normalised: fx / W, fy / H, cx / W, cy / H


@dataclass
class StepOutput:
    """Losses of one batch (tensors, detached for logging except ``total``) and visuals."""

    total: torch.Tensor
    parts: Dict[str, torch.Tensor]
    depth: torch.Tensor  # (B, 1, H, W) scale-0 depth of the target
    warped: torch.Tensor  # (S, B, 3, H, W) scale-0 reconstructions of the target
    automask: torch.Tensor  # (B, 1, H, W)
    source_names: List[str]
    intrinsics: Optional[torch.Tensor] = None  # (B, 4) learned fx/W, fy/H, cx/W, cy/H (unmirrored), detached
    # Temporal modes: the pose network's (axis_angle, translation) for the (prev, target) then the
    # (target, next) pairs, (2B, 3) each, as predicted (before any odometry rescaling), detached.
    pose: Optional[Tuple[torch.Tensor, torch.Tensor]] = None


def temporal_transforms(axis_angle: torch.Tensor, translation: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pose-network outputs for the (prev, target) then (target, next) pairs, (2B, 3) each
    -> (T_target_prev, T_next_target), (B, 4, 4) each. PoseNet(earlier, later) gives T_later_earlier."""
    batch_size = axis_angle.shape[0] // 2
    return (pose_vector_to_matrix(axis_angle[:batch_size], translation[:batch_size]),
            pose_vector_to_matrix(axis_angle[batch_size:], translation[batch_size:]))


class Objective:
    """compute_losses and its helpers. A mixin of :class:`mono_depth_ros_training.trainer.Trainer`:
    it reads the networks, the mode flags (temporal, stereo, use_lr, stereo_head, other_view,
    learn_intrinsics, use_velocity, use_odometry_distance, use_constant_speed), nominal_step, amp and
    device that the trainer sets up.
    """

    def to_device(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        non_blocking = self.device.type == "cuda"
        return {
            key: value.to(self.device, non_blocking=non_blocking) if torch.is_tensor(value) else value
            for key, value in batch.items()
        }

    def compute_losses(self, batch: Dict[str, torch.Tensor], training: bool = True) -> StepOutput:
        """Forward both networks on a batch (already on the device) and build the loss."""
        config = self.config
        depth_net = self.depth_train if training else self.depth_net
        pose_net = self.pose_train if training else self.pose_net
        target = batch["target"].float()
        K = batch["K"].float()
        batch_size = target.shape[0]
        min_depth, max_depth = config.model.min_depth, config.model.max_depth
        autocast = torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp)

        with autocast:
            if self.stereo_head:  # (left, right) disparity from the target alone
                disparities = depth_net(batch["target_aug"], both_views=True)
            elif self.other_view:  # one forward for both views (one DDP call)
                disparities = depth_net(torch.cat([batch["target_aug"], batch["stereo_aug"]], 0))
            else:
                disparities = depth_net(batch["target_aug"])
        disparities = {scale: value.float() for scale, value in disparities.items()}
        if self.stereo_head:
            target_disp = {scale: value[:, :1] for scale, value in disparities.items()}
            stereo_disp = {scale: value[:, 1:2] for scale, value in disparities.items()}
        else:
            target_disp = {scale: value[:batch_size] for scale, value in disparities.items()}
            stereo_disp = {scale: value[batch_size:] for scale, value in disparities.items()}
        intrinsics = None

        sources: List[torch.Tensor] = []
        transforms: List[torch.Tensor] = []
        names: List[str] = []
        parts: Dict[str, torch.Tensor] = {}
        total = target.new_zeros(())
        if self.temporal:
            with autocast:
                pose_outputs = pose_net(
                    torch.cat([batch["prev_aug"], batch["target_aug"]], 0),
                    torch.cat([batch["target_aug"], batch["next_aug"]], 0),
                    with_intrinsics=self.learn_intrinsics,
                )
            axis_angle, translation = pose_outputs[0].float(), pose_outputs[1].float()
            if self.learn_intrinsics:
                K, intrinsics = self.camera_intrinsics(pose_outputs[2].float(), batch)
            distances = None
            if (self.use_velocity or self.use_odometry_distance) and "odom_distance_prev" in batch:
                distances = torch.cat([batch["odom_distance_prev"], batch["odom_distance_next"]], 0).float()
                if training:
                    self.odometry_pairs += torch.isfinite(distances).sum()
            warp_translation = translation
            if self.use_odometry_distance and distances is not None:
                warp_translation = translation_at_distance(translation, distances)
            elif self.use_constant_speed:
                distances = translation.new_full((translation.shape[0],), self.nominal_step)
                warp_translation = translation_at_distance(translation, distances)
            T_target_prev, T_next_target = temporal_transforms(axis_angle, warp_translation)
            sources += [batch["prev"].float(), batch["next"].float()]
            transforms += [invert_transform(T_target_prev), T_next_target]
            names += ["prev", "next"]
            # With a constant speed the pose network learns the nominal step, so its translations
            # stay in the depth's units (the node's visual odometry relies on it).
            if (self.use_velocity or self.use_constant_speed) and distances is not None:
                velocity = velocity_loss(translation, distances)
                parts["velocity"] = velocity.detach()
                total = total + config.loss.velocity_weight * velocity
        if self.stereo:
            sources.append(batch["stereo"].float())
            transforms.append(batch["T_stereo_target"].float())
            names.append("stereo")

        loss_options = dict(
            min_depth=min_depth,
            max_depth=max_depth,
            ssim_weight=config.loss.ssim_weight,
            smoothness_weight=config.loss.smoothness,
            automask=config.loss.automask,
            min_reprojection=config.loss.min_reprojection,
        )
        view = multiscale_view_loss(target_disp, target, sources, transforms, K, **loss_options)
        photometric, smoothness = view.photometric, view.smoothness
        view_total = view.total
        keep = self.other_view_samples(batch) if self.other_view else None
        if keep is not None and keep.numel() > 0:
            # Monodepth v1: the other camera's image is a target too (reconstructed from this one),
            # and the two disparity maps must agree.
            def chosen(value: torch.Tensor) -> torch.Tensor:
                return value if keep.numel() == batch_size else value.index_select(0, keep)

            this_view = {scale: chosen(value) for scale, value in target_disp.items()}
            other_view = {scale: chosen(value) for scale, value in stereo_disp.items()}
            T_stereo_target = chosen(batch["T_stereo_target"].float())
            T_target_stereo = invert_transform(T_stereo_target)
            K_pair = chosen(K)
            other = multiscale_view_loss(
                other_view, chosen(batch["stereo"].float()), [chosen(target)], [T_target_stereo], K_pair, **loss_options
            )
            view_total = (view_total + other.total) / 2
            photometric = (photometric + other.photometric) / 2
            smoothness = (smoothness + other.smoothness) / 2
            if self.use_lr:
                height, width = target.shape[-2:]
                consistency = target.new_zeros(())
                for scale in this_view:
                    this_disp, other_disp = this_view[scale], other_view[scale]
                    if this_disp.shape[-2:] != (height, width):
                        this_disp = F.interpolate(this_disp, size=(height, width), mode="bilinear", align_corners=False)
                        other_disp = F.interpolate(other_disp, size=(height, width), mode="bilinear", align_corners=False)
                    consistency = consistency + lr_consistency(
                        this_disp, other_disp, T_stereo_target, K_pair, min_depth=min_depth, max_depth=max_depth
                    ) + lr_consistency(
                        other_disp, this_disp, T_target_stereo, K_pair, min_depth=min_depth, max_depth=max_depth
                    )
                consistency = consistency / (2 * len(this_view))
                parts["lr_consistency"] = consistency.detach()
                total = total + config.loss.lr_consistency * consistency
        total = total + view_total
        parts["photometric"] = photometric.detach()
        parts["smoothness"] = smoothness.detach()
        parts["automask_fraction"] = view.automask_fraction
        parts["reprojection_error"] = view.reprojection_error
        parts["identity_error"] = view.identity_error
        parts["saturated_fraction"], parts["log_depth_std"] = depth_statistics(view.depth, min_depth, max_depth)
        parts["total"] = total.detach()
        if intrinsics is not None:
            intrinsics = intrinsics.detach()
            for index, name in enumerate(INTRINSICS_NAMES):
                parts[f"intrinsics_{name}"] = intrinsics[:, index].mean()
        pose = (axis_angle.detach(), translation.detach()) if self.temporal else None
        return StepOutput(total, parts, view.depth, view.warped, view.automask, names, intrinsics, pose)

    def other_view_samples(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Indices of the samples whose other camera view is a reconstruction target (see other_view).

        All samples with two forward passes. With the stereo head, only unmirrored ones: in a mirrored
        sample the other camera sits on the target's left, which a network seeing only the (mirrored)
        target cannot know, so its second channel learns from unmirrored samples (as Monodepth v1, which
        swaps the views instead; here the target must stay the temporal frames' camera).
        """
        batch_size = batch["target"].shape[0]
        flipped = batch.get("flipped")
        if not self.stereo_head or not torch.is_tensor(flipped):
            return torch.arange(batch_size, device=self.device)
        return (~flipped.reshape(-1).bool()).nonzero().reshape(-1).to(self.device)

    def camera_intrinsics(self, raw_pairs: torch.Tensor, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Camera-head codes of the (prev, target) and (target, next) pairs (2B, 4)
        -> (K (B, 3, 3) for the loss, in the sample's possibly mirrored image; the camera's normalised
        intrinsics (B, 4) fx/W, fy/H, cx/W, cy/H of the unmirrored image).

        The head describes the camera, not the picture: its K is that of the unmirrored image, and a
        mirrored sample uses cx -> (W - 1) - cx (as data.flip_intrinsics). refine corrects the given K
        (unmirrored first) the same way.
        """
        batch_size = raw_pairs.shape[0] // 2
        raw = (raw_pairs[:batch_size] + raw_pairs[batch_size:]) / 2  # both pairs see the target's camera
        height, width = self.config.data.height, self.config.data.width
        flipped = batch.get("flipped")
        flipped = (flipped.reshape(-1).bool() if torch.is_tensor(flipped)
                   else torch.zeros(batch_size, dtype=torch.bool, device=raw.device))

        def mirror(K: torch.Tensor) -> torch.Tensor:
            mirrored = K.clone()
            mirrored[:, 0, 2] = torch.where(flipped, (width - 1) - K[:, 0, 2], K[:, 0, 2])
            return mirrored

        given = mirror(batch["K"].float()) if self.config.model.intrinsics == "refine" else None
        K_camera = intrinsics_from_camera_head(raw, width, height, given)
        normalised = torch.stack(
            [K_camera[:, 0, 0] / width, K_camera[:, 1, 1] / height, K_camera[:, 0, 2] / width, K_camera[:, 1, 2] / height],
            dim=-1,
        )
        return mirror(K_camera), normalised
