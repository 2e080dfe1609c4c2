"""MSD-net with one feature buffer: parameter count, shapes, and equality with the concatenating form."""

import copy

import pytest
import torch

from napari_hrtem.models.msdnet import MSDNet, msdnet_parameter_count
from napari_hrtem.models.registry import available_networks, parameter_count


def concatenating_forward(model, x):
    """The original implementation: concatenate before every layer (same modules)."""
    features = x
    for layer in model.layers:
        features = torch.cat([features, layer(features)], dim=1)
    return model.head(features)


@pytest.mark.parametrize("c, n, w, d, k", [(3, 4, 2, 24, 3), (3, 4, 3, 50, 5), (5, 2, 9, 7, 5), (1, 4, 1, 1, 3)])
def test_parameter_count_formula(c, n, w, d, k):
    model = MSDNet(n_images=c, n_classes=n, width=w, depth=d, kernel_size=k)
    assert parameter_count(model) == msdnet_parameter_count(c, n, w, d, k)
    expected = w * k * k * (d * c + w * d * (d - 1) // 2) + 2 * w * d + (c + d * w) * n + n
    assert msdnet_parameter_count(c, n, w, d, k) == expected
    assert msdnet_parameter_count(3, 4, 2, 24, 3) == 11536  # the shipped network


@pytest.mark.parametrize("shape", [(1, 3, 37, 50), (2, 3, 64, 64)])
def test_shapes_and_even_kernel(shape):
    model = MSDNet(width=3, depth=12, kernel_size=5).eval()
    with torch.no_grad():
        assert model(torch.zeros(shape)).shape == (shape[0], 4, *shape[2:])
    with pytest.raises(ValueError, match="odd"):
        MSDNet(kernel_size=4)


@pytest.mark.parametrize("checkpoint", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_buffer_equals_concatenation_forward_and_gradients(checkpoint, training):
    torch.manual_seed(0)
    model = MSDNet(width=2, depth=12, kernel_size=3, checkpoint=checkpoint).double().train(training)
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    reference = copy.deepcopy(model)
    x = torch.randn(2, 3, 21, 19, dtype=torch.double, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, out_ref = model(x), concatenating_forward(reference, x_ref)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-12)
    g = torch.randn_like(out)
    out.backward(g)
    out_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-12)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=name)
    for a, b in zip(model.buffers(), reference.buffers()):  # batch-norm running statistics
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_shipped_weights_give_the_outputs_of_the_concatenating_implementation():
    net = available_networks()["msdnet"]
    model = net.load("cpu")
    assert parameter_count(model) == net.card.parameters
    x = torch.randn(1, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), concatenating_forward(model, x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("dilation", [1, 4, 10, 30])
def test_matrix_product_convolution_equals_torch_forward_and_gradients(k, dilation):
    """The CPU layer convolution (taps as one matrix product), also with taps that reach past the image."""
    from napari_hrtem.models.msdnet import _taps_conv, _taps_conv_backward

    gen = torch.Generator().manual_seed(dilation + k)
    buf = torch.randn(2, 9, 13, 17, dtype=torch.double, generator=gen)
    x = buf[:, :6].requires_grad_(False)  # a channel slice of a buffer, as in the network
    weight = torch.randn(2, 6, k, k, dtype=torch.double, generator=gen)
    pad = dilation * (k // 2)
    xr, wr = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    ref = torch.nn.functional.conv2d(xr, wr, None, 1, pad, dilation)
    torch.testing.assert_close(_taps_conv(x, weight, dilation), ref, rtol=0, atol=1e-12)
    g = torch.randn_like(ref)
    ref.backward(g)
    gin, gw = _taps_conv_backward(g, x, weight, dilation, True)
    torch.testing.assert_close(gin, xr.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(gw, wr.grad, rtol=0, atol=1e-12)
    assert _taps_conv_backward(g, x, weight, dilation, False)[0] is None


def test_images_smaller_than_the_dilations_train_as_with_concatenation():
    torch.manual_seed(1)
    model = MSDNet(width=2, depth=12, kernel_size=3).double().train()
    reference = copy.deepcopy(model)
    x = torch.randn(2, 3, 6, 5, dtype=torch.double)
    out, out_ref = model(x), concatenating_forward(reference, x)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-12)
    out.square().sum().backward()
    out_ref.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=name)
