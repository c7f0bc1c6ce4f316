"""Plausible wrong answers to the implementation questions of ch2_local_complexity.

Each entry replaces the solution cell containing ``marker`` (in the solution notebook) by
``source``; ``tests/test_exercises.py`` grades the result and checks that ``question`` loses
points.  Teachers: these are also the typical mistakes to look for when reading submissions.
"""

WRONG_SOLUTIONS = [
    dict(
        question="q1",
        name="density_missing_1_over_s",
        description="exp(-t^2 / (2 s^2)) / sqrt(2 pi): the normalisation 1/s is missing",
        marker="def gaussian_density(",
        source='''
def gaussian_density(t, s):
    return torch.exp(-0.5 * (t / s) ** 2) / math.sqrt(2 * math.pi)
''',
    ),
    dict(
        question="q2",
        name="no_own_noise_correction",
        description="evaluates phi_s at the perturbed z instead of zbar = z - eps (own noise not left out)",
        marker="def lc_one_layer(",
        source='''
def lc_one_layer(W, b, x, s, eps=None):
    if eps is None:
        eps = torch.zeros(x.shape[0], W.shape[0], dtype=x.dtype)
    z = x @ W.T + b + eps
    return (lctools.gaussian_density(z, s) * W.norm(dim=1)).sum(dim=1).mean()
''',
    ),
    dict(
        question="q3",
        name="length_not_divided_by_area",
        description="returns the total boundary length in K, not divided by area(K)",
        marker="def lc_exact_box(",
        source='''
def lc_exact_box(W, b, R):
    W, b = np.asarray(W, dtype=float), np.asarray(b, dtype=float)
    total = 0.0
    for w, c in zip(W, b):
        nw = np.linalg.norm(w)
        p0, d = -c * w / nw**2, np.array([-w[1], w[0]]) / nw
        lo, hi = -np.inf, np.inf
        for k in range(2):
            if abs(d[k]) < 1e-15:
                if abs(p0[k]) > R:
                    lo, hi = 0.0, 0.0
                continue
            t1, t2 = sorted(((-R - p0[k]) / d[k], (R - p0[k]) / d[k]))
            lo, hi = max(lo, t1), min(hi, t2)
        total += max(0.0, hi - lo)
    return total
''',
    ),
    dict(
        question="q4",
        name="monte_carlo_spread",
        description="chooses (a): expects Monte Carlo noise that the own-noise correction removes",
        marker="q4_answer =",
        source='''
q4_answer = "a"
''',
    ),
]
