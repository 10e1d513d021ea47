"""Corruptions (CIFAR-10-C noise) and adversarial attacks (FGSM, PGD) of chapter 13."""
import pytest
import torch
import torch.nn as nn

from cscnb.robustness import attacks, corruptions
from cscnb.robustness.attacks import fgsm, pgd, project_to_ball
from cscnb.robustness.corruptions import corrupt, corruption_parameter


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------- corruptions

def test_published_cifar10c_parameters():
    # the table of make_cifar_c.py (Hendrycks & Dietterich 2019), severities 1..5
    assert [corruption_parameter("gaussian", s) for s in range(1, 6)] == [0.04, 0.06, 0.08, 0.09, 0.10]
    assert [corruption_parameter("shot", s) for s in range(1, 6)] == [500, 250, 100, 75, 50]
    assert [corruption_parameter("impulse", s) for s in range(1, 6)] == [0.01, 0.02, 0.03, 0.05, 0.07]
    assert [corruption_parameter("speckle", s) for s in range(1, 6)] == [0.06, 0.10, 0.12, 0.16, 0.20]


@pytest.mark.parametrize("name", corruptions.CORRUPTIONS)
def test_corruption_stays_in_box_keeps_dtype_and_is_seeded(name):
    x = torch.rand(4, 1, 8, 8, generator=_gen(1), dtype=torch.float64)
    a = corrupt(x, name, 3, generator=_gen(7))
    b = corrupt(x, name, 3, generator=_gen(7))
    c = corrupt(x, name, 3, generator=_gen(8))
    assert a.dtype == x.dtype and a.shape == x.shape and a.device == x.device
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b), "same seed must give the same corruption"
    assert not torch.equal(a, c), "a different seed must give a different corruption"
    assert not torch.equal(a, x)


def test_gaussian_noise_has_the_published_standard_deviation():
    x = torch.full((200_000,), 0.5, dtype=torch.float64)   # 0.5 ± 5σ stays inside [0, 1]: no clipping
    for severity in (1, 5):
        sigma = corruption_parameter("gaussian", severity)
        noise = corrupt(x, "gaussian", severity, generator=_gen(severity)) - x
        assert abs(float(noise.std()) / sigma - 1) < 0.01
        assert abs(float(noise.mean())) < 4 * sigma / 200_000 ** 0.5 + 1e-12


def test_shot_noise_is_poisson_with_the_published_photon_count():
    x = torch.full((200_000,), 0.3, dtype=torch.float64)
    for severity in (1, 5):
        c = corruption_parameter("shot", severity)
        noisy = corrupt(x, "shot", severity, generator=_gen(severity))
        assert abs(float(noisy.mean()) / 0.3 - 1) < 0.01               # unbiased
        assert abs(float(noisy.var()) / (0.3 / c) - 1) < 0.03          # Var[k/c] = x/c
        assert torch.allclose(noisy * c, (noisy * c).round())          # integer photon counts


def test_impulse_noise_flips_the_published_fraction_to_zero_or_one():
    x = torch.full((200_000,), 0.4, dtype=torch.float64)
    p = corruption_parameter("impulse", 5)
    noisy = corrupt(x, "impulse", 5, generator=_gen(3))
    changed = noisy != x
    assert abs(float(changed.double().mean()) / p - 1) < 0.05
    assert bool(((noisy[changed] == 0) | (noisy[changed] == 1)).all())
    assert abs(float((noisy[changed] == 1).double().mean()) - 0.5) < 0.03


def test_speckle_noise_is_proportional_to_intensity():
    x = torch.cat([torch.zeros(1000), torch.full((200_000,), 0.5)]).double()
    sigma = corruption_parameter("speckle", 4)
    noisy = corrupt(x, "speckle", 4, generator=_gen(4))
    assert bool((noisy[:1000] == 0).all()), "black pixels have no speckle"
    assert abs(float((noisy[1000:] - 0.5).std()) / (0.5 * sigma) - 1) < 0.01


@pytest.mark.parametrize("name", corruptions.CORRUPTIONS)
def test_severity_increases_the_error(name):
    x = torch.rand(20_000, generator=_gen(5), dtype=torch.float64) * 0.8 + 0.1
    errors = [float((corrupt(x, name, s, generator=_gen(s)) - x).square().mean()) for s in range(1, 6)]
    assert all(a < b for a, b in zip(errors, errors[1:], strict=False)), errors


def test_corruption_bad_input():
    x = torch.rand(2, 3, generator=_gen())
    with pytest.raises(ValueError, match="name"):
        corrupt(x, "fog", 1)
    with pytest.raises(TypeError, match="name"):
        corrupt(x, 3, 1)
    for severity in (0, 6, -1):
        with pytest.raises(ValueError, match="severity"):
            corrupt(x, "gaussian", severity)
    for severity in (True, 2.0, "3"):
        with pytest.raises(TypeError, match="severity"):
            corrupt(x, "gaussian", severity)
    with pytest.raises(ValueError, match="x must hold"):
        corrupt(x * 16, "shot", 1)
    with pytest.raises(TypeError, match="x"):
        corrupt([0.5], "shot", 1)
    with pytest.raises(TypeError, match="x"):
        corrupt(torch.ones(3, dtype=torch.int64), "shot", 1)
    with pytest.raises(TypeError, match="generator"):
        corrupt(x, "gaussian", 1, generator=0)
    with pytest.raises(ValueError, match="sigma"):
        corruptions.gaussian_noise(x, -0.1)
    with pytest.raises(ValueError, match="amount"):
        corruptions.impulse_noise(x, 1.5)
    with pytest.raises(ValueError, match="photons"):
        corruptions.shot_noise(x, 0)


# ----------------------------------------------------------------------------------------------- attacks

def _linear_binary_problem(seed=0, n=6, shape=(1, 4, 4)):
    g = _gen(seed)
    w = torch.randn(*shape, generator=g, dtype=torch.float64)
    b = 0.3
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double()

    def model(inputs):
        return (inputs * w).flatten(1).sum(dim=1) + b

    def margin_loss(out, labels):          # -y f(x): the attacker wants to reduce the signed margin
        return -(labels * out).sum()

    return model, margin_loss, w, x, y


def _bcast(y, x):
    return y.reshape(-1, *([1] * (x.ndim - 1)))


def test_attacks_reach_the_closed_form_worst_case_of_a_linear_model():
    model, loss, w, x, y = _linear_binary_problem()
    eps = 0.25
    worst_linf = x - eps * _bcast(y, x) * w.sign()                    # Hölder: maximizer of -y w.δ over ‖δ‖∞ ≤ ε
    worst_l2 = x - eps * _bcast(y, x) * w / w.norm()                  # Cauchy–Schwarz over ‖δ‖₂ ≤ ε
    exact = dict(rtol=0, atol=1e-12)
    torch.testing.assert_close(fgsm(model, x, y, eps, loss_fn=loss), worst_linf, **exact)
    torch.testing.assert_close(fgsm(model, x, y, eps, norm="l2", loss_fn=loss), worst_l2, **exact)
    for norm, worst in (("linf", worst_linf), ("l2", worst_l2)):
        adv = pgd(model, x, y, eps, step_size=eps / 3, n_steps=5, norm=norm, loss_fn=loss)
        torch.testing.assert_close(adv, worst, **exact)
    # random start inside the ball: ℓ∞ reaches the corner exactly after two steps of size ε
    adv = pgd(model, x, y, eps, step_size=eps, n_steps=3, random_start=True, generator=_gen(1), loss_fn=loss)
    torch.testing.assert_close(adv, worst_linf, **exact)
    # ℓ2: the component orthogonal to w shrinks geometrically under the projection
    adv = pgd(model, x, y, eps, step_size=eps, n_steps=80, norm="l2", random_start=True, generator=_gen(2),
              loss_fn=loss)
    torch.testing.assert_close(adv, worst_l2, rtol=0, atol=1e-9)
    # the worst-case margins are the closed forms y f(x) - ε‖w‖₁ and y f(x) - ε‖w‖₂
    torch.testing.assert_close(y * model(worst_linf), y * model(x) - eps * w.abs().sum(), rtol=0, atol=1e-12)
    torch.testing.assert_close(y * model(worst_l2), y * model(x) - eps * w.norm(), rtol=0, atol=1e-12)


def test_no_point_in_the_ball_beats_the_closed_form():
    model, loss, w, x, y = _linear_binary_problem(seed=3, n=1)
    eps = 0.1
    g = _gen(9)
    for norm, worst in (("linf", eps * w.abs().sum()), ("l2", eps * w.norm())):
        delta = project_to_ball(torch.randn(5000, *x.shape[1:], generator=g, dtype=torch.float64) * eps, eps, norm)
        drop = -(y * (model(x + delta) - model(x)))                     # loss increase of each random δ
        assert float(drop.max()) <= float(worst) + 1e-12


def test_attacks_respect_ball_and_box_and_raise_the_loss():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()
    x = torch.rand(10, 1, 4, 4, generator=_gen(4), dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=_gen(5))
    eps = 0.1
    ce = nn.functional.cross_entropy
    for norm in ("linf", "l2"):
        for adv in (fgsm(net, x, y, eps, norm=norm, bounds=(0.0, 1.0)),
                    pgd(net, x, y, eps, step_size=0.03, n_steps=10, norm=norm, random_start=True,
                        generator=_gen(6), bounds=(0.0, 1.0))):
            delta = (adv - x).flatten(1)
            size = delta.abs().max(dim=1).values if norm == "linf" else delta.norm(dim=1)
            assert float(size.max()) <= eps + 1e-12
            assert float(adv.min()) >= 0 and float(adv.max()) <= 1
            assert not adv.requires_grad
        adv = pgd(net, x, y, eps, step_size=0.03, n_steps=10, norm=norm)
        with torch.no_grad():
            assert float(ce(net(adv), y)) > float(ce(net(x), y))
    assert all(p.grad is None for p in net.parameters()), "attacks must not touch parameter gradients"


def test_zero_radius_attack_is_the_identity():
    model, loss, w, x, y = _linear_binary_problem()
    torch.testing.assert_close(fgsm(model, x, y, 0.0, loss_fn=loss), x, rtol=0, atol=0)
    torch.testing.assert_close(pgd(model, x, y, 0.0, step_size=0.1, n_steps=2, norm="l2", loss_fn=loss), x,
                               rtol=0, atol=0)


def test_attack_bad_input():
    model, loss, w, x, y = _linear_binary_problem()
    with pytest.raises(ValueError, match="norm"):
        fgsm(model, x, y, 0.1, norm="l1", loss_fn=loss)
    with pytest.raises(ValueError, match="eps"):
        fgsm(model, x, y, -0.1, loss_fn=loss)
    with pytest.raises(TypeError, match="eps"):
        fgsm(model, x, y, "0.1", loss_fn=loss)
    with pytest.raises(ValueError, match="n_steps"):
        pgd(model, x, y, 0.1, step_size=0.1, n_steps=0, loss_fn=loss)
    with pytest.raises(TypeError, match="n_steps"):
        pgd(model, x, y, 0.1, step_size=0.1, n_steps=2.0, loss_fn=loss)
    with pytest.raises(ValueError, match="step_size"):
        pgd(model, x, y, 0.1, step_size=-1.0, n_steps=1, loss_fn=loss)
    with pytest.raises(ValueError, match="same number of samples"):
        fgsm(model, x, y[:-1], 0.1, loss_fn=loss)
    with pytest.raises(TypeError, match="model"):
        fgsm(None, x, y, 0.1)
    with pytest.raises(TypeError, match="bounds"):
        fgsm(model, x, y, 0.1, loss_fn=loss, bounds=(0.0,))
    with pytest.raises(ValueError, match="bounds"):
        fgsm(model, x, y, 0.1, loss_fn=loss, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="scalar"):
        fgsm(model, x, y, 0.1, loss_fn=lambda out, labels: -(labels * out))
    with pytest.raises(TypeError, match="generator"):
        pgd(model, x, y, 0.1, step_size=0.1, n_steps=1, random_start=True, generator=1, loss_fn=loss)
    assert attacks.steepest_ascent_direction(torch.zeros(2, 3), "l2").abs().sum() == 0
