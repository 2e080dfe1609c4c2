"""Mixed-scale dense network (Pelt & Sethian, PNAS 115, 254 (2018)), memory-efficient.

Every layer sees the input and all earlier layers' outputs; layer ``i`` uses the dilation
``1 + i % max_dilation`` (dilations cycling 1..10); a 1x1 convolution maps all feature maps to
the class logits.

Memory: a naive implementation concatenates the feature maps before every layer
(``torch.cat([features, layer(features)])``) and autograd keeps every one of those growing
tensors for the backward pass, so the memory of a training step grows as ``d**2 * w`` feature
maps. Here, as in Pelt & Sethian's own implementation, one feature buffer of
``n_images + d * w`` channels is allocated per forward pass and layer ``i`` writes its ``w``
channels into it (its input is a view of the channels before it, never a copy). The backward
pass (:class:`_MSDFunction`) walks the layers in reverse with one gradient buffer of the same
size, so a training step holds about two buffers: ``2 * (n_images + d * w)`` feature maps.
With ``checkpoint=True`` (default) the convolution of each layer is recomputed in the backward
pass (gradient checkpointing: about one more forward pass of compute, no per-layer storage);
with ``checkpoint=False`` the pre-normalization output of every layer (``d * w`` more maps) is
kept instead.

Speed: on the CPU each layer's convolution is one matrix product of its ``k^2 w`` taps with the
channels before it, followed by ``k^2`` shifted adds (:func:`_taps_conv`), in the forward and the
backward pass: oneDNN's dilated convolutions with only ``w`` output channels reach a few GFLOP/s, and a
training step of the shipped network is 4.8x faster this way (``benchmarks/bench_training_speed.py``).
The tap contributions add ``k^2 w`` feature maps to the memory of a step. On CUDA cuDNN's convolutions
are used.

The parameter names and the channel order are those of the concatenating implementation
(``layers.<i>.0`` convolution, ``layers.<i>.1`` batch norm, ``head``), so weights trained with
either load into the other and give the same outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Layer convolutions on the CPU as one matrix product each (:func:`_taps_conv`); ``False`` uses
#: torch's (oneDNN's) convolution there too, as on CUDA (``benchmarks/bench_training_speed.py``
#: times both side by side).
CPU_TAPS = True


def msdnet_parameter_count(n_images: int, n_classes: int, width: int, depth: int, kernel_size: int) -> int:
    """Trainable parameters of :class:`MSDNet`.

    Layer ``i`` (``i = 0..d-1``) is a ``k x k`` convolution without bias from ``c + i w``
    channels to ``w`` channels plus a batch norm (``2 w``: scale and shift); the head is a
    ``1 x 1`` convolution with bias from ``c + d w`` channels to ``n`` classes::

        P = w k^2 (d c + w d (d - 1) / 2) + 2 w d + (c + d w) n + n

    with ``c = n_images``, ``n = n_classes``, ``w = width``, ``d = depth``, ``k = kernel_size``.
    E.g. the shipped network (c 3, n 4, w 2, d 24, k 3): 11232 + 96 + 208 = 11536.
    """
    c, n, w, d, k = n_images, n_classes, width, depth, kernel_size
    return w * k * k * (d * c + w * d * (d - 1) // 2) + 2 * w * d + (c + d * w) * n + n


def _shifted(y: torch.Tensor, out: torch.Tensor, dy: int, dx: int) -> None:
    """``out[..., p] += y[..., p + (dy, dx)]`` where ``p + (dy, dx)`` lies inside the image (zero padding)."""
    h, w = out.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:  # the tap only ever reads the padding
        return
    out[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] += y[
        ..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
    ]


def tap_matrix(weight: torch.Tensor) -> torch.Tensor:
    """``(k^2 w, C)`` rows of a ``(w, C, k, k)`` convolution weight: tap ``(ky, kx)`` major, output channel
    minor (the layout of :func:`_taps_conv` and of :mod:`napari_hrtem.models.fast`'s MSD-net)."""
    o, c, k, _ = weight.shape
    return weight.permute(2, 3, 0, 1).reshape(k * k * o, c)


def _taps_conv(x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """A stride-1 convolution with zero padding ``dilation * (k // 2)`` as one matrix product.

    ``(k^2 w x C) @ (C x H W)`` gives every tap's contribution to the ``w`` outputs at once,
    then ``k^2`` shifted adds sum them. For the MSD-net's few output channels (``w`` = 1-3) this is
    several times faster on the CPU than oneDNN's dilated convolution, which reaches a few GFLOP/s
    there (``benchmarks/bench_training_speed.py``); :mod:`napari_hrtem.models.fast` does the same
    for inference. ``x`` ``(B, C, H, W)`` (a channel slice of the feature buffer is read in place),
    ``weight`` ``(w, C, k, k)``; returns ``(B, w, H, W)``.
    """
    b, c, h, w = x.shape
    o, k = weight.shape[0], weight.shape[-1]
    half = k // 2
    y = torch.matmul(tap_matrix(weight), x.reshape(b, c, h * w)).view(b, k, k, o, h, w)
    out = x.new_zeros((b, o, h, w))
    for ky in range(k):
        for kx in range(k):
            _shifted(y[:, ky, kx], out, (ky - half) * dilation, (kx - half) * dilation)
    return out


def _taps_conv_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, dilation: int, input_grad: bool):
    """Gradients of :func:`_taps_conv` with respect to ``x`` (or ``None``) and ``weight``.

    Each tap's output gradient shifted back, ``G[tap](q) = grad(q - s_tap)``, stacked as a
    ``(k^2 w, H W)`` matrix: then ``dx = taps^T G`` and ``dweight = sum_B G x^T``.
    """
    b, c, h, w = x.shape
    o, k = weight.shape[0], weight.shape[-1]
    half = k // 2
    shifted = grad.new_zeros((b, k, k, o, h, w))
    for ky in range(k):
        for kx in range(k):
            _shifted(grad, shifted[:, ky, kx], -(ky - half) * dilation, -(kx - half) * dilation)
    shifted = shifted.view(b, k * k * o, h * w)
    flat = x.reshape(b, c, h * w)
    gw = torch.matmul(shifted, flat.transpose(1, 2)).sum(0).view(k, k, o, c).permute(2, 3, 0, 1)
    gin = None
    if input_grad:
        gin = torch.matmul(tap_matrix(weight).t(), shifted).view(b, c, h, w)
    return gin, gw


def _conv(x: torch.Tensor, weight: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Layer convolution: one matrix product on the CPU (:data:`CPU_TAPS`), torch's convolution elsewhere."""
    if CPU_TAPS and x.device.type == "cpu":
        return _taps_conv(x, weight, int(conv.dilation[0]))
    return F.conv2d(x, weight, None, 1, conv.padding, conv.dilation)


def _conv_backward(grad, x, weight, conv: nn.Conv2d, input_grad: bool):
    """``(d x or None, d weight)`` of :func:`_conv`."""
    if CPU_TAPS and x.device.type == "cpu":
        return _taps_conv_backward(grad, x, weight, int(conv.dilation[0]), input_grad)
    gin, gw, _ = torch.ops.aten.convolution_backward(
        grad,
        x,
        weight,
        None,
        [1, 1],
        list(conv.padding),
        list(conv.dilation),
        False,
        [0, 0],
        1,
        [input_grad, True, False],
    )
    return gin, gw


class _MSDFunction(torch.autograd.Function):
    """Forward and backward of all MSD layers and the head with one feature buffer.

    Inputs: ``x`` ``(B, c, H, W)``, the module (for its settings and batch-norm buffers), then
    per layer (conv weight, bn weight, bn bias) and the head's weight and bias. Under autocast
    (mixed precision on CUDA) the buffer and the convolutions use the autocast dtype, batch
    norm and the gradient buffer float32.
    """

    @staticmethod
    def forward(ctx, x, module, *params):
        layers = module.layers
        b, c, h, w = x.shape
        width = module.width
        dev = x.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        acc = torch.promote_types(dtype, torch.float32)
        with torch.autocast(dev, enabled=False):
            buf = x.new_empty((b, c + len(layers) * width, h, w), dtype=dtype)
            buf[:, :c] = x
            training = module.training
            keep = [] if not module.checkpoint else None
            for i, layer in enumerate(layers):
                conv, bn = layer[0], layer[1]
                start = c + i * width
                z = _conv(buf[:, :start], params[3 * i].to(dtype), conv)
                if training and bn.track_running_stats:
                    bn.num_batches_tracked.add_(1)
                # Batch norm in (at least) float32, also for a half/bfloat16 model; its running
                # statistics are updated in their own dtype.
                rm, rv = bn.running_mean, bn.running_var
                rm_acc = rm.to(acc) if rm is not None else None
                rv_acc = rv.to(acc) if rv is not None else None
                y = F.batch_norm(
                    z.to(acc),
                    rm_acc,
                    rv_acc,
                    params[3 * i + 1].to(acc),
                    params[3 * i + 2].to(acc),
                    training or not bn.track_running_stats,
                    bn.momentum,
                    bn.eps,
                )
                if training and rm is not None and rm_acc is not rm:
                    rm.copy_(rm_acc)
                    rv.copy_(rv_acc)
                buf[:, start : start + width] = torch.relu_(y)
                if keep is not None:
                    keep.append(z)
            out = F.conv2d(buf, params[-2].to(dtype), params[-1].to(dtype))
        ctx.module, ctx.training, ctx.c = module, training, c
        ctx.keep = keep
        # Running stats have been updated already: the backward pass normalizes with the batch
        # statistics of the recomputed z (training) or with these stats (eval), cloned here.
        ctx.stats = None if training else [(ly[1].running_mean.clone(), ly[1].running_var.clone()) for ly in layers]
        ctx.save_for_backward(buf, *params)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        buf, *params = ctx.saved_tensors
        module, c = ctx.module, ctx.c
        layers, width = module.layers, module.width
        dtype, dev = buf.dtype, buf.device.type
        acc = torch.promote_types(dtype, torch.float32)
        grads = [None] * len(params)
        with torch.autocast(dev, enabled=False):
            g = grad_out.to(acc)
            head_w = params[-2]
            # Head: out = W buf + b (1x1 convolution).
            grads[-1] = g.sum(dim=(0, 2, 3)).to(params[-1].dtype)
            grads[-2] = torch.einsum("bohw,bchw->oc", g, buf.to(acc)).reshape(head_w.shape).to(head_w.dtype)
            gbuf = torch.einsum("bohw,oc->bchw", g, head_w[:, :, 0, 0].to(acc)).contiguous()
            del g
            for i in range(len(layers) - 1, -1, -1):
                conv, bn = layers[i][0], layers[i][1]
                start = c + i * width
                inp = buf[:, :start]
                cw, bw, bb = params[3 * i], params[3 * i + 1], params[3 * i + 2]
                if ctx.keep is not None:
                    z = ctx.keep[i]
                else:
                    z = _conv(inp, cw.to(dtype), conv)
                with torch.enable_grad():
                    zr = z.detach().to(acc).requires_grad_(True)
                    bw_, bb_ = bw.detach().to(acc).requires_grad_(True), bb.detach().to(acc).requires_grad_(True)
                    if ctx.training or not bn.track_running_stats:
                        y = F.batch_norm(zr, None, None, bw_, bb_, True, 0.0, bn.eps)
                    else:
                        mean, var = ctx.stats[i]
                        y = F.batch_norm(zr, mean.to(acc), var.to(acc), bw_, bb_, False, 0.0, bn.eps)
                    y = torch.relu(y)
                    gz, gbw, gbb = torch.autograd.grad(y, (zr, bw_, bb_), gbuf[:, start : start + width])
                grads[3 * i + 1], grads[3 * i + 2] = gbw.to(bw.dtype), gbb.to(bb.dtype)
                gin, gw = _conv_backward(gz.to(dtype), inp, cw.to(dtype), conv, i > 0 or ctx.needs_input_grad[0])
                grads[3 * i] = gw.to(cw.dtype)
                if gin is not None:
                    gbuf[:, :start] += gin
                del gin, z, zr, y, gz
        gx = gbuf[:, :c].to(grad_out.dtype) if ctx.needs_input_grad[0] else None
        return (gx, None, *grads)


class MSDNet(nn.Module):
    """MSD-net mapping an ``(B, n_images, H, W)`` focal series to ``(B, n_classes, H, W)`` logits.

    Parameters
    ----------
    n_images : int
        Input channels (images of the focal series).
    n_classes : int
        Output channels (site classes + background).
    width : int
        Channels added per layer (w).
    depth : int
        Number of layers (d).
    kernel_size : int
        Kernel size k (odd).
    max_dilation : int
        Dilations cycle through ``1..max_dilation``.
    checkpoint : bool
        Recompute each layer's convolution in the backward pass instead of storing its output
        (less memory, about a third more compute per training step).

    Notes
    -----
    Parameters: :func:`msdnet_parameter_count`. Peak memory of a training step: about
    ``2 (n_images + d w)`` feature maps of ``B x H x W`` (plus ``d w`` with
    ``checkpoint=False``), against ``sum_i (n_images + i w) ~ d^2 w / 2`` for a network that
    concatenates before every layer.
    """

    def __init__(
        self,
        n_images: int = 3,
        n_classes: int = 4,
        width: int = 1,
        depth: int = 50,
        kernel_size: int = 3,
        max_dilation: int = 10,
        checkpoint: bool = True,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"MSD-net kernel size must be odd, got {kernel_size}")
        self.layers = nn.ModuleList()
        for i in range(depth):
            dilation = 1 + i % max_dilation
            self.layers.append(
                nn.Sequential(
                    nn.Conv2d(
                        n_images + i * width,
                        width,
                        kernel_size,
                        dilation=dilation,
                        padding=dilation * (kernel_size // 2),
                        bias=False,
                    ),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                )
            )
        self.head = nn.Conv2d(n_images + depth * width, n_classes, 1)
        self.width, self.checkpoint = width, bool(checkpoint)
        self.divisor = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = []
        for layer in self.layers:
            params += [layer[0].weight, layer[1].weight, layer[1].bias]
        params += [self.head.weight, self.head.bias]
        return _MSDFunction.apply(x, self, *params)


def deepened_state(state: dict, config: dict, depth: int, seed: int = 0) -> dict:
    """The state dict of a deeper MSD-net that computes exactly what ``state`` computes.

    Layers ``0..d-1`` and the batch norms are copied; layers ``d..depth-1`` get a fresh
    initialization (seeded); the head's weights on the new layers' channels are zero, so the
    logits are unchanged until training moves them (a function-preserving growth, as in
    Net2Net's deeper networks [1]_; every MSD layer already reaches the head directly [2]_).

    Parameters
    ----------
    state : dict
        State dict of an :class:`MSDNet` of ``config`` (``width``, ``depth``, ``kernel_size``,
        ``max_dilation``).
    config : dict
        Its settings.
    depth : int
        The new depth, at least the old one.
    seed : int
        Seed of the new layers' initialization.

    Returns
    -------
    dict
        State dict of an :class:`MSDNet` of ``dict(config, depth=depth)``.

    Raises
    ------
    ValueError
        If ``depth`` is smaller than the old depth.

    References
    ----------
    .. [1] T. Chen, I. Goodfellow, J. Shlens, "Net2Net: accelerating learning via knowledge
       transfer", ICLR (2016).
    .. [2] D. M. Pelt, J. A. Sethian, "A mixed-scale dense convolutional neural network for
       image analysis", PNAS 115, 254-259 (2018).
    """
    old = int(config["depth"])
    if depth < old:
        raise ValueError(f"an MSD-net can only be deepened: depth {depth} < its {old}")
    settings = {k: config[k] for k in ("width", "kernel_size", "max_dilation") if k in config}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        n_images, n_classes = state["layers.0.0.weight"].shape[1], state["head.bias"].shape[0]
        fresh = MSDNet(n_images=n_images, n_classes=n_classes, depth=depth, **settings)
    new = fresh.state_dict()
    for key, value in state.items():
        if key.startswith("layers."):
            new[key] = value.clone()
    head = torch.zeros_like(new["head.weight"])
    head[:, : state["head.weight"].shape[1]] = state["head.weight"]
    new["head.weight"], new["head.bias"] = head, state["head.bias"].clone()
    return new
