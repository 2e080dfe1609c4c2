"""Fast batched image synthesis in PyTorch from stored, band-limited exit waves.

The multislice exit wave is the expensive part of a simulation; the microscope is cheap. This
module makes focal series from stored exit waves as batched tensor operations (on the GPU when
there is one) so that a trainer can draw fresh microscope parameters for every batch. The
physics and its order are those of :func:`napari_hrtem.simulation.imaging.focal_series` (the numpy/abTEM
per-image path), for every image of every series at once:

1. **CTF** with partial temporal coherence, exactly as abTEM 1.0.11 ``CTF`` (``transfer.py``):
   ``ψ(k) ← ψ(k) E_t(k) exp(-i χ(k))`` with α = λk, φ = atan2(k_y, k_x) and

   ``χ = 2π/λ [½α²(C10 + C12 cos 2(φ - φ12)) + ⅓α³ C21 cos(φ - φ21) + ¼α⁴ C30]``,
   ``E_t = exp(-(π/2 · Δ · λ k²)²)`` (Δ the 1/e focal spread, Kirkland's quasi-coherent
   envelope, applied to the wave as abTEM does); ``C10 = -defocus`` (abTEM sign: positive
   defocus = underfocus).
2. **Intensity** |ψ|², computed on a grid large enough that it does not alias into the image's
   band.
3. **Blur**: Gaussian of standard deviation σ (Å), as a Fourier filter ``exp(-2π²σ²k²)``
   (the numpy path applies the same Gaussian in real space, periodic boundary).
4. **Resampling** to the image grid by cropping the spectrum (the ±Nyquist terms averaged).
5. **Dose**: Poisson counts with mean ``I · dose · s²`` (s the image sampling, Å/px),
   divided back by ``dose · s²``.
6. **MTF** of the detector, ``(1 - c1) / (1 + (q / (2 c2 q_N))**c3) + c1``
   (:func:`napari_hrtem.simulation.imaging.mtf`: the form of M. H. L. Larsen et al.,
   "Reconstructing the exit wave of 2D materials in high-resolution transmission electron microscopy using
   machine learning", Ultramicroscopy 243, 113641 (2023)), after the noise so that the noise is
   correlated.
7. **Fixed pattern** of the camera (off by default): a per-pixel gain ``1 + gain_noise · N(0, 1)``
   and offset ``dark_noise · N(0, 1)``, one pair of maps per focal series, the same in all its
   images (:func:`napari_hrtem.simulation.imaging.fixed_pattern`).
8. **Readout**: Gaussian noise of standard deviation ``readout`` (units of the vacuum
   intensity).

Band-limited storage
--------------------
At 50 keV (λ = 0.0536 Å) the temporal envelope with the smallest focal spread of the thesis'
Table 1 (Δ = 5 Å) is ``exp(-(π/2 Δ λ k²)²)`` = 1e-3 at 2.5 Å⁻¹ and 6e-7 at 3 Å⁻¹: nothing
beyond ~3 Å⁻¹ reaches the image. :func:`band_limit` therefore keeps only the Fourier
coefficients of the exit wave inside a disc of radius ``cutoff`` (default: where the
envelope of Δ = 5 Å falls to 1e-6, 2.97 Å⁻¹ at 50 keV); they are exact, the rest is zero.
A 0.044 Å simulation grid of 640² points becomes 167² coefficients (15× less memory). The
intensity, whose band reaches 2·cutoff, is computed on a grid with Nyquist frequency
``cutoff + q_N / 2`` (q_N the image's Nyquist frequency), where its aliases stay outside the
image's band: 240² instead of 640² points for 128² images at 0.22 Å/px.
:func:`synthesize` refuses parameters whose envelope at the stored cut-off exceeds 1e-3.

Conventions
-----------
Arrays are ``(y, x)`` = napari ``(row, col)`` (abTEM indexes ``(x, y)``; the azimuth φ is the
same physical angle, from the x axis towards y). The image grid covers the exit wave's cell
exactly, pixel ``(i, j)`` centred at ``(i s, j s)`` Å. Images are intensities in units of the
incident beam (vacuum ≈ 1), ``float32``, ``(B, N, H, W)`` ordered by increasing defocus.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_hrtem.simulation.imaging import ExitWave, MicroscopeParameters, draw_microscope_parameters

#: Smallest focal spread (Å) of the thesis' Table 1, used for the default storage cut-off.
MIN_FOCAL_SPREAD = 5.0
#: Envelope value at which the default storage cut-off is set.
STORAGE_THRESHOLD = 1e-6
#: Largest envelope value at the stored cut-off that :func:`synthesize` accepts.
MAX_ENVELOPE_AT_CUTOFF = 1e-3


def wavelength(energy: float) -> float:
    """Relativistic electron wavelength λ in Å for a beam energy in eV (as abTEM, CODATA of ASE)."""
    from ase import units

    return float(
        units._hplanck
        * units._c
        / math.sqrt(energy * (2 * units._me * units._c**2 / units._e + energy))
        / units._e
        * 1e10
    )


def temporal_envelope(k, energy: float, focal_spread):
    """abTEM's temporal-coherence envelope ``exp(-(π/2 · Δ · λ k²)²)``.

    Parameters
    ----------
    k : float or numpy.ndarray
        Spatial frequency, Å⁻¹.
    energy : float
        Beam energy, eV.
    focal_spread : float or numpy.ndarray
        1/e width Δ of the focal spread, Å.
    """
    return np.exp(-((0.5 * np.pi * np.asarray(focal_spread) * wavelength(energy) * np.asarray(k) ** 2) ** 2))


def envelope_cutoff(
    energy: float, focal_spread: float = MIN_FOCAL_SPREAD, threshold: float = STORAGE_THRESHOLD
) -> float:
    """Spatial frequency (Å⁻¹) beyond which the temporal envelope is below ``threshold``.

    Solves ``exp(-(π/2 Δ λ k²)²) = threshold`` (abTEM's envelope, see :func:`temporal_envelope`).
    2.97 Å⁻¹ at 50 keV, Δ = 5 Å, threshold 1e-6.

    Raises
    ------
    ValueError
        If ``focal_spread`` ≤ 0 (a fully coherent beam has no cut-off) or ``threshold`` not in (0, 1).
    """
    if focal_spread <= 0:
        raise ValueError(f"focal spread must be > 0 Å for a cut-off, got {focal_spread}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return math.sqrt(math.sqrt(-math.log(threshold)) / (0.5 * math.pi * focal_spread * wavelength(energy)))


@dataclass
class BandLimitedWave:
    """An exit wave stored as its Fourier coefficients inside a disc ``|k| ≤ cutoff``.

    Attributes
    ----------
    spectrum : numpy.ndarray
        ``(2 ny + 1, 2 nx + 1)`` complex64 Fourier-series coefficients, centred: element
        ``(i, j)`` is the coefficient of ``exp(2πi (ky y + kx x))`` with
        ``ky = (i - ny) / Ly``, ``kx = (j - nx) / Lx`` (Å⁻¹); zero outside the disc. The wave is
        ``ψ(y, x) = Σ spectrum · exp(2πi (ky y + kx x))``, so a plane wave has spectrum 1 at the
        centre.
    extent : (float, float)
        Cell size ``(Ly, Lx)`` in Å.
    energy : float
        Beam energy, eV.
    cutoff : float
        Radius of the kept disc, Å⁻¹ (``inf``: every coefficient of the simulation grid kept).
    params : dict
        How the wave was made (copied from :class:`~napari_hrtem.simulation.imaging.ExitWave`) plus
        ``wave_sampling`` (Å) and ``wave_shape`` of the simulation grid.
    """

    spectrum: np.ndarray
    extent: tuple[float, float]
    energy: float
    cutoff: float
    params: dict = field(default_factory=dict)

    @property
    def half_size(self) -> tuple[int, int]:
        """``(ny, nx)``: the largest frequency index kept along y and x."""
        return (self.spectrum.shape[0] - 1) // 2, (self.spectrum.shape[1] - 1) // 2

    def to_exit_wave(self, shape: tuple[int, int]) -> ExitWave:
        """The band-limited wave on a real-space grid of ``shape`` ``(H, W)`` points over the cell.

        Raises
        ------
        ValueError
            If the grid is too coarse to hold the kept frequencies or its sampling differs in y and x.
        """
        ny, nx = self.half_size
        h, w = shape
        if h < 2 * ny + 1 or w < 2 * nx + 1:
            raise ValueError(f"grid {shape} too small for a spectrum of {self.spectrum.shape}")
        sy, sx = self.extent[0] / h, self.extent[1] / w
        if not np.isclose(sy, sx, rtol=1e-6):
            raise ValueError(f"grid {shape} over {self.extent} Å has unequal sampling {sy:.5f}, {sx:.5f} Å")
        full = np.zeros(shape, np.complex128)
        full[np.ix_(np.arange(-ny, ny + 1) % h, np.arange(-nx, nx + 1) % w)] = self.spectrum
        array = np.fft.ifft2(full, norm="forward").astype(np.complex64)
        return ExitWave(array=array, sampling=sy, energy=self.energy, params=dict(self.params))


def band_limit(
    wave: ExitWave,
    cutoff: float | None = None,
    *,
    min_focal_spread: float = MIN_FOCAL_SPREAD,
    threshold: float = STORAGE_THRESHOLD,
) -> BandLimitedWave:
    """Keep an exit wave's Fourier coefficients with ``|k| ≤ cutoff`` for cheap storage and synthesis.

    The kept coefficients are exact (the wave's FFT in float64); those beyond the cut-off are
    dropped. Images made from the result agree with the full wave's wherever the temporal
    envelope at the cut-off is negligible (see the module notes): with the default cut-off,
    for every focal spread ≥ ``min_focal_spread``.

    Parameters
    ----------
    wave : ExitWave
        ``(Hw, Ww)`` complex wave at ``wave.sampling`` Å.
    cutoff : float, optional
        Radius of the kept disc in Å⁻¹. Default: :func:`envelope_cutoff` of the wave's energy,
        ``min_focal_spread`` and ``threshold`` (2.97 Å⁻¹ at 50 keV, 5 Å, 1e-6). ``numpy.inf``
        keeps every coefficient (the square grid without its Nyquist lines).
    min_focal_spread : float
        Smallest focal spread (Å) the wave will be imaged with, for the default cut-off.
    threshold : float
        Envelope value at the default cut-off.

    Returns
    -------
    BandLimitedWave

    Raises
    ------
    ValueError
        If ``cutoff`` is not positive.
    """
    if cutoff is None:
        cutoff = envelope_cutoff(wave.energy, min_focal_spread, threshold)
    if not cutoff > 0:
        raise ValueError(f"cut-off must be > 0 Å⁻¹, got {cutoff}")
    hw, ww = wave.array.shape
    ly, lx = hw * wave.sampling, ww * wave.sampling
    ny = int(min(np.floor(cutoff * ly + 1e-9), (hw - 1) // 2))
    nx = int(min(np.floor(cutoff * lx + 1e-9), (ww - 1) // 2))
    iy, ix = np.arange(-ny, ny + 1), np.arange(-nx, nx + 1)
    spectrum = np.fft.fft2(wave.array.astype(np.complex128), norm="forward")[np.ix_(iy % hw, ix % ww)]
    if np.isfinite(cutoff):
        spectrum[(iy[:, None] / ly) ** 2 + (ix[None, :] / lx) ** 2 > cutoff**2] = 0
    params = dict(wave.params, wave_sampling=wave.sampling, wave_shape=[hw, ww])
    return BandLimitedWave(
        spectrum=spectrum.astype(np.complex64), extent=(ly, lx), energy=wave.energy, cutoff=float(cutoff), params=params
    )


def parameter_tensors(params: Sequence[MicroscopeParameters], device=None) -> dict:
    """Stack the fields of a batch of :class:`~napari_hrtem.simulation.imaging.MicroscopeParameters` into tensors.

    Returns
    -------
    dict
        ``defoci`` ``(B, N)`` Å and, each ``(B,)``: ``Cs``, ``C12``, ``phi12``, ``C21``,
        ``phi21``, ``focal_spread``, ``blur``, ``dose``, ``mtf_c1``, ``mtf_c2``, ``mtf_c3``,
        ``readout``, ``energy``, ``gain_noise``, ``dark_noise`` (float64 on ``device``).

    Raises
    ------
    ValueError
        If the batch is empty or its focal series differ in length.
    """
    import torch

    if len(params) == 0:
        raise ValueError("no microscope parameters given")
    defoci = [np.asarray(p.defoci, float) for p in params]
    if len({len(d) for d in defoci}) != 1:
        raise ValueError(f"focal series of different lengths in one batch: {sorted({len(d) for d in defoci})}")
    names = (
        "Cs",
        "C12",
        "phi12",
        "C21",
        "phi21",
        "focal_spread",
        "blur",
        "dose",
        "mtf_c1",
        "mtf_c2",
        "mtf_c3",
        "readout",
        "energy",
        "gain_noise",
        "dark_noise",
    )
    out = {
        name: torch.tensor([float(getattr(p, name) or 0.0) for p in params], dtype=torch.float64, device=device)
        for name in names
    }
    out["defoci"] = torch.tensor(np.stack(defoci), dtype=torch.float64, device=device)
    return out


def _default_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _work_size(n_half: int, image_size: int) -> int:
    """Grid size for the intensity: holds the wave and keeps the image band free of aliases."""
    need = max(2 * n_half + image_size // 2 + 1, image_size, 2 * n_half + 1)
    size = need
    while True:  # next 2-3-5-smooth size (fast FFTs)
        m = size
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return size
        size += 1


def synthesize(
    spectra,
    samplings,
    params: Sequence[MicroscopeParameters] | dict,
    image_shape: tuple[int, int],
    *,
    energy: float,
    cutoff: float = np.inf,
    noise: bool = True,
    generator=None,
    device=None,
):
    """Focal series from band-limited exit waves, all images of the batch at once (PyTorch).

    Same physics and order as :func:`napari_hrtem.simulation.imaging.focal_series` (see the module notes):
    abTEM CTF with the temporal envelope, intensity, Gaussian blur, Fourier resampling to the
    image grid, then (``noise=True``) Poisson dose noise, detector MTF and readout noise.

    Parameters
    ----------
    spectra : torch.Tensor or numpy.ndarray
        ``(B, 2 ny + 1, 2 nx + 1)`` complex64 centred Fourier coefficients of the exit waves
        (:attr:`BandLimitedWave.spectrum`, zero-padded to a common size), for cells of
        ``image_shape * samplings[b]`` Å.
    samplings : sequence of float or torch.Tensor
        ``(B,)`` image sampling of each item, Å/px (cell size / image shape).
    params : sequence of MicroscopeParameters or dict
        One per item (or :func:`parameter_tensors` of them); all with the same number of images N.
    image_shape : (int, int)
        ``(H, W)`` of the images.
    energy : float
        Beam energy of the waves, eV; the parameters' ``energy`` must match it.
    cutoff : float
        Storage cut-off of the waves, Å⁻¹, to check that the envelope vanishes there.
    noise : bool
        False gives the noise-free images (dose, MTF and readout skipped).
    generator : torch.Generator, optional
        Source of the noise (on ``device``); give a seeded one for reproducible batches.
    device : str or torch.device, optional
        Default: CUDA when available, else the CPU.

    Returns
    -------
    torch.Tensor
        ``(B, N, H, W)`` float32 on ``device``, ordered by increasing defocus.

    Raises
    ------
    ValueError
        Mismatched batch sizes or energies, an image grid too small for the stored band, or a
        focal spread so small that the envelope at the stored cut-off exceeds 1e-3 (the waves
        would need a larger cut-off).
    """
    import torch

    device = torch.device(device) if device is not None else _default_device()
    spectra = torch.as_tensor(spectra, device=device)
    if spectra.dtype != torch.complex64:
        spectra = spectra.to(torch.complex64)
    if spectra.ndim != 3:
        raise ValueError(f"spectra must be (B, My, Mx), got shape {tuple(spectra.shape)}")
    b, my, mx = spectra.shape
    if my % 2 == 0 or mx % 2 == 0:
        raise ValueError(f"spectra must have odd sizes (centred), got {(my, mx)}")
    ny, nx = (my - 1) // 2, (mx - 1) // 2
    h, w = image_shape
    p = params if isinstance(params, dict) else parameter_tensors(params, device)
    p = {k: v.to(device) for k, v in p.items()}
    s = torch.as_tensor(samplings, dtype=torch.float64, device=device).reshape(-1)
    if len(s) != b or len(p["defoci"]) != b:
        raise ValueError(f"batch sizes differ: {b} waves, {len(s)} samplings, {len(p['defoci'])} parameter sets")
    if not torch.allclose(p["energy"], torch.full_like(p["energy"], float(energy)), rtol=1e-9):
        raise ValueError(f"microscope energy {p['energy'].tolist()} eV differs from the waves' {energy} eV")
    lam = wavelength(energy)
    if np.isfinite(cutoff):
        worst = float(temporal_envelope(cutoff, energy, float(p["focal_spread"].min())))
        if worst > MAX_ENVELOPE_AT_CUTOFF:
            raise ValueError(
                f"focal spread {float(p['focal_spread'].min()):.3g} Å transmits {worst:.2g} of the wave at the "
                f"stored cut-off {cutoff:.3g} Å⁻¹ (> {MAX_ENVELOPE_AT_CUTOFF:g}): store the waves with a larger "
                f"cut-off (band_limit(..., min_focal_spread=...))"
            )
    n = p["defoci"].shape[1]
    f32 = torch.float32

    # Frequencies in cycles/px of the image grid: k = q / s (Å⁻¹).
    qy = (torch.arange(-ny, ny + 1, device=device, dtype=torch.float64) / h)[:, None]
    qx = (torch.arange(-nx, nx + 1, device=device, dtype=torch.float64) / w)[None, :]
    q2 = qy**2 + qx**2
    basis = torch.stack([q2, qx**2 - qy**2, 2 * qx * qy, q2 * qx, q2 * qy, q2**2]).reshape(6, -1)

    # Aberration phase χ = Σ coefficient · basis (abTEM's polar expansion, cartesian form).
    c10 = -p["defoci"]  # (B, N)
    one = torch.ones_like(c10)
    s_ = s[:, None]
    c12, c21 = p["C12"][:, None], p["C21"][:, None]
    a12, a21 = p["phi12"][:, None], p["phi21"][:, None]
    coef = torch.stack(
        [
            math.pi * lam * c10 / s_**2,
            math.pi * lam * c12 * torch.cos(2 * a12) / s_**2 * one,
            math.pi * lam * c12 * torch.sin(2 * a12) / s_**2 * one,
            2 * math.pi / 3 * lam**2 * c21 * torch.cos(a21) / s_**3 * one,
            2 * math.pi / 3 * lam**2 * c21 * torch.sin(a21) / s_**3 * one,
            math.pi / 2 * lam**3 * p["Cs"][:, None] / s_**4 * one,
        ],
        dim=-1,
    )  # (B, N, 6)
    chi = (coef.reshape(b * n, 6) @ basis).reshape(b, n, my, mx).to(f32)
    log_env = -((0.5 * math.pi * lam * p["focal_spread"] / s**2) ** 2)[:, None] * basis[5][None, :]
    env = torch.exp(log_env).reshape(b, 1, my, mx).to(f32)
    amplitude = spectra[:, None] * env  # ψ(k) E_t(k), times exp(-iχ) below
    psi_k = amplitude * torch.complex(torch.cos(chi), -torch.sin(chi))
    del chi, amplitude

    # Intensity on a grid that holds the wave's band and keeps the image's band alias-free. The
    # spectrum goes to the corner of the grid (frequency -n at index 0): by the shift theorem
    # this multiplies ψ by a phase ramp, which leaves |ψ|² unchanged.
    py, px = _work_size(ny, h), _work_size(nx, w)
    psi = torch.fft.ifft2(torch.nn.functional.pad(psi_k, (0, px - mx, 0, py - my)), norm="forward")
    del psi_k
    intensity = psi.real.square() + psi.imag.square()
    del psi
    spec = torch.fft.rfft2(intensity, norm="forward")  # (B, N, py, px // 2 + 1)
    del intensity

    # Crop to the image band (±Nyquist rows averaged; irfft2 does the same for the columns).
    fy = torch.as_tensor(np.fft.fftfreq(h, 1 / h).round().astype(np.int64), device=device)
    fx = torch.arange(w // 2 + 1, device=device)
    crop = spec[:, :, (fy % py)[:, None], fx[None, :]]
    if h % 2 == 0:
        crop[:, :, h // 2] = 0.5 * (spec[:, :, (-h // 2) % py, : w // 2 + 1] + spec[:, :, h // 2, : w // 2 + 1])
    del spec
    gy = (fy.to(torch.float64) / h)[:, None]
    gx = (fx.to(torch.float64) / w)[None, :]
    g2 = gy**2 + gx**2  # (cycles/px)²
    sigma_px = p["blur"] / s
    blur = torch.exp(-2 * math.pi**2 * sigma_px[:, None, None] ** 2 * g2).to(f32)  # (B, H, W//2+1)
    images = torch.fft.irfft2(crop * blur[:, None], s=(h, w), norm="forward")
    if not noise:
        return images.contiguous()

    scale = (p["dose"] * s**2).to(f32)[:, None, None, None]  # electrons per pixel at vacuum intensity
    counts = torch.poisson(images.clamp(min=0) * scale, generator=generator)
    images = counts / scale
    c1, c2, c3 = (p[k][:, None, None] for k in ("mtf_c1", "mtf_c2", "mtf_c3"))
    g = torch.sqrt(g2)[None]
    mtf = ((1 - c1) / (1 + (g / c2) ** c3) + c1).to(f32)  # imaging.mtf, q_N = 0.5 cycles/px: g / (2 c2 q_N)
    images = torch.fft.irfft2(torch.fft.rfft2(images) * mtf[:, None], s=(h, w))
    for name in ("gain_noise", "dark_noise"):  # camera fixed pattern: one map per series, all its images
        level = p.get(name)
        if level is None or not bool((level > 0).any()):
            continue
        pattern = level.to(f32)[:, None, None, None] * torch.randn(
            (b, 1, h, w), generator=generator, device=device, dtype=f32
        )
        images = images * (1 + pattern) if name == "gain_noise" else images + pattern
    readout = p["readout"].to(f32)[:, None, None, None]
    images = images + readout * torch.randn(images.shape, generator=generator, device=device, dtype=f32)
    return images


class WaveBank:
    """A bank of band-limited exit waves on one device, to synthesize focal series from.

    All waves must have the same energy and cells of the same aspect ratio as ``image_shape``;
    their cells (so their image samplings) may differ. Spectra are zero-padded to a common size.

    Parameters
    ----------
    waves : sequence of BandLimitedWave or ExitWave
        ExitWaves are band-limited first (:func:`band_limit` with ``cutoff``).
    image_shape : (int, int)
        ``(H, W)`` of the images to make; each wave's image sampling is its cell / image_shape.
    cutoff : float, optional
        Cut-off for ExitWaves (default of :func:`band_limit`).
    device : str or torch.device, optional
        Default: CUDA when available, else the CPU.

    Attributes
    ----------
    spectra : torch.Tensor
        ``(K, My, Mx)`` complex64.
    samplings : torch.Tensor
        ``(K,)`` float64 image sampling of each wave, Å/px.
    energy, cutoff : float
        Beam energy (eV) and the largest storage cut-off (Å⁻¹).

    Raises
    ------
    ValueError
        For an empty bank, mixed energies, or a cell whose shape does not fit ``image_shape``.
    """

    def __init__(
        self,
        waves: Sequence[BandLimitedWave | ExitWave],
        image_shape: tuple[int, int],
        *,
        cutoff: float | None = None,
        device=None,
    ):
        import torch

        if len(waves) == 0:
            raise ValueError("empty wave bank")
        waves = [band_limit(wv, cutoff) if isinstance(wv, ExitWave) else wv for wv in waves]
        energies = {wv.energy for wv in waves}
        if len(energies) != 1:
            raise ValueError(f"waves of different energies in one bank: {sorted(energies)} eV")
        h, w = image_shape
        samplings = []
        for i, wv in enumerate(waves):
            sy, sx = wv.extent[0] / h, wv.extent[1] / w
            if not np.isclose(sy, sx, rtol=1e-6):
                raise ValueError(
                    f"wave {i}: cell {wv.extent} Å does not fit images of {image_shape} px "
                    f"with square pixels ({sy:.5f} vs {sx:.5f} Å/px)"
                )
            samplings.append(sy)
        ny = max(wv.half_size[0] for wv in waves)
        nx = max(wv.half_size[1] for wv in waves)
        stack = np.zeros((len(waves), 2 * ny + 1, 2 * nx + 1), np.complex64)
        for i, wv in enumerate(waves):
            my, mx = wv.spectrum.shape
            oy, ox = ny - (my - 1) // 2, nx - (mx - 1) // 2
            stack[i, oy : oy + my, ox : ox + mx] = wv.spectrum
        self.device = torch.device(device) if device is not None else _default_device()
        self.spectra = torch.from_numpy(stack).to(self.device)
        self.samplings = torch.tensor(samplings, dtype=torch.float64, device=self.device)
        self.energy = float(energies.pop())
        self.cutoff = float(max(wv.cutoff for wv in waves))
        self.image_shape = (int(h), int(w))

    def __len__(self) -> int:
        return len(self.spectra)

    def synthesize(self, indices, params: Sequence[MicroscopeParameters] | dict, *, noise: bool = True, generator=None):
        """Focal series of the waves ``indices`` ``(B,)`` with ``params`` (:func:`synthesize`).

        Returns ``(B, N, H, W)`` float32 on the bank's device.
        """
        import torch

        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long, device=self.device)
        return synthesize(
            self.spectra[idx],
            self.samplings[idx],
            params,
            self.image_shape,
            energy=self.energy,
            cutoff=self.cutoff,
            noise=noise,
            generator=generator,
            device=self.device,
        )


def draw_batch(
    bank: WaveBank,
    rng: np.random.Generator,
    batch_size: int,
    *,
    n_images: int = 3,
    noise: bool = True,
    generator=None,
    draw: Callable[[np.random.Generator, int], MicroscopeParameters] = draw_microscope_parameters,
):
    """A training batch: random waves of a bank, each with freshly drawn microscope parameters.

    For a trainer to call every step. Waves are drawn uniformly with replacement; the
    microscope of each item is ``draw(rng, n_images)`` (thesis Table 1 by default) at the bank's
    beam energy (a wave is imaged at the energy it was simulated at: the drawn ``energy`` is
    replaced by ``bank.energy``). With
    ``generator=None`` the noise generator is seeded from ``rng``, so one seeded ``rng`` makes
    the whole batch reproducible (on the same device).

    Parameters
    ----------
    bank : WaveBank
    rng : numpy.random.Generator
    batch_size : int
    n_images : int
        Focal series length N.
    noise : bool
        False: noise-free images.
    generator : torch.Generator, optional
        Noise source on the bank's device.
    draw : callable
        ``draw(rng, n_images) -> MicroscopeParameters``.

    Returns
    -------
    images : torch.Tensor
        ``(B, N, H, W)`` float32 on the bank's device (raw intensities; normalize as the
        network expects, e.g. :func:`napari_hrtem.analysis.filters.preprocess`).
    indices : numpy.ndarray
        ``(B,)`` int64 index of each item's wave in the bank (to fetch its labels).
    params : list of MicroscopeParameters
        The microscope of each item (``energy`` = ``bank.energy``).
    """
    from dataclasses import replace

    import torch

    indices = rng.integers(len(bank), size=batch_size)
    params = [replace(draw(rng, n_images), energy=bank.energy) for _ in range(batch_size)]
    if noise and generator is None:
        generator = torch.Generator(device=bank.device)
        generator.manual_seed(int(rng.integers(2**63 - 1)))
    images = bank.synthesize(indices, params, noise=noise, generator=generator)
    return images, indices, params
