"""Plausible wrong answers to the implementation questions of ch5_representation_cost.

Each entry replaces the solution cell containing ``marker`` (in the solution notebook) by
``source``; ``tests/test_exercises.py`` grades the result and checks that ``question`` loses
points.  Teachers: these are also the typical mistakes to look for when reading submissions.
"""

WRONG_SOLUTIONS = [
    dict(
        question="q1",
        name="outgoing_times_alpha",
        description="multiplies the outgoing weights by alpha instead of dividing: the function changes",
        marker="def rescale_one_layer(",
        source='''
def rescale_one_layer(W1, b1, W2, alpha):
    return W1 * alpha[:, None], b1 * alpha, W2 * alpha[None, :]
''',
    ),
    dict(
        question="q1",
        name="bias_not_rescaled",
        description="rescales the incoming weights but not the bias: the zero sets move and the function changes",
        marker="def rescale_one_layer(",
        source='''
def rescale_one_layer(W1, b1, W2, alpha):
    return W1 * alpha[:, None], b1.clone(), W2 / alpha[None, :]
''',
    ),
    dict(
        question="q2",
        name="no_square_root",
        description="alpha_i = ||a_i|| / ||w~_i|| without the square root: overshoots, the neuron is not balanced",
        marker="def balancing_factors(",
        source='''
def balancing_factors(W1, b1, W2):
    incoming = torch.sqrt(W1.pow(2).sum(dim=1) + b1.pow(2))
    outgoing = W2.norm(dim=0)
    return outgoing / incoming
''',
    ),
    dict(
        question="q2",
        name="bias_left_out",
        description="balances ||w_i|| (weights only) instead of ||(w_i, b_i)||, although the bias is rescaled too",
        marker="def balancing_factors(",
        source='''
def balancing_factors(W1, b1, W2):
    return torch.sqrt(W2.norm(dim=0) / W1.norm(dim=1))
''',
    ),
    dict(
        question="q3",
        name="output_bias_forgotten",
        description="leaves out ||c||^2, the output bias that no rescaling changes",
        marker="def representation_cost_one_layer(",
        source='''
def representation_cost_one_layer(W1, b1, W2, b2):
    incoming = torch.sqrt(W1.pow(2).sum(dim=1) + b1.pow(2))
    outgoing = W2.norm(dim=0)
    return float(2 * (incoming * outgoing).sum())
''',
    ),
    dict(
        question="q3",
        name="norm_not_minimised",
        description="returns ||theta||^2 itself, not its minimum over the rescaling orbit (not orbit-invariant)",
        marker="def representation_cost_one_layer(",
        source='''
def representation_cost_one_layer(W1, b1, W2, b2):
    return float(W1.pow(2).sum() + b1.pow(2).sum() + W2.pow(2).sum() + b2.pow(2).sum())
''',
    ),
    dict(
        question="q4",
        name="lc_only_depends_on_regions",
        description="chooses (c): believes LC_s is a property of the regions, invariant under rescaling",
        marker="q4_answer =",
        source='''
q4_answer = "c"
''',
    ),
]
