"""An independent NumPy reference of the catalog's newer losses, written from the papers'
formulas (docs/criteria.md cites them): reverse KL and generalized JSD, logit standardization,
DKD, DIST, and the feature relations AT, SP, RKD.

float64 throughout, written as the papers state each quantity (explicit renormalisation,
explicit pairs and triples), not as the library computes it.
"""

import numpy as np

from np_reference import rows, softmax


def _probs(z, temperature):
    return rows(softmax(np.asarray(z, np.float64) / temperature))


def _kl_rows(p, q):
    """sum_c p log(p / q) per row, 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


def reverse_kl(student, teacher, temperature):
    p_s, p_t = _probs(student, temperature), _probs(teacher, temperature)
    return temperature ** 2 * _kl_rows(p_s, p_t).mean()


def forward_kl(student, teacher, temperature):
    p_s, p_t = _probs(student, temperature), _probs(teacher, temperature)
    return temperature ** 2 * _kl_rows(p_t, p_s).mean()


def generalized_jsd(student, teacher, temperature, beta):
    """TRL's GKD convention: beta 0 forward KL, beta 1 reverse KL, else the mixture JSD."""
    if beta == 0:
        return forward_kl(student, teacher, temperature)
    if beta == 1:
        return reverse_kl(student, teacher, temperature)
    p_s, p_t = _probs(student, temperature), _probs(teacher, temperature)
    m = beta * p_t + (1 - beta) * p_s
    per_row = beta * _kl_rows(p_t, m) + (1 - beta) * _kl_rows(p_s, m)
    return temperature ** 2 * per_row.mean()


def standardize(z):
    """Sun et al.: (z - mean) / (std + 1e-7) per sample, the sample standard deviation."""
    z = np.asarray(z, np.float64)
    return (z - z.mean(-1, keepdims=True)) / (z.std(-1, ddof=1, keepdims=True) + 1e-7)


def dkd(student, teacher, target, alpha, beta, temperature):
    """Zhao et al. eq. (1)-(5): TCKD = KL(b_t || b_s) with b = [p_gt, 1 - p_gt]; NCKD =
    KL(p^_t || p^_s), p^ the distribution over the non-target classes (renormalised)."""
    p_s, p_t = _probs(student, temperature), _probs(teacher, temperature)
    target = np.asarray(target).reshape(-1)
    n, classes = p_s.shape
    tckd = np.zeros(n)
    nckd = np.zeros(n)
    for i in range(n):
        g = target[i]
        b_s = np.array([p_s[i, g], 1 - p_s[i, g]])
        b_t = np.array([p_t[i, g], 1 - p_t[i, g]])
        tckd[i] = _kl_rows(b_t, b_s)
        others = [c for c in range(classes) if c != g]
        hat_s = p_s[i, others] / p_s[i, others].sum()
        hat_t = p_t[i, others] / p_t[i, others].sum()
        nckd[i] = _kl_rows(hat_t, hat_s)
    return temperature ** 2 * (alpha * tckd.mean() + beta * nckd.mean())


def _pearson(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return (a @ b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-8)


def dist(student, teacher, beta, gamma, temperature):
    """Huang et al.: inter = 1 - mean_i rho(Y_s[i, :], Y_t[i, :]),
    intra = 1 - mean_j rho(Y_s[:, j], Y_t[:, j]), each x T^2."""
    y_s, y_t = _probs(student, temperature), _probs(teacher, temperature)
    inter = 1 - np.mean([_pearson(y_s[i], y_t[i]) for i in range(y_s.shape[0])])
    intra = 1 - np.mean([_pearson(y_s[:, j], y_t[:, j]) for j in range(y_s.shape[1])])
    return temperature ** 2 * (beta * inter + gamma * intra)


def attention(student, teacher, channel_axis):
    """Zagoruyko & Komodakis: Q = vec(mean_c F_c^2) / ||vec(mean_c F_c^2)||_2, loss =
    mean over batch and positions of (Q_s - Q_t)^2."""
    def q(f):
        f = np.asarray(f, np.float64)
        a = (f ** 2).mean(axis=channel_axis).reshape(f.shape[0], -1)
        return a / np.linalg.norm(a, axis=1, keepdims=True)
    return np.mean((q(student) - q(teacher)) ** 2)


def similarity(student, teacher):
    """Tung & Mori eq. (2)-(4): G = Q Q^T row-L2-normalised, loss = ||G_s - G_t||_F^2 / b^2."""
    def g(f):
        f = np.asarray(f, np.float64)
        flat = f.reshape(f.shape[0], -1)
        gram = flat @ flat.T
        return gram / np.linalg.norm(gram, axis=1, keepdims=True)
    b = np.asarray(student).shape[0]
    return np.sum((g(student) - g(teacher)) ** 2) / b ** 2


def _huber(x, y):
    d = np.abs(x - y)
    return np.where(d < 1, 0.5 * d ** 2, d - 0.5).mean()


def relational(student, teacher, distance_weight, angle_weight):
    """Park et al.: psi_D = ||t_i - t_j|| / mu (mu the mean over distinct pairs, 0 on the
    diagonal), psi_A = cos of the angle at t_i between t_j and t_k (0 where a side is empty);
    Huber (delta 1) over all pairs / triples."""
    def parts(f):
        x = np.asarray(f, np.float64).reshape(np.asarray(f).shape[0], -1)
        n = x.shape[0]
        d = np.array([[np.linalg.norm(x[i] - x[j]) for j in range(n)] for i in range(n)])
        mu = d[~np.eye(n, dtype=bool)].mean()
        e = np.zeros((n, n, x.shape[1]))
        for i in range(n):
            for j in range(n):
                if i != j:
                    e[i, j] = (x[j] - x[i]) / np.linalg.norm(x[j] - x[i])
        angles = np.einsum("ijd,ikd->ijk", e, e)
        return d / mu, angles
    d_s, a_s = parts(student)
    d_t, a_t = parts(teacher)
    return distance_weight * _huber(d_s, d_t) + angle_weight * _huber(a_s, a_t)


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of a float64 function of one array."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        grad[index] = (f(up) - f(down)) / (2 * eps)
    return grad
