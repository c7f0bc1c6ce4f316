"""Plausible wrong answers to the implementation questions of ch3_local_rank.

Each entry replaces the solution cell containing ``marker`` (in the solution notebook) by
``source``; ``tests/test_exercises.py`` grades the result and checks that ``question`` loses
points.  Teachers: these are also the typical mistakes to look for when reading submissions.
"""

WRONG_SOLUTIONS = [
    dict(
        question="q1",
        name="threshold_on_squared_singular_values",
        description="counts eigenvalues of the Gram matrix J J^T above eps, i.e. squared singular "
                    "values sigma_j^2 > eps instead of sigma_j > eps",
        marker="def count_singular_values(",
        source='''
def count_singular_values(J, eps):
    return (torch.linalg.eigvalsh(J @ J.mT) > eps).sum(dim=-1)
''',
    ),
    dict(
        question="q1",
        name="exact_rank_ignores_eps",
        description="torch.linalg.matrix_rank: the exact (numerical-precision) rank, eps ignored",
        marker="def count_singular_values(",
        source='''
def count_singular_values(J, eps):
    return torch.linalg.matrix_rank(J)
''',
    ),
    dict(
        question="q2",
        name="no_activation_mask",
        description="J_l = W_l J_{l-1}: the ReLU derivative D_{l-1} is left out (the Jacobian of the linear network)",
        marker="def feature_jacobians(",
        source='''
def feature_jacobians(weights, biases, x):
    Js, J = [], None
    for W, b in zip(weights, biases):
        J = W.expand(x.shape[0], *W.shape) if J is None else W @ J
        Js.append(J)
    return Js
''',
    ),
    dict(
        question="q2",
        name="mask_of_the_current_layer",
        description="masks J_l with layer l's own activation pattern (D_l J_l, the post-activation "
                    "Jacobian) instead of multiplying W_l by the previous layer's D_{l-1}",
        marker="def feature_jacobians(",
        source='''
def feature_jacobians(weights, biases, x):
    Js, h, J = [], x, None
    for W, b in zip(weights, biases):
        z = h @ W.T + b
        J = W.expand(x.shape[0], *W.shape) if J is None else W @ J
        J = (z > 0).to(x.dtype).unsqueeze(2) * J
        Js.append(J)
        h = torch.relu(z)
    return Js
''',
    ),
    dict(
        question="q3",
        name="mean_instead_of_max_sigma1",
        description="S_l taken as the mean of sigma_1(J_l(x)) over the points instead of the maximum",
        marker="def rank_bound(",
        source='''
def rank_bound(J, eps, s):
    N, n_l, n_0 = J.shape
    sv = torch.linalg.svdvals(J)
    LR = (sv > eps).sum(dim=1).to(sv.dtype).mean()
    S = sv[:, 0].mean()
    m = min(n_l, n_0)
    c_bias = 1.0 / (s * math.sqrt(2 * math.pi))
    return c_bias * math.sqrt(n_l) * torch.sqrt(LR * S**2 + (m - LR) * eps**2)
''',
    ),
    dict(
        question="q3",
        name="m_is_the_width",
        description="m_l = n_l (the layer width) instead of min(n_l, n_0), the number of singular values",
        marker="def rank_bound(",
        source='''
def rank_bound(J, eps, s):
    N, n_l, n_0 = J.shape
    sv = torch.linalg.svdvals(J)
    LR = (sv > eps).sum(dim=1).to(sv.dtype).mean()
    S = sv[:, 0].max()
    c_bias = 1.0 / (s * math.sqrt(2 * math.pi))
    return c_bias * math.sqrt(n_l) * torch.sqrt(LR * S**2 + (n_l - LR) * eps**2)
''',
    ),
    dict(
        question="q4",
        name="uniform_decay",
        description="chooses (a): expects weight decay to collapse every layer alike, layer 1 included",
        marker="q4_answer =",
        source='''
q4_answer = "a"
''',
    ),
]
