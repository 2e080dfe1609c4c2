"""Inference-only copies of the networks: batch norm folded, MSD-net as GEMMs, bfloat16 where native.

:func:`inference_model` turns a loaded network (:meth:`napari_hrtem.models.registry.Network.load`,
which keeps returning the plain, trainable model) into a model for prediction only:

- every evaluation-mode batch norm is folded into the convolution before it
  (``torch.nn.utils.fusion.fuse_conv_bn_eval``: weights scaled, a bias added), so a U-Net or
  U-Net++ layer is one convolution and its PReLU;
- the MSD-net runs without oneDNN's 3x3 dilated convolutions with only ``w`` (2) output
  channels, which reach ~5 GFLOP/s: its features live in one zero-padded buffer
  ``(n_images + d w, H + 2P, W + 2P)`` (``P`` the largest dilation; the zero border is the
  convolutions' zero padding), layer ``i`` is ONE matrix product ``(9 w x C_i) @ (C_i x pixels)``
  giving every tap's contribution, followed by nine shifted adds of its ``(w, H, W)`` slices at
  the offsets ``(dy d, dx d)``, the folded bias and the ReLU, written into the buffer's interior;
  the head is one more product. Rows go in strips of about 2^17 padded pixels so that the tap
  contributions stay in the cache;
- ``precision="bfloat16"`` runs the convolutions and products in bfloat16 (float32 accumulation
  inside oneDNN / the GEMM; the MSD-net's tap sums in float32), the output in float32; PReLU is
  computed as ``relu(x) + a min(x, 0)`` (PyTorch's bfloat16 PReLU kernel is 5x slower than float32's).

Measured (``benchmarks/bench_cpu_inference.py``, 1 thread, CPU time, AMD EPYC with avx512_bf16;
``docs/measurements/cpu-inference.md``), old/new at 1024² and 4096²: U-Net 1.8x in float32 and
2.5-2.6x in bfloat16, U-Net++ 1.8-1.9x and 2.7-2.8x, MSD-net 4.0-4.4x and 6.4-6.7x. float32 gives the
plain model's probabilities to float rounding (~1e-5 in the logits, identical sites); bfloat16 moves
them by up to ~0.03 and the sites within :data:`BF16_TOLERANCE`.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

#: Precisions of :func:`inference_model` (``"auto"`` is resolved by :func:`choose_precision`).
PRECISIONS = ("auto", "float32", "bfloat16")

#: What bfloat16 inference may change in the sites of a network, against float32 (measured on
#: simulated MoS2 series, 512² to 4096²: docs/measurements/cpu-inference.md). bfloat16 moves the
#: probabilities by up to ~0.03, which can move a column's peak by one pixel on a flat-topped
#: maximum, and its 3x3 centroid by up to ~0.3 Å (a diagonal pixel is 0.32 Å); classes do not change.
#: :func:`napari_hrtem.analysis.inference.agreement_within` checks: sites matched one to one within
#: ``radius`` Å (the atomic F1 radius) with an F1 of at least ``f1``, at least ``same_class`` of the
#: pairs of the same class, no pair farther apart than ``max_shift`` Å, and an F1 of at least
#: ``f1_fine`` within ``fine_radius`` Å (measured: 0.985-0.99 at 0.1 Å, 0.999 at 0.25 Å, 1 at 0.5 Å on
#: 10^4-10^5 sites; 0.97-0.99 at 0.1 Å on 150-site series, where one flipped peak weighs more).
BF16_TOLERANCE = {"radius": 0.5, "f1": 0.99, "same_class": 0.99, "max_shift": 0.4, "fine_radius": 0.1, "f1_fine": 0.95}


def choose_precision(precision: str, device_type: str, native_bfloat16: bool) -> str:
    """The precision a prediction runs in: ``"float32"`` or ``"bfloat16"``.

    ``"auto"`` is bfloat16 where the hardware computes it natively (a CPU with AVX512-BF16 or AMX,
    a CUDA GPU of compute capability 8.0 or later) and float32 elsewhere: emulated bfloat16 is
    slower than float32. An explicit ``"float32"`` or ``"bfloat16"`` is kept as asked.

    Parameters
    ----------
    precision : str
        ``"auto"``, ``"float32"`` or ``"bfloat16"``.
    device_type : str
        ``"cpu"`` or ``"cuda"`` (any other device: float32 for ``"auto"``).
    native_bfloat16 : bool
        Whether that device computes bfloat16 natively (:func:`native_bfloat16`).

    Returns
    -------
    str
        ``"float32"`` or ``"bfloat16"``.

    Raises
    ------
    ValueError
        For a precision not in :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bfloat16" if device_type in ("cpu", "cuda") and native_bfloat16 else "float32"


def native_bfloat16(device: Any = "cpu") -> bool:
    """Whether ``device`` (a ``torch.device`` or its name) computes bfloat16 natively.

    CPU: AVX512-BF16 or AMX tiles (``torch.cpu._is_avx512_bf16_supported``,
    ``torch.cpu._is_amx_tile_supported``); CUDA: ``torch.cuda.is_bf16_supported(including_emulation=False)``.
    """
    import torch

    kind = torch.device(device).type
    if kind == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    if kind == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # an older torch without the argument
            return bool(torch.cuda.is_bf16_supported())
    return False


def _dtype(precision: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]


def _fold_batch_norms(module):
    """Fold every ``Conv2d`` directly followed by an eval ``BatchNorm2d`` inside an ``nn.Sequential``
    (in place); the batch norm becomes an ``nn.Identity``."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
    return module


@functools.cache
def _base():
    from torch import nn

    class FastModel(nn.Module):
        """Common part of the inference-only models: float32 NCHW in, float32 logits out."""

        def __init__(self, plain, precision: str):
            super().__init__()
            self.precision = precision
            self.divisor = int(getattr(plain, "divisor", 1))
            self.n_images = input_channels(plain)
            self._plain = [plain]  # a list: not a sub-module (not in state_dict, not moved by .to())

        @property
        def plain_model(self):
            """The network this copy was made from (its receptive field is measured on it)."""
            return self._plain[0]

    return FastModel


def input_channels(model) -> int:
    """Input channels: the ``n_images`` attribute, else the first convolution's."""
    from torch import nn

    if getattr(model, "n_images", None):
        return int(model.n_images)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    raise ValueError("cannot tell the number of input images of this network")


@functools.cache
def _prelu_class():
    import torch
    from torch import nn

    class SplitPReLU(nn.Module):
        """``relu(x) + a min(x, 0)``: PReLU exactly (one term is zero), 5x faster in bfloat16."""

        def __init__(self, prelu):
            super().__init__()
            self.weight = nn.Parameter(prelu.weight.detach().clone(), requires_grad=False)

        def forward(self, x):
            a = self.weight.reshape(1, -1, *([1] * (x.dim() - 2))) if self.weight.numel() > 1 else self.weight
            return torch.relu(x).add_(x.clamp(max=0).mul_(a))

    return SplitPReLU


def _replace_prelu(module) -> None:
    """Every ``nn.PReLU`` inside ``module`` becomes a ``SplitPReLU`` (in place)."""
    from torch import nn

    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            if isinstance(child, nn.PReLU):
                parent._modules[name] = _prelu_class()(child)


@functools.cache
def _conv_model_class():
    import torch

    base = _base()

    class FastConvNet(base):  # type: ignore[misc, valid-type]
        """U-Net / U-Net++ (any module of convolutions) with batch norm folded, channels-last, bf16 or f32."""

        def __init__(self, plain, precision: str):
            super().__init__(plain, precision)
            net = _fold_batch_norms(copy.deepcopy(plain).eval())
            if precision == "bfloat16":
                _replace_prelu(net)  # PyTorch's bfloat16 PReLU kernel is 5x slower than float32's
            for p in net.parameters():
                p.requires_grad_(False)
            self.net = net.to(dtype=_dtype(precision), memory_format=torch.channels_last)

        def forward(self, x):
            x = x.to(dtype=_dtype(self.precision), memory_format=torch.channels_last)
            return self.net(x).float().contiguous()

    return FastConvNet


@functools.cache
def _msd_model_class():
    import torch

    from napari_hrtem.models.msdnet import tap_matrix

    base = _base()

    class FastMSDNet(base):  # type: ignore[misc, valid-type]
        """The MSD-net as one padded feature buffer and one matrix product per layer (see the module)."""

        #: Padded pixels per strip of rows (the tap contributions of a strip stay in the cache).
        strip_pixels = 2**17

        def __init__(self, plain, precision: str):
            super().__init__(plain, precision)
            dtype = _dtype(precision)
            self.width = int(plain.width)
            taps, biases, dilations = [], [], []
            for layer in plain.layers:
                conv, bn = layer[0], layer[1]
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                weight = conv.weight * scale[:, None, None, None]  # (w, C_i, k, k)
                taps.append(tap_matrix(weight).detach().to(dtype))  # (k*k*w, C_i)
                biases.append((bn.bias - bn.running_mean * scale).detach().float().reshape(-1, 1, 1))
                dilations.append(int(conv.dilation[0]))
            self.kernel = int(plain.layers[0][0].kernel_size[0]) if len(plain.layers) else 1
            self.dilations = dilations
            for i, (t, bias) in enumerate(zip(taps, biases, strict=True)):  # buffers: .to(device) moves them
                self.register_buffer(f"taps_{i}", t)
                self.register_buffer(f"bias_{i}", bias)
            self.register_buffer("head_weight", plain.head.weight[:, :, 0, 0].detach().to(dtype))
            self.register_buffer("head_bias", plain.head.bias.detach().float().reshape(-1, 1, 1))

        def layers(self):
            """``(taps (k*k*w, C_i), bias (w, 1, 1), dilation)`` per layer."""
            for i, d in enumerate(self.dilations):
                yield getattr(self, f"taps_{i}"), getattr(self, f"bias_{i}"), d

        def forward(self, x):
            dtype = _dtype(self.precision)
            b, c, h, w = x.shape
            half = self.kernel // 2
            pad = half * max(self.dilations, default=0)
            hp, wp = h + 2 * pad, w + 2 * pad
            width, n = self.width, len(self.dilations)
            out = []
            for image in x:
                buf = image.new_zeros((c + n * width, hp, wp), dtype=dtype)
                buf[:c, pad : pad + h, pad : pad + w] = image
                flat = buf.view(buf.shape[0], hp * wp)
                # one strip on CUDA (few, large kernels); ~2^17 px on the CPU (cache)
                rows = h if x.device.type != "cpu" else max(8, min(h, self.strip_pixels // wp))
                for i, (taps, bias, d) in enumerate(self.layers()):
                    start = c + i * width
                    reach = half * d
                    target = buf[start : start + width]
                    for r in range(0, h, rows):
                        rr = min(rows, h - r)
                        r0 = pad + r - reach
                        r1 = pad + r + rr + reach
                        t = (taps @ flat[:start, r0 * wp : r1 * wp]).view(self.kernel**2, width, r1 - r0, wp)
                        acc = bias.expand(width, rr, w).clone()  # float32 sums, also for bfloat16
                        for k in range(self.kernel**2):
                            y0 = reach + (k // self.kernel - half) * d
                            x0 = pad + (k % self.kernel - half) * d
                            acc += t[k, :, y0 : y0 + rr, x0 : x0 + w]
                        target[:, pad + r : pad + r + rr, pad : pad + w] = acc.clamp_(min=0)
                logits = (self.head_weight @ flat).view(-1, hp, wp)[:, pad : pad + h, pad : pad + w]
                out.append(logits.float() + self.head_bias)
            return torch.stack(out)

    return FastMSDNet


def inference_model(model, precision: str = "auto", device: Any = None):
    """An inference-only copy of a loaded network, faster on the CPU, with the same outputs.

    Batch norm is folded into the convolutions; the MSD-net runs as one matrix product and
    nine shifted adds per layer (see the module docstring); ``precision`` ``"bfloat16"`` runs the
    network in bfloat16. The plain ``model`` is not changed (training keeps using it). An
    inference copy given as ``model`` is returned as it is (its precision kept).

    Parameters
    ----------
    model : torch.nn.Module
        A network in eval mode (:class:`~napari_hrtem.models.unet.UNet`,
        :class:`~napari_hrtem.models.unetpp.UNetPlusPlus`, :class:`~napari_hrtem.models.msdnet.MSDNet`
        or any module of ``Conv2d`` + ``BatchNorm2d`` layers) on its device.
    precision : str
        ``"auto"`` (bfloat16 where the device computes it natively, :func:`choose_precision`),
        ``"float32"`` (the plain model's outputs to float rounding: ~1e-5 in the logits) or
        ``"bfloat16"`` (probabilities within a few 0.01, sites within :data:`BF16_TOLERANCE`).
    device : torch.device or str, optional
        Default: the model's device.

    Returns
    -------
    torch.nn.Module
        Maps a float32 ``(B, n_images, H, W)`` tensor to float32 ``(B, n_classes, H, W)`` logits;
        has the plain model's ``divisor`` and ``n_images``, ``plain_model`` (the model it was made
        from) and ``precision`` (the one resolved).

    Raises
    ------
    ValueError
        For a precision not in :data:`PRECISIONS` or a model in training mode.
    """
    import torch

    from napari_hrtem.models.msdnet import MSDNet

    if getattr(model, "_hrtem_fast", False):
        return model
    if model.training:
        raise ValueError("inference_model needs a model in eval mode (model.eval())")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    resolved = choose_precision(precision, device.type, native_bfloat16(device) if precision == "auto" else False)
    with torch.no_grad():
        cls = _msd_model_class() if isinstance(model, MSDNet) else _conv_model_class()
        fast = cls(model, resolved).to(device).eval()
    fast._hrtem_fast = True
    return fast


#: The symmetries of the square pixel grid (the dihedral group of order 8) as ``(quarter turns, mirror)``.
SYMMETRIES = tuple((k, mirror) for k in range(4) for mirror in (False, True))


def symmetrized(model):
    """Test-time augmentation: the model's logits averaged over the 8 symmetries of the pixel grid.

    Each input is rotated by ``k`` quarter turns and mirrored (:data:`SYMMETRIES`), the network's
    logits are mapped back by the inverse transform and averaged. The networks were trained with
    these transforms as augmentation, and a lattice lies at any in-plane angle, so each pass is an
    equally valid prediction; the average removes part of the network's orientation-dependent
    error. Costs 8 passes (peak memory of one).

    Parameters
    ----------
    model : torch.nn.Module
        An inference copy (:func:`inference_model`) mapping ``(B, n_images, H, W)`` float32 to
        ``(B, n_classes, H, W)`` logits; H and W multiples of its ``divisor``.

    Returns
    -------
    torch.nn.Module
        The same interface and attributes (``divisor``, ``n_images``, ``precision``,
        ``plain_model``), with ``symmetrized = True``. Given a symmetrized model, returns it.

    References
    ----------
    .. [1] G. Wang, W. Li, M. Aertsen, J. Deprest, S. Ourselin, T. Vercauteren, "Aleatoric uncertainty
       estimation with test-time augmentation for medical image segmentation with convolutional
       neural networks", Neurocomputing 338, 34-45 (2019).
    """
    import torch

    if getattr(model, "symmetrized", False):
        return model

    class Symmetrized(torch.nn.Module):
        _hrtem_fast = True
        symmetrized = True

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.divisor, self.n_images = inner.divisor, inner.n_images
            self.precision, self.plain_model = inner.precision, inner.plain_model

        def forward(self, x):
            total = None
            for k, mirror in SYMMETRIES:
                t = torch.rot90(x, k, dims=(-2, -1))
                y = self.inner(t.flip(-1) if mirror else t)
                y = torch.rot90(y.flip(-1) if mirror else y, -k, dims=(-2, -1))
                total = y if total is None else total + y
            return total / len(SYMMETRIES)

    return Symmetrized(model)
