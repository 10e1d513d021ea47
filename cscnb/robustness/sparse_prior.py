r"""Does keeping the sparse prior buy robustness? Chapter 5's two experiments on the digits.

**Codes of a fixed dictionary** (:func:`code_problem`, :func:`code_sets`, :func:`classify_codes`): a
dictionary of normalized training digits (pixel values in :math:`[0, 1]`), codes of every image by
one ISTA step (the layer :math:`\shrink_\lambda(D^\top x)/L`), :math:`K` ISTA steps, or the MAP code
of :math:`\tfrac12\|x - Dz\|^2 + \lambda\|z\|_1` certified by its KKT residual; a logistic regression
on the standardized clean training codes; accuracies on validation and test images with Gaussian
noise. :func:`code_sweep` runs a grid of :math:`(\lambda, C)` for one seed, so that both can be
chosen on the validation split (chapter 5, section "Does keeping the prior make codes more
robust?").

**Trained networks** (:data:`TRAINING_VARIANTS`, :func:`train_variant`): the chapter-4 network with
its sign of the bias kept or not (:func:`cscnb.models.hierarchical.clamp_biases_nonpositive_`), and
with :math:`K` unrolled sparse-coding steps per layer whose step stays admissible or not
(:meth:`cscnb.models.HierarchicalSparseCodingNet.project_step_admissible_`), trained with
:func:`cscnb.train.fit` (early stopping on a validation split) and tested under input noise.

``scripts/ch05_sparse_prior.py`` runs both over seeds and writes ``chapters/data/ch05_*.json``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.dictionary import LinearDictionary
from ..core.validation import check_choice, nonneg_int, positive_int, positive_number
from ..data.digits import load_digits
from ..solvers.lasso import kkt_residual, solve

__all__ = ["CODE_METHODS", "KKT_TOL", "CodeProblem", "code_problem", "certified_codes", "digit_codes", "code_sets",
           "classify_codes", "code_errors", "code_sweep", "TRAINING_VARIANTS", "build_variant", "train_variant"]

CODE_METHODS = ("1 step", "K ISTA steps", "converged", "1 step, density-matched")
KKT_TOL = 1e-8


@dataclass
class CodeProblem:
    """One seed's digits problem: split (pixels in [0, 1], flattened), dictionary, fixed noise draws."""
    seed: int
    dictionary: LinearDictionary      # (64, n_atoms), unit-norm training images
    atom_labels: torch.Tensor         # (n_atoms,) the label of the training image behind each atom
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    noise_val: torch.Tensor           # standard normal, shaped like x_val (scaled by σ when used)
    noise_test: torch.Tensor


def code_problem(seed: int, *, n_atoms: int = 128, val_fraction: float = 0.25) -> CodeProblem:
    """The split of :func:`cscnb.load_digits` (seed ``seed``) with pixels back in [0, 1], ``n_atoms``
    normalized training images as atoms (drawn with seed ``seed + 100``) and standard normal noise
    draws for the validation (``seed + 200``) and test (``seed + 300``) images; float64."""
    seed, n_atoms = nonneg_int(seed, "seed"), positive_int(n_atoms, "n_atoms")
    split = load_digits(seed=seed, val_fraction=val_fraction, dtype=torch.float64)

    def unit_range(x):  # undo the loader's standardization: pixel values 0..16 → [0, 1]
        return ((x * split.std + split.mean) / 16.0).flatten(1)

    x_train, x_val, x_test = unit_range(split.x_train), unit_range(split.x_val), unit_range(split.x_test)
    if n_atoms > x_train.shape[0]:
        raise ValueError(f"n_atoms must be at most the number of training images ({x_train.shape[0]}), got {n_atoms}")
    picked = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(seed + 100))[:n_atoms]
    atoms = x_train[picked].T
    return CodeProblem(
        seed=seed, dictionary=LinearDictionary(atoms / atoms.norm(dim=0)), atom_labels=split.y_train[picked],
        x_train=x_train, y_train=split.y_train, x_val=x_val, y_val=split.y_val, x_test=x_test, y_test=split.y_test,
        noise_val=torch.randn(x_val.shape, generator=torch.Generator().manual_seed(seed + 200), dtype=torch.float64),
        noise_test=torch.randn(x_test.shape, generator=torch.Generator().manual_seed(seed + 300), dtype=torch.float64))


def certified_codes(dictionary, x, lam, *, kkt_tol: float = KKT_TOL):
    r"""MAP codes :math:`\argmin_z \tfrac12\|x - Dz\|^2 + \lambda\|z\|_1` and their largest KKT residual.

    Restarted FISTA with the exact support polish (``cscnb.solve(..., method="fista_restart",
    polish=True)``), then :func:`cscnb.kkt_residual` as the certificate: raises ``RuntimeError`` if
    any sample violates the optimality conditions (chapter 2, ``eq-kkt``) by more than ``kkt_tol``.
    """
    kkt_tol = positive_number(kkt_tol, "kkt_tol")
    z = solve(dictionary, x, lam, method="fista_restart", polish=True, tol=1e-10, n_iter=20000).z
    residual = float(kkt_residual(dictionary, x, z, lam).max())
    if not residual <= kkt_tol:
        raise RuntimeError(f"the codes are not certified: KKT residual {residual:.3g} > kkt_tol={kkt_tol:.3g}")
    return z, residual


def digit_codes(dictionary, x, method: str, lam, *, n_steps: int = 10):
    """Codes of ``x`` by ``method`` (one of the first three :data:`CODE_METHODS`): ``(codes, KKT residual or None)``.

    ``"1 step"`` is ``solve(..., method="ista", n_iter=1)`` :math:`= \\shrink_\\lambda(D^\\top x)/L`
    (chapter 5, ``thm-ch5-one-step``); ``"K ISTA steps"`` runs exactly ``n_steps`` ISTA steps from 0;
    ``"converged"`` is :func:`certified_codes`.
    """
    check_choice(method, "method", CODE_METHODS[:3])
    if method == "1 step":
        return solve(dictionary, x, lam, method="ista", n_iter=1).z, None
    if method == "K ISTA steps":
        return solve(dictionary, x, lam, method="ista", n_iter=positive_int(n_steps, "n_steps"), tol=1e-300).z, None
    return certified_codes(dictionary, x, lam)


def code_sets(problem: CodeProblem, method: str, lam: float, sigmas, *, n_steps: int = 10,
              density: float | None = None) -> dict:
    """Codes of the training, validation and test images, clean and with noise :math:`\\sigma` (each of ``sigmas``).

    ``method="1 step, density-matched"`` thresholds one step at the :math:`\\lambda'` whose training
    codes have the mean density ``density`` (the fraction of non-zero coefficients): :math:`\\lambda'` is
    the ``1 - density`` quantile of :math:`|D^\\top x|` over the training images. Returns a dict with
    ``train``, ``val`` and ``test`` (lists over ``sigmas``), ``lam_used``, ``density`` (training codes)
    and ``kkt_max`` (the largest KKT residual of certified codes, else None).
    """
    check_choice(method, "method", CODE_METHODS)
    D = problem.dictionary
    lam_used = float(lam)
    if method == "1 step, density-matched":
        if density is None or not 0 < density <= 1:
            raise ValueError(f"density must be in (0, 1] for the density-matched method, got {density!r}")
        lam_used = float(D.analyze(problem.x_train).abs().flatten().quantile(1 - density))
        method = "1 step"
    kkt = []

    def codes(x):
        z, residual = digit_codes(D, x, method, lam_used, n_steps=n_steps)
        kkt.append(residual)
        return z

    train = codes(problem.x_train)
    out = {"train": train, "lam_used": lam_used, "density": float((train != 0).double().mean()),
           "val": [codes(problem.x_val + s * problem.noise_val) for s in sigmas],
           "test": [codes(problem.x_test + s * problem.noise_test) for s in sigmas]}
    out["kkt_max"] = None if kkt[0] is None else max(kkt)
    return out


def classify_codes(problem: CodeProblem, sets: dict, C: float) -> dict:
    r"""Logistic regression (inverse regularization ``C``) on the standardized clean training codes.

    Returns validation and test accuracies for every noise level of ``sets`` (:func:`code_sets`). The
    standardization (per-coefficient mean and scale) is fitted on the clean training codes only. Runs with
    one BLAS thread, so that a re-run reproduces the same coefficients bit for bit.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits
    C = positive_number(C, "C")
    with threadpool_limits(limits=1):    # one BLAS thread: the same solution on every run (chapter 5 re-runs rows)
        scaler = StandardScaler().fit(sets["train"].numpy())
        model = LogisticRegression(C=C, max_iter=5000).fit(scaler.transform(sets["train"].numpy()),
                                                           problem.y_train.numpy())

        def accuracy(z, y):
            return float(model.score(scaler.transform(z.numpy()), y.numpy()))

        return {"val": [accuracy(z, problem.y_val) for z in sets["val"]],
                "test": [accuracy(z, problem.y_test) for z in sets["test"]]}


def code_errors(problem: CodeProblem, sets: dict) -> dict:
    r"""How much noise moves the test codes of ``sets`` (:func:`code_sets`; its first noise level must be 0).

    Per noise level, the median over test images of :math:`\|z(x + \sigma\varepsilon) - z(x)\| / \|z(x)\|`
    (``relative``) and of the same ratio after summing the coefficients of the atoms of each label,
    :math:`P^\top z` with :math:`P` the atoms' one-hot labels (``pooled``: every atom is a labelled
    training image, so near-duplicate atoms of one digit are merged).
    """
    clean = sets["test"][0]
    pooling = torch.nn.functional.one_hot(problem.atom_labels, int(problem.atom_labels.max()) + 1).to(clean.dtype)

    def median_ratio(change, base):
        return float((change.norm(dim=1) / base.norm(dim=1).clamp_min(torch.finfo(base.dtype).tiny)).median())

    return {"relative": [median_ratio(z - clean, clean) for z in sets["test"]],
            "pooled": [median_ratio((z - clean) @ pooling, clean @ pooling) for z in sets["test"]]}


def code_sweep(seed: int, lams, cs, sigmas, *, n_steps: int = 10) -> list:
    """Every :data:`CODE_METHODS` entry at every ``lam`` and ``C`` for one seed: a list of JSON-ready rows.

    Each row holds ``method``, ``lam`` (for the density-matched control: the λ of the converged code
    whose density it matches), ``lam_used``, ``C``, ``density``, ``kkt_max``, the validation and test
    accuracies at every noise level ``sigmas`` (the first must be 0) and the test codes' errors
    (:func:`code_errors`). Choosing a row by its validation accuracies and reading
    its test accuracies is chapter 5's protocol: hyper-parameters from validation data only.
    """
    problem = code_problem(seed)
    rows = []
    for method in CODE_METHODS:
        for lam in lams:
            if method == "1 step, density-matched":
                target = next(r["density"] for r in rows if r["method"] == "converged" and r["lam"] == lam)
                sets = code_sets(problem, method, lam, sigmas, density=target)
            else:
                sets = code_sets(problem, method, lam, sigmas, n_steps=n_steps)
            errors = code_errors(problem, sets)
            for C in cs:
                scores = classify_codes(problem, sets, C)
                rows.append({"seed": seed, "method": method, "lam": float(lam), "lam_used": sets["lam_used"],
                             "C": float(C), "density": sets["density"], "kkt_max": sets["kkt_max"],
                             "val": scores["val"], "test": scores["test"], "code_error": errors["relative"],
                             "pooled_code_error": errors["pooled"]})
    return rows


# ---------------------------------------------------------------------------------------------
# trained networks

#: name → (n_iter, kind): "cnn-free" / "cnn-nonpositive" are the plain CNN of the chapter-4 network with
#: free or projected biases; "hsc" is the network itself (:math:`\theta = |\rho| \ge 0`); "hsc-admissible" adds the
#: projection that keeps every step an admissible ISTA step
TRAINING_VARIANTS = {
    "CNN, free biases": (1, "cnn-free"),
    "CNN, biases <= 0": (1, "cnn-nonpositive"),
    "K = 1": (1, "hsc"),
    "K = 4": (4, "hsc"),
    "K = 1, admissible step": (1, "hsc-admissible"),
    "K = 2, admissible step": (2, "hsc-admissible"),
    "K = 4, admissible step": (4, "hsc-admissible"),
}


def build_variant(name: str, seed: int, *, channels=(8, 16, 16)):
    """The network of variant ``name`` (:data:`TRAINING_VARIANTS`) initialized with ``torch.manual_seed(seed)``,
    and the projection to apply after every optimizer step (or None). All variants start from the same
    float32 weights for the same seed (before their projection)."""
    from ..models.hierarchical import (
        HierarchicalSparseCodingConfig,
        HierarchicalSparseCodingNet,
        clamp_biases_nonpositive_,
    )
    check_choice(name, "name", tuple(TRAINING_VARIANTS))
    n_iter, kind = TRAINING_VARIANTS[name]
    torch.manual_seed(nonneg_int(seed, "seed"))
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)      # the same initial weights whatever the caller's default dtype
    try:
        net = HierarchicalSparseCodingNet(HierarchicalSparseCodingConfig(channels=tuple(channels), n_iter=n_iter))
    finally:
        torch.set_default_dtype(default_dtype)
    if kind.startswith("cnn"):
        return net.to_sequential(), (clamp_biases_nonpositive_ if kind == "cnn-nonpositive" else None)
    if kind == "hsc-admissible":
        net.project_step_admissible_()
        return net, HierarchicalSparseCodingNet.project_step_admissible_
    return net, None


def train_variant(name: str, seed: int, lr: float, sigmas, *, max_epochs: int = 200, patience: int = 10,
                  val_fraction: float = 0.2, batch_size: int = 64, return_model: bool = False):
    r"""Train variant ``name`` on the digits (float32, Adam, early stopping) and test it under noise.

    :func:`cscnb.load_digits` (seed ``seed``, a stratified validation part of ``val_fraction``), then
    :func:`cscnb.train.fit` for at most ``max_epochs`` epochs with ``patience`` (the weights of the best
    validation epoch are kept). Test accuracy on :math:`x + \sigma\varepsilon` for every ``sigmas``, with
    one standard normal draw :math:`\varepsilon` (seed ``seed + 1000``) in the loader's standardized units.
    Returns a JSON-ready record (and the trained model if ``return_model``).
    """
    from ..train.fit import evaluate, fit
    lr = positive_number(lr, "lr")
    data = load_digits(seed=nonneg_int(seed, "seed"), val_fraction=val_fraction, dtype=torch.float32)
    model, after_step = build_variant(name, seed)
    result = fit(model, data.x_train, data.y_train, epochs=max_epochs, lr=lr, batch_size=batch_size, seed=seed,
                 validation=(data.x_val, data.y_val), patience=patience, after_step=after_step)
    noise = torch.randn(data.x_test.shape, generator=torch.Generator().manual_seed(seed + 1000), dtype=torch.float32)
    record = {"variant": name, "seed": seed, "lr": lr, "best_epoch": result.best_epoch,
              "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
              "val_accuracy": result.best_val_metric,
              "test": [evaluate(model, data.x_test + s * noise, data.y_test) for s in sigmas]}
    if isinstance(model, torch.nn.Sequential):
        biases = torch.cat([m.bias.detach().flatten() for m in model if isinstance(m, torch.nn.Conv2d)])
        record["positive_bias_fraction"] = float((biases > 0).float().mean())
    else:
        record["norm_bounds"] = model.operator_norm_bounds()
    return (record, model) if return_model else record
