"""The written-out photometric path (mono_depth_ros_training.losses) equals the autograd one, values and gradients."""
import pytest
import torch

from mono_depth_ros_training.losses import PhotometricReference, _box3, _box3_adjoint, stacked_photometric_error

import torch.nn.functional as F


@pytest.mark.parametrize("shape", [(2, 2, 3, 5, 7), (1, 1, 3, 2, 3)])
@pytest.mark.parametrize("ssim_weight", [0.85, 0.0, 1.0])
def test_fast_photometric_error_matches_autograd_reference_values_and_gradients(shape, ssim_weight):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(shape, dtype=torch.float64, generator=generator, requires_grad=True)
    target = torch.rand(shape[1:], dtype=torch.float64, generator=generator)
    reference = PhotometricReference(target, ssim_weight)
    fast = reference.error(images)
    slow = stacked_photometric_error(images, target, ssim_weight)
    assert fast.shape == (shape[0], shape[1], 1, shape[3], shape[4])
    assert torch.allclose(fast, slow, atol=1e-12)
    weights = torch.rand(fast.shape, dtype=torch.float64, generator=generator)
    (fast_grad,) = torch.autograd.grad(fast, images, weights)
    (slow_grad,) = torch.autograd.grad(slow, images, weights)
    assert torch.allclose(fast_grad, slow_grad, atol=1e-12)
    assert torch.autograd.gradcheck(reference.error, (images,))


def test_box3_is_the_reflection_padded_3x3_mean_and_its_adjoint_is_its_transpose():
    generator = torch.Generator().manual_seed(1)
    values = torch.rand(2, 3, 6, 9, dtype=torch.float64, generator=generator)
    expected = F.avg_pool2d(F.pad(values, (1, 1, 1, 1), mode="reflect"), 3, 1)
    assert torch.allclose(_box3(values), expected, atol=1e-14)
    other = torch.rand(2, 3, 6, 9, dtype=torch.float64, generator=generator)
    # <box(v), o> == <v, box^T(o)>
    assert torch.allclose((_box3(values) * other).sum(), (values * _box3_adjoint(other)).sum(), atol=1e-12)
