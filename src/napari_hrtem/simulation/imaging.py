"""Image physics: abTEM exit waves and HRTEM focal series with a microscope and detector model.

The expensive step is the multislice exit wave (:func:`exit_wave`); the microscope
(:func:`focal_series`: CTF with partial coherence, blur, resampling, dose noise, MTF, readout
noise) is cheap, so one exit wave serves many focal series with fresh microscope parameters.

Conventions
-----------
* Arrays are ``(y, x)`` = napari ``(row, col)``; abTEM indexes ``(x, y)``, and this module
  transposes at the boundary.
* Defocus uses **abTEM's sign convention**: ``defocus = -C10`` in Å, so positive values are
  underfocus. Microscope software often uses the opposite sign (exit-wave paper [2]_, Fig. 9).
* The image grid covers the cell exactly: pixel ``(i, j)`` is centred at ``(i*s, j*s)`` Å.

Parameter ranges are those of the thesis ([1]_, Table 1), with the MTF shape parameters c2, c3
from the exit-wave paper ([2]_, Table 1). The multislice and the CTF are abTEM's [3]_.

References
----------
.. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
   two-dimensional materials", Bachelor project, DTU (2024).
.. [2] M. H. L. Larsen, F. Dahl, L. P. Hansen, B. Barton, C. Kisielowski, S. Helveg,
   O. Winther, T. W. Hansen, J. Schiøtz, "Reconstructing the exit wave of 2D materials in high-resolution
   transmission electron microscopy using machine learning", Ultramicroscopy 243,
   113641 (2023).
.. [3] J. Madsen, T. Susi, "The abTEM code: transmission electron microscopy from first
   principles", Open Research Europe 1, 24 (2021).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np

from napari_hrtem.simulation.parameters import (  # noqa: F401  (re-exported)
    PARAMETER_FILE,
    load_parameter_ranges,
    save_parameter_ranges,
)
from napari_hrtem.simulation.vibrations import AMU, HBAR, KB, debye_msd  # noqa: F401  (re-exported: imaging.debye_msd)


def _reproducible_fft():
    """abTEM configuration for bit-identical results across processes.

    abTEM's default FFTW planning (``FFTW_MEASURE``) times candidate algorithms in each new
    process and may pick a different one, which changes the last bits of every FFT, so the
    same seed gave slightly different exit waves and images from one run to the next.
    ``FFTW_ESTIMATE`` plans deterministically (and skips the planning time).
    """
    import abtem

    return abtem.config.set({"fftw.planning_effort": "FFTW_ESTIMATE"})


@dataclass
class ExitWave:
    """A multislice exit wave on the simulation grid.

    Attributes
    ----------
    array : numpy.ndarray
        ``(Hw, Ww)`` complex64 wave, ``(y, x)`` order, normalized so a plane wave has ``|ψ|² = 1``.
    sampling : float
        Grid spacing in Å (the same along y and x).
    energy : float
        Beam energy in eV.
    params : dict
        How it was made (temperature in K, frozen-phonon configurations, slice thickness in Å).
    """

    array: np.ndarray
    sampling: float
    energy: float
    params: dict


def exit_wave(
    sample,
    image_shape: tuple[int, int],
    image_sampling: float,
    *,
    energy: float = 50e3,
    max_wave_sampling: float = 0.05,
    slice_thickness: float = 0.5,
    phonon_configs: int = 4,
    temperature: float = 300.0,
    seed: int | None = None,
    vibrations=None,
    debye_temperature: float | Mapping[str, float] = 580.0,
) -> ExitWave:
    """Multislice exit wave of a sample (abTEM), thermally smeared by frozen phonons.

    The wave grid is an integer multiple ``m`` of the image grid, with ``m`` the smallest for
    which the wave sampling is at most ``max_wave_sampling``; the cell extent must equal
    ``image_shape * image_sampling`` so that the image grid covers it exactly.

    Thermal vibrations: ``phonon_configs`` frozen-phonon configurations (abTEM
    ``FrozenPhonons``) with Debye-model amplitudes (:func:`debye_msd`, θ_D = 580 K) at
    ``temperature``. Their exit waves are averaged coherently, i.e. the elastic (thermally
    smeared) wave is kept and the thermal diffuse background is neglected, a good approximation
    for single layers at 50 keV and one wave per sample for the cheap microscope step.

    Parameters
    ----------
    sample : napari_hrtem.simulation.structures.Sample
        The specimen; its extent ``(Ly, Lx)`` in Å.
    image_shape : (int, int)
        ``(H, W)`` of the images to be made from the wave.
    image_sampling : float
        Image sampling in Å/px.
    energy : float
        Beam energy in eV (thesis: 50 keV).
    max_wave_sampling : float
        Largest allowed wave sampling in Å.
    slice_thickness : float
        Multislice slice thickness in Å.
    phonon_configs : int
        Frozen-phonon configurations averaged (1 = static lattice, no vibrations).
    temperature : float
        Temperature in K for the vibration amplitudes.
    seed : int, optional
        Seed of the frozen-phonon displacements.
    vibrations : napari_hrtem.simulation.vibrations.CoordinationTable, optional
        Coordination-dependent amplitudes per atom (Larsen et al., "Superior neural network for
        distinguishing between atomic species", Microsc. Microanal. abstract) instead of the Debye
        model; scaled to ``temperature`` when the table knows its own.
    debye_temperature : float or mapping
        θ_D in K of the Debye model (thesis Table 1: 580 K), or ``{element or "default": K}``
        (:func:`napari_hrtem.simulation.vibrations.frozen_phonon_sigmas`).

    Returns
    -------
    ExitWave

    Raises
    ------
    ValueError
        If the sample's extent does not match ``image_shape * image_sampling``.
    """
    with _reproducible_fft():  # abTEM reads its FFT settings when it builds the graph
        wave, m = _lazy_exit_wave(
            sample,
            image_shape,
            image_sampling,
            energy,
            max_wave_sampling,
            slice_thickness,
            phonon_configs,
            temperature,
            seed,
            vibrations,
            debye_temperature,
        )
        array = wave.compute(progress_bar=False).array
    if array.ndim == 3:
        array = array.mean(axis=0)
    return _exit_wave_record(
        array,
        image_sampling / m,
        energy,
        temperature,
        phonon_configs,
        slice_thickness,
        seed,
        vibrations,
        debye_temperature,
    )


def iter_exit_wave(
    sample,
    image_shape: tuple[int, int],
    image_sampling: float,
    *,
    energy: float = 50e3,
    max_wave_sampling: float = 0.05,
    slice_thickness: float = 0.5,
    phonon_configs: int = 4,
    temperature: float = 300.0,
    seed: int | None = None,
    vibrations=None,
    debye_temperature: float | Mapping[str, float] = 580.0,
):
    """:func:`exit_wave` one frozen-phonon configuration at a time.

    A generator: yields ``(done, total)`` after each configuration's multislice (``total =
    phonon_configs``), so that a caller can report progress or stop between two
    configurations; returns the same :class:`ExitWave` as :func:`exit_wave` with the same
    arguments (the configurations are the same, only computed one after the other).

    Raises
    ------
    ValueError
        If the sample's extent does not match ``image_shape * image_sampling``.
    """
    with _reproducible_fft():
        wave, m = _lazy_exit_wave(
            sample,
            image_shape,
            image_sampling,
            energy,
            max_wave_sampling,
            slice_thickness,
            phonon_configs,
            temperature,
            seed,
            vibrations,
            debye_temperature,
        )
    lazy = wave.array
    if lazy.ndim == 2:
        with _reproducible_fft():
            array = np.asarray(lazy.compute())
        yield 1, 1
    else:
        total = 0
        for i in range(lazy.shape[0]):
            with _reproducible_fft():
                total = total + np.asarray(lazy[i].compute())
            yield i + 1, lazy.shape[0]
        array = total / lazy.shape[0]
    return _exit_wave_record(
        array,
        image_sampling / m,
        energy,
        temperature,
        phonon_configs,
        slice_thickness,
        seed,
        vibrations,
        debye_temperature,
    )


def _lazy_exit_wave(
    sample,
    image_shape,
    image_sampling,
    energy,
    max_wave_sampling,
    slice_thickness,
    phonon_configs,
    temperature,
    seed,
    vibrations,
    debye_temperature,
):
    """The lazy (dask) abTEM multislice of :func:`exit_wave` and the grid factor ``m``."""
    import abtem

    h, w = image_shape
    ly, lx = sample.extent
    if not (np.isclose(ly, h * image_sampling, atol=1e-6) and np.isclose(lx, w * image_sampling, atol=1e-6)):
        raise ValueError(
            f"sample extent {sample.extent} Å does not match image {image_shape} px at "
            f"{image_sampling} Å/px ({h * image_sampling:.4f}, {w * image_sampling:.4f}) Å"
        )
    m = int(np.ceil(image_sampling / max_wave_sampling - 1e-9))
    atoms = sample.atoms
    if phonon_configs > 1:
        from napari_hrtem.simulation.vibrations import frozen_phonon_sigmas

        sigmas = frozen_phonon_sigmas(atoms, temperature, table=vibrations, debye_temperature=debye_temperature)
        atoms = abtem.FrozenPhonons(atoms, num_configs=phonon_configs, sigmas=sigmas, seed=seed)
    potential = abtem.Potential(
        atoms,
        gpts=(w * m, h * m),
        slice_thickness=slice_thickness,
        parametrization="kirkland",
        projection="infinite",
    )
    return abtem.PlaneWave(energy=energy).multislice(potential), m


def _exit_wave_record(
    array, sampling, energy, temperature, phonon_configs, slice_thickness, seed, vibrations, debye_temperature
) -> ExitWave:
    """The :class:`ExitWave` of an abTEM ``(x, y)`` array (configurations already averaged)."""
    return ExitWave(
        array=np.ascontiguousarray(array.T).astype(np.complex64),
        sampling=sampling,
        energy=energy,
        params={
            "temperature": temperature,
            "phonon_configs": phonon_configs,
            "slice_thickness": slice_thickness,
            "seed": seed,
            "vibrations": "Debye" if vibrations is None else f"coordination table {vibrations.source}",
            "debye_temperature": debye_temperature,
        },
    )


@dataclass
class MicroscopeParameters:
    """Microscope and detector parameters of one focal series (units in the field names' docs).

    Attributes
    ----------
    defocus : float
        Defocus of the first image, Å (abTEM convention, positive = underfocus).
    defocus_steps : tuple of float
        Defocus increments between consecutive images, Å (thesis: 50 ± 1 Å).
    Cs : float
        Spherical aberration C30, Å (±15 µm = ±1.5e5 Å).
    C12 : float
        Two-fold astigmatism amplitude, Å.
    phi12 : float or None
        Two-fold astigmatism azimuth, rad. None (the default): not given; drawn uniformly in
        [0, 2π) from the seed by :func:`napari_hrtem.api.simulate` (see :meth:`with_azimuths`),
        taken as 0 where nothing draws it.
    C21 : float
        Axial coma amplitude, Å.
    phi21 : float or None
        Axial coma azimuth, rad; None as for ``phi12``.
    focal_spread : float
        Focal spread (1/e half-width of the defocus distribution), Å.
    blur : float
        Gaussian blur (standard deviation), Å: vibrations of the stage and image spread.
    dose : float
        Electron dose, e/Å².
    mtf_c1, mtf_c2, mtf_c3 : float
        Detector MTF ``(1 - c1) / (1 + (q / (2 c2 q_N))**c3) + c1`` (:func:`mtf`; the form of the
        exit-wave paper, Larsen et al. 2023).
    readout : float
        Standard deviation of the Gaussian readout noise, in units of the mean intensity.
    energy : float
        Beam energy, eV; must be the exit wave's (:func:`focal_series` checks).
    gain_noise : float
        Camera fixed-pattern gain error: relative standard deviation of a per-pixel gain map
        ``g = 1 + gain_noise · N(0, 1)``, one map per focal series (the same in all its images, as
        an imperfect gain reference). 0 (default): off.
    dark_noise : float
        Camera fixed offset pattern: standard deviation of a per-pixel offset added to every image
        of the series, units of the vacuum intensity. 0 (default): off.
    """

    defocus: float = -50.0
    defocus_steps: tuple[float, ...] = (50.0, 50.0)
    Cs: float = 0.0
    C12: float = 0.0
    phi12: float | None = None
    C21: float = 0.0
    phi21: float | None = None
    focal_spread: float = 7.5
    blur: float = 0.15
    dose: float = 1e4
    mtf_c1: float = 0.4
    mtf_c2: float = 0.15
    mtf_c3: float = 1.2
    readout: float = 0.01
    energy: float = 50e3
    gain_noise: float = 0.0
    dark_noise: float = 0.0

    @property
    def defoci(self) -> np.ndarray:
        """Defocus of every image of the series, Å (abTEM convention)."""
        return self.defocus + np.concatenate([[0.0], np.cumsum(self.defocus_steps)])

    def with_azimuths(self, rng: np.random.Generator) -> MicroscopeParameters:
        """These parameters with the azimuths not given (None) drawn uniformly in [0, 2π) rad.

        Two numbers are always drawn from ``rng``, ``phi12`` then ``phi21`` (the astigmatism and
        coma of thesis Table 1 have random angles [1]_), so that what is drawn next does not
        depend on which azimuths were given.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of the angles.

        Returns
        -------
        MicroscopeParameters
            A copy with float ``phi12`` and ``phi21``, rad.

        References
        ----------
        .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
           two-dimensional materials", Bachelor project, DTU (2024), Table 1.
        """
        phi12, phi21 = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))
        return replace(
            self,
            phi12=phi12 if self.phi12 is None else float(self.phi12),
            phi21=phi21 if self.phi21 is None else float(self.phi21),
        )

    def to_dict(self) -> dict:
        """Plain-JSON dict of the parameters."""
        d = asdict(self)
        d["defocus_steps"] = [float(x) for x in d["defocus_steps"]]
        return d

    def image_records(self) -> list[dict]:
        """One plain-JSON dict per image: all parameters plus the image's ``index`` and ``defocus_image`` (Å)."""
        d = self.to_dict()
        return [dict(d, index=i, defocus_image=float(f)) for i, f in enumerate(self.defoci)]


def _range(value) -> tuple[float, float]:
    if np.isscalar(value):
        return float(value), float(value)
    return float(value[0]), float(value[1])


def draw_microscope_parameters(
    rng: np.random.Generator, n_images: int = 3, ranges: dict | None = None
) -> MicroscopeParameters:
    """Draw microscope parameters from the thesis' Table 1 ranges [1]_.

    First defocus uniform in -150..50 Å, steps 50 ± 1 Å; Cs uniform ±15 µm; C12 0-25 Å and C21
    0-600 Å with uniform angles; focal spread 5-10 Å; blur 0.05-0.25 Å; dose log-uniform in
    10^2.5-10^5 e/Å²; MTF c1 0.2-0.6 (thesis), c2 0.1-0.2 and c3 0.6-1.8 (exit-wave paper [2]_);
    readout 0.005-0.015; beam energy ``microscope.energy`` (50 keV). The camera's fixed-pattern
    gain and offset (``gain_noise``, ``dark_noise``, not in the thesis) are drawn only when their
    range is not 0 (default 0: off), after everything else, so files without them draw as before.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n_images : int
        Images in the focal series (``n_images - 1`` defocus steps).
    ranges : dict, optional
        Parameter ranges (:func:`load_parameter_ranges`); ``None`` uses the packaged Table 1.
        Only the ``microscope`` section is used (its ``n_images`` and ``sampling`` are not:
        pass ``n_images``, draw the sampling with :func:`draw_sampling`).

    Returns
    -------
    MicroscopeParameters
        Lengths in Å, azimuths in rad, dose in e/Å², energy in eV.

    Raises
    ------
    ValueError
        If ``n_images < 1``.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), Table 1.
    .. [2] M. H. L. Larsen, F. Dahl, L. P. Hansen, B. Barton, C. Kisielowski, S. Helveg,
       O. Winther, T. W. Hansen, J. Schiøtz, "Reconstructing the exit wave of 2D materials in high-resolution
       transmission electron microscopy using machine learning", Ultramicroscopy 243,
       113641 (2023), Table 1.
    """
    if n_images < 1:
        raise ValueError(f"a focal series needs at least one image, got n_images={n_images}")
    m = (load_parameter_ranges() if ranges is None else ranges)["microscope"]

    def u(name, size=None):
        return rng.uniform(*_range(m[name]), size)

    def optional(name):  # drawn (after all the others) only when switched on: default draws unchanged
        low, high = _range(m.get(name, 0.0))
        return 0.0 if low == high == 0.0 else float(rng.uniform(low, high))

    params = MicroscopeParameters(
        defocus=u("defocus"),
        defocus_steps=tuple(u("defocus_step", n_images - 1)),
        Cs=u("Cs"),
        C12=u("C12"),
        phi12=rng.uniform(0, 2 * np.pi),
        C21=u("C21"),
        phi21=rng.uniform(0, 2 * np.pi),
        focal_spread=u("focal_spread"),
        blur=u("blur"),
        dose=10 ** u("log10_dose"),
        mtf_c1=u("mtf_c1"),
        mtf_c2=u("mtf_c2"),
        mtf_c3=u("mtf_c3"),
        readout=u("readout"),
        energy=float(m["energy"]),
    )
    params.gain_noise = optional("gain_noise")
    params.dark_noise = optional("dark_noise")
    return params


def draw_sampling(rng: np.random.Generator, ranges: dict | None = None) -> float:
    """Draw the image sampling in Å/px (thesis Table 1: uniform in 0.215-0.235 Å/px)."""
    m = (load_parameter_ranges() if ranges is None else ranges)["microscope"]
    return float(rng.uniform(*_range(m["sampling"])))


def exit_wave_settings(ranges: dict | None = None) -> dict:
    """Keyword arguments of :func:`exit_wave` from the parameter file (thesis Table 1).

    Returns ``energy`` (eV), ``max_wave_sampling`` (Å, thesis 0.1 Å), ``slice_thickness``
    (Å, thesis 0.25 Å), ``phonon_configs`` (thesis 10) and ``debye_temperature`` (K: the thesis'
    580 K, or ``{element: K}`` where the file gives ``vibrations.debye_temperatures``,
    :func:`napari_hrtem.simulation.vibrations.debye_temperature_setting`).
    The temperature is drawn per sample with :func:`napari_hrtem.simulation.vibrations.draw_temperature`.
    """
    from napari_hrtem.simulation.vibrations import debye_temperature_setting

    r = load_parameter_ranges() if ranges is None else ranges
    return {
        "energy": float(r["microscope"]["energy"]),
        "max_wave_sampling": float(r["simulation"]["wave_sampling"]),
        "slice_thickness": float(r["simulation"]["slice_thickness"]),
        "phonon_configs": int(r["simulation"]["phonon_configs"]),
        "debye_temperature": debye_temperature_setting(r),
    }


def mtf(shape: tuple[int, int], c1: float, c2: float, c3: float) -> np.ndarray:
    """Detector modulation transfer function on an FFT grid.

    ``MTF(q) = (1 - c1) / (1 + (q / (2 c2 q_N))**c3) + c1`` with ``q`` the spatial frequency and
    ``q_N`` the detector's Nyquist frequency (0.5 cycles/px): the three-parameter form of the
    exit-wave paper [1]_ (its Table 1 ranges c2, c3; the form of Madsen et al. [2]_). Limits:
    ``MTF(0) = 1``; ``MTF(q_N) = (1 - c1) / (1 + (2 c2)**-c3) + c1``; ``MTF → c1`` for ``q → ∞``
    (for ``c3 > 0``), so ``c1`` is the high-frequency floor, ``2 c2 q_N`` the frequency where the
    MTF is half-way between 1 and ``c1``, and ``c3`` the steepness.

    The thesis [3]_ prints the two-parameter special case ``c3 = 2`` with one constant as both
    floor and width (its eq. 2.1.22) and gives only the floor's range (its Table 1, "MTF C1",
    0.2-0.6); the packaged parameter file uses that range for ``c1`` in this form, with c2, c3
    from the exit-wave paper.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of the image.
    c1, c2, c3 : float
        MTF parameters (floor, half-way frequency / (2 q_N), exponent).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64, in ``numpy.fft`` frequency order.

    References
    ----------
    .. [1] M. H. L. Larsen, F. Dahl, L. P. Hansen, B. Barton, C. Kisielowski, S. Helveg,
       O. Winther, T. W. Hansen, J. Schiøtz, "Reconstructing the exit wave of 2D materials in high-resolution
       transmission electron microscopy using machine learning", Ultramicroscopy 243,
       113641 (2023), section 2 and Table 1.
    .. [2] J. Madsen, P. Liu, J. Kling, J. B. Wagner, T. W. Hansen, O. Winther, J. Schiøtz, "A deep
       learning approach to identify local structures in atomic-resolution transmission electron
       microscopy images", Adv. Theory Simul. 1, 1800037 (2018).
    .. [3] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), eq. 2.1.22 and Table 1.
    """
    qy = np.fft.fftfreq(shape[0])[:, None]  # cycles/px; q_N = 0.5
    qx = np.fft.fftfreq(shape[1])[None, :]
    q = np.sqrt(qy**2 + qx**2)
    return (1 - c1) / (1 + (q / (2 * c2 * 0.5)) ** c3) + c1


def focal_series(
    wave: ExitWave,
    params: MicroscopeParameters,
    image_shape: tuple[int, int],
    *,
    rng: np.random.Generator | None = None,
    noise: bool = True,
) -> np.ndarray:
    """Images of a focal series from an exit wave (abTEM CTF) with detector effects.

    Steps per image: abTEM ``CTF`` (defocus, Cs, C12, C21, focal spread as the temporal
    partial-coherence envelope; wavelength of the wave's energy) applied to the exit wave,
    intensity, Gaussian blur (abTEM), Fourier resampling to the image grid, Poisson noise for the
    dose per pixel, detector MTF (:func:`mtf`, so that the noise is correlated, as in the exit-wave
    paper [2]_), the camera's fixed pattern (``gain_noise``, ``dark_noise``: one gain and one offset
    map per series, the same in all its images; off by default), Gaussian readout noise.
    Intensities are in units of the incident beam (vacuum ≈ 1).

    Parameters
    ----------
    wave : ExitWave
        Exit wave whose grid is an integer multiple of ``image_shape``.
    params : MicroscopeParameters
        The microscope; ``params.defoci`` gives the images' defocus values (Å, abTEM sign).
    image_shape : (int, int)
        ``(H, W)`` of the output images.
    rng : numpy.random.Generator, optional
        Source of the noise (default: a fresh unseeded generator).
    noise : bool
        False gives the noise-free images (dose, MTF and readout skipped).

    Returns
    -------
    numpy.ndarray
        ``(N, H, W)`` float32, ordered by increasing defocus.

    Raises
    ------
    ValueError
        If the wave's grid is not an integer multiple of ``image_shape``, or ``params.energy``
        is not the wave's energy (a wave is made at one beam energy; image it at that one).

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), section 3.2.
    .. [2] M. H. L. Larsen, F. Dahl, L. P. Hansen, B. Barton, C. Kisielowski, S. Helveg,
       O. Winther, T. W. Hansen, J. Schiøtz, "Reconstructing the exit wave of 2D materials in high-resolution
       transmission electron microscopy using machine learning", Ultramicroscopy 243,
       113641 (2023).
    .. [3] J. Madsen, T. Susi, "The abTEM code: transmission electron microscopy from first
       principles", Open Research Europe 1, 24 (2021).
    """
    import abtem

    rng = np.random.default_rng() if rng is None else rng
    h, w = image_shape
    hw, ww = wave.array.shape
    if hw % h or ww % w:
        raise ValueError(f"wave grid {wave.array.shape} is not a multiple of image {image_shape}")
    if not np.isclose(float(params.energy), float(wave.energy), rtol=1e-9):
        raise ValueError(
            f"microscope energy {params.energy / 1e3:g} kV differs from the exit wave's {wave.energy / 1e3:g} kV: "
            "a wave is imaged at the energy it was simulated at"
        )
    waves = abtem.Waves(wave.array.T, energy=wave.energy, sampling=wave.sampling)
    image_sampling = wave.sampling * hw / h
    pixel_area = image_sampling**2
    mtf_filter = mtf(image_shape, params.mtf_c1, params.mtf_c2, params.mtf_c3)
    gain, dark = fixed_pattern(image_shape, params, rng) if noise else (None, None)
    images = []
    for defocus in params.defoci:
        ctf = abtem.CTF(
            energy=wave.energy,
            focal_spread=params.focal_spread,
            aberration_coefficients=dict(
                C10=-defocus,
                C30=params.Cs,
                C12=params.C12,
                phi12=params.phi12 or 0.0,  # None: not given
                C21=params.C21,
                phi21=params.phi21 or 0.0,
            ),
        )
        with _reproducible_fft():  # abTEM reads its FFT settings when it builds the graph
            intensity = waves.apply_ctf(ctf).intensity()
            if params.blur > 0:
                intensity = intensity.gaussian_filter(params.blur)
            image = np.asarray(intensity.compute(progress_bar=False).array).T
        image = _fourier_resample(image, image_shape)
        if noise:
            counts = rng.poisson(np.clip(image, 0, None) * params.dose * pixel_area)
            image = counts / (params.dose * pixel_area)
            image = np.fft.ifft2(np.fft.fft2(image) * mtf_filter).real
            if gain is not None:
                image = image * gain
            if dark is not None:
                image = image + dark
            image = image + rng.normal(0, params.readout, image.shape)
        images.append(image.astype(np.float32))
    return np.stack(images)


def fixed_pattern(
    image_shape: tuple[int, int], params: MicroscopeParameters, rng: np.random.Generator
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The camera's fixed-pattern gain and offset maps of one focal series.

    A real detector's gain reference is imperfect: each pixel multiplies the signal by its own
    gain, and adds its own dark offset, the same in every frame recorded with that reference. The
    maps are Gaussian white noise: ``gain = 1 + gain_noise · N(0, 1)``, ``dark = dark_noise · N(0, 1)``.
    Nothing is drawn from ``rng`` for a level of 0, so switching them off draws as before.

    Parameters
    ----------
    image_shape : (int, int)
        ``(H, W)``.
    params : MicroscopeParameters
        ``gain_noise`` (relative) and ``dark_noise`` (vacuum-intensity units).
    rng : numpy.random.Generator
        Source of the maps (gain first, then offset).

    Returns
    -------
    gain, dark : numpy.ndarray or None
        ``(H, W)`` float64 maps, None where the level is 0.

    Raises
    ------
    ValueError
        If a level is negative or not finite.
    """
    out = []
    for name in ("gain_noise", "dark_noise"):
        level = float(getattr(params, name, 0.0) or 0.0)
        if not (np.isfinite(level) and level >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {level}")
        if level == 0:
            out.append(None)
        else:
            noise = level * rng.standard_normal(tuple(image_shape))
            out.append(1.0 + noise if name == "gain_noise" else noise)
    return out[0], out[1]


def _fourier_resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Band-limit and resample a periodic image to ``shape`` by cropping its spectrum.

    Keeps grid point (0, 0) at position (0, 0); an integer downsampling factor is assumed.
    """
    if image.shape == tuple(shape):
        return image
    f = np.fft.fftshift(np.fft.fft2(image))
    cy, cx = image.shape[0] // 2, image.shape[1] // 2
    h, w = shape
    f = f[cy - h // 2 : cy - h // 2 + h, cx - w // 2 : cx - w // 2 + w]
    out = np.fft.ifft2(np.fft.ifftshift(f)).real
    return out * (h * w) / (image.shape[0] * image.shape[1])


def simulate_focal_series(
    sample,
    image_shape: tuple[int, int],
    image_sampling: float,
    params: MicroscopeParameters | None = None,
    *,
    seed: int | None = None,
    phonon_configs: int = 4,
    temperature: float = 300.0,
    n_images: int = 3,
    ranges: dict | None = None,
    vibrations=None,
) -> tuple[np.ndarray, MicroscopeParameters]:
    """Exit wave then focal series in one call (see :func:`exit_wave`, :func:`focal_series`).

    Returns
    -------
    images : numpy.ndarray
        ``(N, H, W)`` float32.
    params : MicroscopeParameters
        The parameters used (drawn from Table 1, or ``ranges``, with ``seed`` and
        ``n_images`` when not given).
    """
    rng = np.random.default_rng(seed)
    params = draw_microscope_parameters(rng, n_images, ranges) if params is None else params
    wave = exit_wave(
        sample,
        image_shape,
        image_sampling,
        energy=params.energy,
        phonon_configs=phonon_configs,
        temperature=temperature,
        seed=int(rng.integers(2**31)),
        vibrations=vibrations,
    )
    return focal_series(wave, params, image_shape, rng=rng), params
