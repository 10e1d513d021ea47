"""cscnb.theory.stripe against a brute-force count of overlapping atoms."""
import itertools

import pytest
import torch

from cscnb.theory.stripe import stripe_counts, stripe_norm


def _brute_force(code, k, circular):
    # the stripe of position q: every coefficient at a position q' whose atom overlaps the atom at q
    batch, _, *spatial = code.shape
    nonzero = (code != 0).sum(dim=1)
    out = []
    for b in range(batch):
        best = 0
        for q in itertools.product(*(range(n) for n in spatial)):
            count = 0
            for r in itertools.product(*(range(n) for n in spatial)):
                dist = [abs(a - c) for a, c in zip(q, r, strict=True)]
                if circular:
                    dist = [min(d, n - d) for d, n in zip(dist, spatial, strict=True)]
                if all(d <= k - 1 for d in dist):
                    count += int(nonzero[(b, *r)])
            best = max(best, count)
        out.append(best)
    return out


@pytest.mark.parametrize("shape", [(3, 2, 11), (2, 3, 5, 6)])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("circular", [False, True])
def test_stripe_norm_equals_brute_force(shape, k, circular):
    g = torch.Generator().manual_seed(sum(shape) + k)
    code = torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < 0.25)
    assert stripe_norm(code, k, circular=circular).tolist() == _brute_force(code, k, circular)


def test_spread_codes_have_stripe_norm_one_and_counts_shape():
    code = torch.zeros(1, 2, 30)
    code[0, 0, ::5] = 1.0  # one atom every 2k - 1 = 5 positions (k = 3): no two atoms overlap
    assert stripe_norm(code, 3).tolist() == [1] and int((code != 0).sum()) == 6
    assert stripe_counts(code, 3).shape == (1, 30)
    assert stripe_norm(code * 1e-3, 3, tol=1e-2).tolist() == [0]


@pytest.mark.parametrize("call, error", [
    (lambda: stripe_norm([1.0], 3), TypeError),
    (lambda: stripe_norm(torch.ones(2, 3), 3), ValueError),
    (lambda: stripe_norm(torch.ones(1, 1, 4), 0), ValueError),
    (lambda: stripe_norm(torch.ones(1, 1, 4), 2, tol=-1.0), ValueError),
])
def test_bad_input(call, error):
    with pytest.raises(error):
        call()
