"""Generate the bundled damped-oscillator series (nde_lab/data/files/damped_oscillator.csv), once.

No real data set is bundled for the oscillator: the series is synthetic, made by this script with a fixed
seed. The model is the unforced linear oscillator x'' + 2 zeta omega x' + omega^2 x = 0 (the lab's
`nde_lab.dynamics.DampedOscillator`), underdamped, with its closed-form solution

    x(t) = exp(-zeta omega t) (x0 cos(wd t) + (v0 + zeta omega x0) / wd sin(wd t)),  wd = omega sqrt(1 - zeta^2),

observed at t = 0.4, 0.8, ..., 12.0 (30 times, ~2.8 damped periods of 4.21) with independent Normal noise:

    omega 1.5 rad per unit time, zeta 0.1, x0 1.0, v0 0.5 (at t0 = 0), noise sd 0.1, seed 12
    (TRUE and NOISE_SD live in nde_lab.data.oscillator, the loader's home).

Run from the repository root (writes the CSV; the values are rounded to 4 decimals):

    python -m benchmarks.oscillator_data
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nde_lab.data.oscillator import OSCILLATOR_NOISE_SD as NOISE_SD
from nde_lab.data.oscillator import OSCILLATOR_TRUE as TRUE

__all__ = ["NOISE_SD", "SEED", "TIMES", "TRUE", "closed_form_x", "main"]

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "nde_lab" / "data" / "files" / "damped_oscillator.csv"
SEED = 12
#: observation times (30, from 0.4 to 12.0)
TIMES = np.round(0.4 * np.arange(1, 31), 10)


def closed_form_x(t: np.ndarray, omega: float, zeta: float, x0: float, v0: float) -> np.ndarray:
    """Position x(t) (same shape as t) of the unforced underdamped oscillator (0 < zeta < 1) from (x0, v0) at t = 0."""
    wd = omega * math.sqrt(1.0 - zeta * zeta)
    return np.exp(-zeta * omega * t) * (x0 * np.cos(wd * t) + (v0 + zeta * omega * x0) / wd * np.sin(wd * t))


def _header() -> str:
    true = ", ".join(f"{k} = {v:g}" for k, v in TRUE.items())
    return (
        "# Damped oscillator x'' + 2 zeta omega x' + omega^2 x = 0: SYNTHETIC data (no measurement), position x only.\n"
        f"# Made by benchmarks/oscillator_data.py (numpy default_rng seed {SEED}): the closed-form x(t) at the true values\n"
        f"#   {true} (x0, v0 at t0 = 0), plus independent Normal(0, {NOISE_SD:g}) noise;\n"
        "#   t = 0.4, 0.8, ..., 12.0 (30 times, about 2.8 damped periods); values rounded to 4 decimals.\n"
        "# t in arbitrary time units (omega in rad per unit), x in arbitrary length units.\n"
    )


def main() -> None:
    rng = np.random.default_rng(SEED)
    x = closed_form_x(TIMES, **TRUE) + rng.normal(0.0, NOISE_SD, TIMES.size)
    lines = ["t,x", *(f"{t:.1f},{v:.4f}" for t, v in zip(TIMES, x, strict=True))]
    OUT.write_text(_header() + "\n".join(lines) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({TIMES.size} rows)")


if __name__ == "__main__":
    main()
