"""The fast posterior's importance stage: PSIS from a Student-t proposal, its checks, and the fallback.

Round 0 proposes from the Student-t fitted to the variational guide. A round passes when its Pareto k
is below the sample-size-aware threshold and (optionally) every parameter's 1% tails pass
`diagnostics.tail_check`. When a round fails and adaptation rounds are left, the fallback refits a
heavier-tailed Student-t (df 3 by default) to that round's PSIS-weighted draws (one step of population
Monte Carlo, Cappe et al. 2004) and proposes afresh; the checks are applied again to the fresh draws
only, so a passing round is judged on its own weights. When every round fails, the caller refuses.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from nde_lab.prob.diagnostics import tail_check
from nde_lab.prob.fast import StudentTProposal
from nde_lab.prob.inference import ImportanceResult, importance_resample
from nde_lab.prob.programs import ProbProgram

__all__ = ["AdaptiveImportance", "adaptive_importance", "round_problems"]


@dataclass
class AdaptiveImportance:
    """The last round's importance result, what each round found, and the proposal it used.

    Attributes:
        result: the last round's `ImportanceResult` (draws (chain, draw, ...), k, ESS).
        problems: why the last round fails (empty when it passes).
        proposal: words for the last round's proposal (stored in the posterior attrs).
        history: one line per round ("round 0 (...): Pareto k 0.90, ...; failed: ...").
    """

    result: ImportanceResult
    problems: list[str]
    proposal: str
    history: list[str] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        return len(self.history)

    @property
    def fallback(self) -> str:
        """'none', or which fallback produced the posterior and why round 0 failed."""
        if self.rounds == 1:
            return "none"
        return f"adaptive importance sampling after round 0 failed ({self.history[0].split('failed: ', 1)[-1]})"


def round_problems(program: ProbProgram, res: ImportanceResult, *, k_threshold: float, check_tails: bool) -> list[str]:
    """Why an importance round is unreliable: Pareto k at or above `k_threshold`, and (with `check_tails`)
    each parameter tail whose target mass the proposal under-covers, named like `K upper tail: ...`."""
    problems = []
    if not res.pareto_k < k_threshold:
        problems.append(f"Pareto k = {res.pareto_k:.2f} >= {k_threshold:.2f} (min(1 - 1/log10(S), 0.7) for "
                        f"S = {res.n_proposals})")
    if check_tails and res.proposals is not None:
        names = program.parameter_names
        columns = [res.proposals[k].reshape(res.n_proposals, -1).double().numpy() for k in names]
        labels = [f"{k}[{i}]" if c.shape[1] > 1 else k for k, c in zip(names, columns, strict=True)
                  for i in range(c.shape[1])]
        finite = np.isfinite(res.log_weights)
        for line in tail_check(np.concatenate(columns, axis=1)[finite], res.log_weights[finite]):
            j = int(line.split()[1])
            problems.append("tail check: " + line.replace(f"column {j} ", f"{labels[j]} ", 1))
    return problems


def adaptive_importance(program: ProbProgram, proposal: StudentTProposal, *, description: str, num_chains: int,
                        per_chain: int, seed: int, k_threshold: float, check_tails: bool, adapt_rounds: int,
                        fallback_df: float) -> AdaptiveImportance:
    """PSIS-resample from `proposal`; on failure refit up to `adapt_rounds` times (see the module docstring).

    Each round draws num_chains * per_chain proposals with seed + round and prints one line to stderr.
    """
    history: list[str] = []
    for rnd in range(adapt_rounds + 1):
        res = importance_resample(program, proposal, num_chains=num_chains, num_draws=per_chain, seed=seed + rnd)
        problems = round_problems(program, res, k_threshold=k_threshold, check_tails=check_tails)
        verdict = "passed" if not problems else "failed: " + "; ".join(problems)
        history.append(f"round {rnd} ({description}): Pareto k {res.pareto_k:.3f}, importance ESS "
                       f"{res.ess_is:.0f} of {res.n_proposals}; {verdict}")
        print(f"nde-lab: importance correction{f' (fallback round {rnd})' if rnd else ''}: Pareto k = "
              f"{res.pareto_k:.3f}, importance ESS = {res.ess_is:.0f} of {res.n_proposals} proposals"
              f"{'' if not problems else '; ' + '; '.join(problems)}", file=sys.stderr)
        if not problems or rnd == adapt_rounds:
            break
        proposal = StudentTProposal.from_weighted(program, res.proposals, res.log_weights, df=fallback_df)
        description = (f"multivariate Student-t (df={fallback_df:g}) refitted to the PSIS-weighted draws of "
                       f"round {rnd} (adaptive importance sampling)")
    return AdaptiveImportance(result=res, problems=problems, proposal=description, history=history)
