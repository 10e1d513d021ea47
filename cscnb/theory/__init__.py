r"""Theory of sparse coding checked by the chapters: coherence bounds, brute force, symbolic derivations.

* :mod:`~cscnb.theory.bounds` — spark, uniqueness and stability bounds (one layer and deep), the Welch
  bound and incoherent frames (chapter 9), generalized coherence and the LISTA-CP rate constant
  (chapter 10); also used by chapter 14;
* :mod:`~cscnb.theory.bruteforce` — exhaustive checks of those bounds on small dictionaries (spark,
  sparsest solutions, worst stable code; chapters 9 and 14);
* :mod:`~cscnb.theory.dilation` — effective atoms of stacked dilated dictionaries: kernel, support, coherence
  (chapter 8);
* :mod:`~cscnb.theory.stripe` — the stripe (:math:`\ell_{0,\infty}`) norm of convolutional codes, the local
  sparsity of convolutional sparse coding, and the exhaustive checks of its bounds on small convolutional
  dictionaries (chapters 6, 9 and 11);
* :mod:`~cscnb.theory.rates` — stripe and noisy convergence rates of LISTA-CP, the deep chain, and the
  convolutional generalized coherence (chapter 10);
* :mod:`~cscnb.theory.symbolic` — SymPy helpers for the derivations (negative log-posteriors, proximal
  maps by cases, KKT cases; chapters 1, 2, 6, 11 and 12). Not imported here: SymPy is slow to
  load, so ``cscnb.theory.symbolic`` (or ``cscnb.symbolic``) loads it on first use.
"""
from .bounds import (
    deep_stability_bounds,
    deep_uniqueness_holds,
    generalized_coherence,
    generalized_coherence_weights,
    incoherent_dictionary,
    lista_cp_rate_constant,
    mutual_coherence,
    spark_lower_bound,
    stability_bound,
    uniqueness_bound,
    welch_bound,
)
from .bruteforce import (
    BruteForceSolutions,
    WorstStableCode,
    exact_representations_bruteforce,
    restricted_min_eigenvalue_bruteforce,
    spark_bruteforce,
    sparsest_solutions_bruteforce,
    worst_stable_code_bruteforce,
)
from .dilation import circular_conv_coherence, dilation_support, effective_kernel
from .rates import (
    RateBlock,
    RateSchedule,
    conv_generalized_coherence,
    conv_generalized_coherence_weights,
    deep_rate_chain,
    noise_patch_norm,
    rate_schedule,
    window_counts,
)
from .stripe import (
    StripeGeometry,
    patch_norm,
    stripe_counts,
    stripe_geometry,
    stripe_norm,
    stripe_restricted_min_eigenvalue_bruteforce,
    stripe_spark_bruteforce,
    stripe_supports,
)

__all__ = ["mutual_coherence", "generalized_coherence", "generalized_coherence_weights", "lista_cp_rate_constant",
           "welch_bound", "incoherent_dictionary", "spark_lower_bound", "uniqueness_bound", "stability_bound",
           "deep_uniqueness_holds", "deep_stability_bounds",
           "BruteForceSolutions", "WorstStableCode", "restricted_min_eigenvalue_bruteforce", "spark_bruteforce",
           "sparsest_solutions_bruteforce", "worst_stable_code_bruteforce", "stripe_norm", "stripe_counts",
           "exact_representations_bruteforce", "patch_norm", "StripeGeometry", "stripe_geometry", "stripe_supports",
           "stripe_restricted_min_eigenvalue_bruteforce", "stripe_spark_bruteforce",
           "RateSchedule", "RateBlock", "rate_schedule", "deep_rate_chain", "conv_generalized_coherence",
           "conv_generalized_coherence_weights", "window_counts", "noise_patch_norm",
           "effective_kernel", "dilation_support", "circular_conv_coherence"]
