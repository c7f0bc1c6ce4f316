"""Plausible wrong answers to the implementation questions of ch1_linear_regions.

Each entry replaces the solution cell containing ``marker`` (in the solution notebook) by
``source``; ``tests/test_exercises.py`` grades the result and checks that ``question`` loses
points.  Teachers: these are also the typical mistakes to look for when reading submissions.
"""

WRONG_SOLUTIONS = [
    dict(
        question="q1",
        name="no_relu_between_layers",
        description="feeds pre-activations z_{l-1} (not relu(z_{l-1})) to the next layer",
        marker="def activation_pattern(",
        source='''
def activation_pattern(weights, biases, x):
    bits, h = [], x
    for W, b in zip(weights, biases):
        h = h @ W.T + b
        bits.append(h > 0)
    return torch.cat(bits, dim=1)
''',
    ),
    dict(
        question="q2",
        name="bound_off_by_one_term",
        description="sums C(n, j) for j = 0..n0-1, leaving out the j = n0 term",
        marker="def arrangement_bound(",
        source='''
def arrangement_bound(n0, n):
    return sum(math.comb(n, j) for j in range(n0))
''',
    ),
    dict(
        question="q3",
        name="all_crossings",
        description="counts every pairwise crossing of the chords, also those outside the square",
        marker="def regions_in_box(",
        source='''
def regions_in_box(W, b, R):
    W, b = np.asarray(W, dtype=float), np.asarray(b, dtype=float)
    inside = np.flatnonzero(np.abs(b) < R * np.abs(W).sum(axis=1))
    return 1 + len(inside) + len(inside) * (len(inside) - 1) // 2
''',
    ),
    dict(
        question="q4",
        name="exponential_in_depth",
        description="chooses (a): confuses the upper bound with the typical count",
        marker="q4_answer =",
        source='''
q4_answer = "a"
''',
    ),
]
