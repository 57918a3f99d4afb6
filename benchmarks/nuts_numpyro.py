"""The hare-lynx Lotka-Volterra posterior by NumPyro NUTS over a diffrax solve: the side-by-side baseline.

The same model as `recipes/lotka_volterra_nuts.yaml` (and `benchmarks/nuts_reference.py`), written in
JAX (nothing from nde_lab is imported: this runs in its own environment, `tox -e nuts-numpyro`):

    x = log z, z = (hare, lynx), t = years since 1900 (0..20),
    dx/dt = (alpha - beta e^x_lynx, -gamma + delta e^x_hare),  x(0) = log z_init,
    alpha, gamma ~ Normal(1, 0.5) truncated to (0, inf);  beta, delta ~ Normal(0.05, 0.05) truncated to (0, inf);
    z_init ~ LogNormal(log 10, 1) per species;  sigma ~ LogNormal(-1, 1) per species;
    y(t) ~ LogNormal(x(t), sigma) for all 21 years.

Solve: diffrax Tsit5 with a PID step-size controller (rtol 1e-7, atol 1e-8 by default), gradients by
diffrax's default discretise-then-optimise adjoint (RecursiveCheckpointAdjoint). NUTS: NumPyro's,
dense mass matrix, target acceptance 0.8, each chain started at the same prior-median-like point
(`init_to_median`), chains run `--chain-method` (sequential by default, measured faster here on
2 cores than "vectorized", which makes every chain take the tree depth of the deepest one).
float64 throughout.

Prints one JSON object: wall seconds (compile included, data loading excluded), min bulk ESS over
the 8 scalar parameters (ArviZ), ESS/s, max R-hat, divergences, per-parameter means/sds.

    OMP_NUM_THREADS=1 python benchmarks/nuts_numpyro.py --chains 4 --warmup 1000 --draws 1000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

__all__ = ["load_data", "main", "model"]

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "nde_lab" / "data" / "files" / "hudson_bay_lynx_hare.csv"
LABELS = ["alpha", "beta", "gamma", "delta", "z_init[hare]", "z_init[lynx]", "sigma[hare]", "sigma[lynx]"]


def load_data(path: Path = CSV) -> tuple[list[float], list[list[float]]]:
    """(times (T,) years since 1900, values (T, 2) hare and lynx pelts in thousands) from the lab's CSV."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    rows = list(csv.DictReader(lines))
    return [float(r["year"]) - 1900.0 for r in rows], [[float(r["hare"]), float(r["lynx"])] for r in rows]


def model(times, y=None, *, rtol: float = 1e-7, atol: float = 1e-8):
    import diffrax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    alpha = numpyro.sample("alpha", dist.TruncatedNormal(1.0, 0.5, low=0.0))
    beta = numpyro.sample("beta", dist.TruncatedNormal(0.05, 0.05, low=0.0))
    gamma = numpyro.sample("gamma", dist.TruncatedNormal(1.0, 0.5, low=0.0))
    delta = numpyro.sample("delta", dist.TruncatedNormal(0.05, 0.05, low=0.0))
    z_init = numpyro.sample("z_init", dist.LogNormal(jnp.log(10.0), 1.0).expand([2]).to_event(1))
    sigma = numpyro.sample("sigma", dist.LogNormal(-1.0, 1.0).expand([2]).to_event(1))

    def field(t, x, args):
        a, b, c, d = args
        u, v = jnp.exp(jnp.minimum(x, 30.0))  # far-out proposals: finite, hopeless
        return jnp.stack([a - b * v, -c + d * u])

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Tsit5(), t0=times[0], t1=times[-1], dt0=0.1, y0=jnp.log(z_init),
        args=(alpha, beta, gamma, delta), saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=100_000,
        throw=False,  # a failed solve (far-out proposal) gives inf/nan: rejected, not a crash
    )
    numpyro.sample("y", dist.LogNormal(sol.ys, sigma).to_event(2), obs=y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chain-method", choices=["sequential", "vectorized", "parallel"], default="sequential")
    parser.add_argument("--rtol", type=float, default=1e-7)
    parser.add_argument("--atol", type=float, default=1e-8)
    parser.add_argument("--target-accept", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.chain_method == "parallel":  # one CPU device per chain (set before jax is imported)
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.chains}"

    import jax

    jax.config.update("jax_enable_x64", True)
    import arviz as az
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer import MCMC, NUTS, init_to_median

    times, values = load_data()
    t, y = jnp.asarray(times), jnp.asarray(values)

    start = time.perf_counter()
    kernel = NUTS(lambda: model(t, y, rtol=args.rtol, atol=args.atol), dense_mass=True,
                  target_accept_prob=args.target_accept, init_strategy=init_to_median)
    mcmc = MCMC(kernel, num_warmup=args.warmup, num_samples=args.draws, num_chains=args.chains,
                chain_method=args.chain_method, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(args.seed), extra_fields=("diverging", "num_steps"))
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    wall = time.perf_counter() - start

    extra = mcmc.get_extra_fields(group_by_chain=True)
    cols = [np.asarray(samples[k]) for k in ("alpha", "beta", "gamma", "delta")]
    cols += [np.asarray(samples["z_init"])[..., i] for i in range(2)] + [np.asarray(samples["sigma"])[..., i] for i in range(2)]
    theta = np.stack(cols, axis=-1)  # (chain, draw, 8)
    ess = [float(az.ess(theta[..., i], method="bulk")) for i in range(8)]
    rhat = [float(az.rhat(theta[..., i])) for i in range(8)]
    record = {
        "sampler": f"numpyro {__import__('numpyro').__version__} NUTS (dense mass) + diffrax "
                   f"{__import__('diffrax').__version__} Tsit5 PID rtol={args.rtol:g} atol={args.atol:g}",
        "chains": args.chains, "warmup": args.warmup, "draws": args.draws, "chain_method": args.chain_method,
        "wall_seconds": round(wall, 2),
        "min_ess_bulk": round(min(ess), 1),
        "ess_per_second": round(min(ess) / wall, 3),
        "max_r_hat": round(max(rhat), 4),
        "divergences": int(np.asarray(extra["diverging"]).sum()),
        "leapfrog_steps_after_warmup": int(np.asarray(extra["num_steps"]).sum()),
        "parameters": {lab: {"mean": float(theta[..., i].mean()), "sd": float(theta[..., i].std(ddof=1)),
                             "ess_bulk": ess[i], "r_hat": rhat[i]} for i, lab in enumerate(LABELS)},
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
