"""Plausible wrong answers to the implementation questions of ch6_training_dynamics.

Each entry replaces the solution cell containing ``marker`` (in the solution notebook) by
``source``; ``tests/test_exercises.py`` grades the result and checks that ``question`` loses
points.  Teachers: these are also the typical mistakes to look for when reading submissions.
"""

WRONG_SOLUTIONS = [
    dict(
        question="q1",
        name="spaced_in_log_t",
        description="spaces the steps evenly in log t (geomspace(1, T, num), 0 prepended), not in log(1 + t)",
        marker="def log_spaced_steps(",
        source='''
def log_spaced_steps(total_steps, num):
    steps = np.round(np.geomspace(1, total_steps, num)).astype(np.int64)
    return np.unique(np.concatenate([[0], steps]))
''',
    ),
    dict(
        question="q1",
        name="duplicates_kept",
        description="the right formula, but the duplicates that rounding creates at small t are not removed",
        marker="def log_spaced_steps(",
        source='''
def log_spaced_steps(total_steps, num):
    return np.round(np.geomspace(1, total_steps + 1, num) - 1).astype(np.int64)
''',
    ),
    dict(
        question="q2",
        name="l2_in_gradient",
        description="adds weight_decay * theta to the gradient before Adam's normalisation (Adam with L2, not AdamW)",
        marker="def adamw_step(",
        source='''
def adamw_step(theta, grad, m, v, t, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
    beta1, beta2 = betas
    grad = grad + weight_decay * theta
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    theta = theta - lr * m_hat / (torch.sqrt(v_hat) + eps)
    return theta, m, v
''',
    ),
    dict(
        question="q2",
        name="no_bias_correction",
        description="uses m_t / (sqrt(v_t) + eps) without the bias corrections 1 - beta^t (steps too large early on)",
        marker="def adamw_step(",
        source='''
def adamw_step(theta, grad, m, v, t, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    theta = (1 - lr * weight_decay) * theta - lr * m / (torch.sqrt(v) + eps)
    return theta, m, v
''',
    ),
    dict(
        question="q3",
        name="index_not_step",
        description="returns the index of the saturating evaluation instead of its training step",
        marker="def late_phase(",
        source='''
def late_phase(steps, train_acc, lc, threshold=0.99):
    train_acc, lc = np.asarray(train_acc, dtype=float), np.asarray(lc, dtype=float)
    reached = np.flatnonzero(train_acc >= threshold)
    if len(reached) == 0:
        return None, None
    i_sat = int(reached[0])
    return i_sat, float(lc[-1] / lc[i_sat:].max())
''',
    ),
    dict(
        question="q3",
        name="never_saturating_not_handled",
        description="np.argmax(train_acc >= threshold) without a check: a run that never fits gets t_sat = steps[0]",
        marker="def late_phase(",
        source='''
def late_phase(steps, train_acc, lc, threshold=0.99):
    steps, train_acc, lc = np.asarray(steps), np.asarray(train_acc, dtype=float), np.asarray(lc, dtype=float)
    i_sat = int(np.argmax(train_acc >= threshold))
    return int(steps[i_sat]), float(lc[-1] / lc[i_sat:].max())
''',
    ),
    dict(
        question="q4",
        name="cancelling_updates",
        description="chooses (a): thinks the blank-pixel weights get normalised Adam updates that cancel on average",
        marker="q4_answer =",
        source='''
q4_answer = "a"
''',
    ),
    dict(
        question="q5",
        name="minibatch_noise",
        description="chooses (a): attributes the late phase to minibatch noise after the gradients vanish",
        marker="q5_answer =",
        source='''
q5_answer = "a"
''',
    ),
]
