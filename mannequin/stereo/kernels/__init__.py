"""Numba kernels of the plane sweep (pure: arrays in, arrays out, no I/O), called by
:func:`mannequin.stereo.sweep.plane_sweep`:

* :mod:`~mannequin.stereo.kernels.stats`: window statistics computed once per image, before the sweep;
* :mod:`~mannequin.stereo.kernels.fronto`: the sweep (its inputs and buffers as named tuples);
* :mod:`~mannequin.stereo.kernels.finalize`: depth and confidence from the sweep's winners, the
  left-right check, the edge-aware smoothing.

Each module holds its compiled entry points with every helper they call: Numba's on-disk cache
(``cache=True``) is keyed on a function's own file, so editing a helper in another file would leave
its callers' cache stale.  The one thing shared across files is ``fronto.BIG`` / ``VALID_LIMIT``
(read by ``finalize``): after changing them, delete ``mannequin/stereo/kernels/__pycache__``.
"""
