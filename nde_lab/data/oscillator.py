"""Bundled synthetic series: a noisy damped oscillator's position (30 times; benchmarks/oscillator_data.py)."""

from __future__ import annotations

from importlib import resources

from nde_lab.data.series import Series, _read_csv_text

__all__ = ["OSCILLATOR_NOISE_SD", "OSCILLATOR_TRUE", "load_damped_oscillator"]

#: the data-generating values (x0, v0 at t0 = 0; omega in rad per unit time), as in the file's source note
OSCILLATOR_TRUE = {"omega": 1.5, "zeta": 0.1, "x0": 1.0, "v0": 0.5}
#: sd of the Normal noise added to x
OSCILLATOR_NOISE_SD = 0.1
_FILE = "damped_oscillator.csv"


def load_damped_oscillator() -> Series:
    """The position x of x'' + 2 zeta omega x' + omega^2 x = 0 with Normal noise, synthetic (see the note).

    Times (30,) are t = 0.4, 0.8, ..., 12.0 in arbitrary units (the model starts at t0 = 0); values (30, 1)
    the column `x`. Made once by `benchmarks/oscillator_data.py` from `OSCILLATOR_TRUE` with noise sd
    `OSCILLATOR_NOISE_SD`; the source note is in the file (and in `attrs["source_note"]`).
    """
    text = resources.files("nde_lab.data").joinpath(f"files/{_FILE}").read_text()
    note = " ".join(line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#"))
    raw = _read_csv_text(text, where=_FILE, time_column="t", state_columns=["x"])
    return Series(
        times=raw.times,
        values=raw.values,
        state_names=["x"],
        time_units="1",
        source=f"nde_lab/data/files/{_FILE}",
        attrs={"units": "arbitrary length units (synthetic)", "source_note": note},
    )
