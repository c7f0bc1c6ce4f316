"""Plausible wrong answers to the implementation questions of ch4_total_variation.

Each entry replaces the solution cell containing ``marker`` (in the solution notebook) by
``source``; ``tests/test_exercises.py`` grades the result and checks that ``question`` loses
points.  Teachers: these are also the typical mistakes to look for when reading submissions.
"""

WRONG_SOLUTIONS = [
    dict(
        question="q1",
        name="no_activation_mask",
        description="uses W2 W1 at every x: the activation pattern D_1(x) is left out of the Jacobian",
        marker="def tv_one_layer(",
        source='''
def tv_one_layer(W1, b1, W2, x):
    return torch.linalg.matrix_norm(W2 @ W1) * torch.ones((), dtype=x.dtype)
''',
    ),
    dict(
        question="q1",
        name="squared_frobenius_norm",
        description="averages the squared Frobenius norm ||J||_F^2 instead of ||J||_F",
        marker="def tv_one_layer(",
        source='''
def tv_one_layer(W1, b1, W2, x):
    active = (x @ W1.T + b1 > 0).to(x.dtype)
    J = W2 @ (active.unsqueeze(2) * W1)
    return (J**2).sum(dim=(1, 2)).mean()
''',
    ),
    dict(
        question="q2",
        name="descends_the_loss",
        description="x - eps * sign(grad): a step that lowers the loss (helps the classifier)",
        marker="def fgsm_linf(",
        source='''
def fgsm_linf(model, x, y, eps):
    x_req = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x_req), y)
    (g,) = torch.autograd.grad(loss, x_req)
    return (x - eps * g.sign()).detach()
''',
    ),
    dict(
        question="q2",
        name="raw_gradient_step",
        description="x + eps * grad: the gradient itself instead of its sign (not a corner of the L-inf ball)",
        marker="def fgsm_linf(",
        source='''
def fgsm_linf(model, x, y, eps):
    x_req = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x_req), y)
    (g,) = torch.autograd.grad(loss, x_req)
    return (x + eps * g).detach()
''',
    ),
    dict(
        question="q3",
        name="no_projection",
        description="takes the signed step (and the clamp) but never projects back onto the eps-ball around x0",
        marker="def pgd_step_linf(",
        source='''
def pgd_step_linf(model, x_adv, x0, y, eps, alpha, clamp=None):
    x_req = x_adv.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x_req), y)
    (g,) = torch.autograd.grad(loss, x_req)
    x_new = x_adv.detach() + alpha * g.sign()
    if clamp is not None:
        x_new = x_new.clamp(clamp[0], clamp[1])
    return x_new.detach()
''',
    ),
    dict(
        question="q3",
        name="projects_the_step_not_the_iterate",
        description="clips the step alpha * sign(g) to [-eps, eps] (a ball around x_adv) instead of x_new - x0",
        marker="def pgd_step_linf(",
        source='''
def pgd_step_linf(model, x_adv, x0, y, eps, alpha, clamp=None):
    x_req = x_adv.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x_req), y)
    (g,) = torch.autograd.grad(loss, x_req)
    x_new = x_adv.detach() + (alpha * g.sign()).clamp(-eps, eps)
    if clamp is not None:
        x_new = x_new.clamp(clamp[0], clamp[1])
    return x_new.detach()
''',
    ),
    dict(
        question="q3",
        name="ignores_clamp",
        description="projects onto the ball but ignores the valid input range clamp=(lo, hi)",
        marker="def pgd_step_linf(",
        source='''
def pgd_step_linf(model, x_adv, x0, y, eps, alpha, clamp=None):
    x_req = x_adv.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x_req), y)
    (g,) = torch.autograd.grad(loss, x_req)
    x_new = x_adv.detach() + alpha * g.sign()
    return (x0 + (x_new - x0).clamp(-eps, eps)).detach()
''',
    ),
    dict(
        question="q4",
        name="tv_must_fall",
        description="chooses (c): believes the bound forces the total variation down with the local complexity",
        marker="q4_answer =",
        source='''
q4_answer = "c"
''',
    ),
]
