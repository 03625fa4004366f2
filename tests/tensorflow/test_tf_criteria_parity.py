"""Every TensorFlow criterion equals its PyTorch twin (1e-5) and the NumPy reference.

Same logits and features go into both frameworks; matchers get the same weights.
"""

import itertools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import np_reference as ref  # noqa: E402
from neural_distill import ConfigError, ModelError  # noqa: E402
from neural_distill.criterion import (  # noqa: E402
    PyTorchIntermediateLayersKnowledgeDistillationLoss, PyTorchKnowledgeDistillationLoss,
    PyTorchSelfKnowledgeDistillationLoss, TensorflowIntermediateLayersKnowledgeDistillationLoss,
    TensorflowKnowledgeDistillationLoss, TensorflowSelfKnowledgeDistillationLoss)

RTOL, ATOL = 1e-5, 1e-7


def logits_pair(shape=(6, 5), seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return ((rng.normal(size=shape) * scale).astype(np.float32),
            (rng.normal(size=shape) * scale).astype(np.float32))


def labels_for(student_type, shape, seed=1):
    rng = np.random.default_rng(seed)
    if student_type == "CE":
        return rng.integers(0, shape[-1], size=shape[:-1]).astype(np.int64)
    return rng.normal(size=shape).astype(np.float32)


def tf_value(loss):
    assert tf.is_tensor(loss) and loss.shape.rank == 0, "loss must be a TensorFlow scalar"
    return float(loss.numpy())


def torch_value(loss):
    return float(loss.detach())


def both(kwargs):
    return TensorflowKnowledgeDistillationLoss(**kwargs), PyTorchKnowledgeDistillationLoss(**kwargs)


def assert_parity(tf_loss, torch_loss, expected):
    np.testing.assert_allclose(tf_value(tf_loss), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(tf_value(tf_loss), torch_value(torch_loss), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------- logit KD
@pytest.mark.parametrize("student_type,kd_type,temperature",
                         list(itertools.product(["CE", "MSE"], ["CE", "KL", "MSE"],
                                                [1.0, 2.0, 4.0])))
def test_combined_loss(student_type, kd_type, temperature):
    s, t = logits_pair(seed=int(temperature))
    y = labels_for(student_type, s.shape)
    weights = [0.3, 0.9]
    tf_crit, pt_crit = both(dict(temperature=temperature, loss_types=[student_type, kd_type],
                                 loss_weights=weights))
    got = tf_crit(tf.constant(s), tf.constant(t), tf.constant(y))
    assert_parity(got, pt_crit(torch.tensor(s), torch.tensor(t), torch.tensor(y)),
                  ref.total(student_type, kd_type, weights, s, t, y, temperature))


@pytest.mark.parametrize("student_type,kd_type", [("CE", "KL"), ("CE", "CE"), ("MSE", "KL")])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_probability_outputs_use_a_power_of_p(student_type, kd_type, temperature):
    z_s, z_t = logits_pair(seed=9, scale=1.5)
    p_s = ref.softmax(z_s.astype(np.float64)).astype(np.float32)
    p_t = ref.softmax(z_t.astype(np.float64)).astype(np.float32)
    y = labels_for(student_type, p_s.shape, seed=10)
    kwargs = dict(temperature=temperature, loss_types=[student_type, kd_type],
                  loss_weights=[0.4, 0.6], from_logits=False)
    tf_crit, pt_crit = both(kwargs)
    assert_parity(tf_crit(tf.constant(p_s), tf.constant(p_t), tf.constant(y)),
                  pt_crit(torch.tensor(p_s), torch.tensor(p_t), torch.tensor(y)),
                  ref.total(student_type, kd_type, [0.4, 0.6], p_s, p_t, y, temperature,
                            from_logits=False))


def test_ignored_labels_and_no_labels():
    s, t = logits_pair(shape=(8, 4), seed=12)
    y = labels_for("CE", s.shape, seed=13)
    y[[1, 4, 5]] = -100
    tf_crit, pt_crit = both(dict(temperature=2.0, loss_types=["CE", "KL"],
                                 loss_weights=[0.3, 0.7]))
    assert_parity(tf_crit(tf.constant(s), tf.constant(t), tf.constant(y)),
                  pt_crit(torch.tensor(s), torch.tensor(t), torch.tensor(y)),
                  ref.total("CE", "KL", [0.3, 0.7], s, t, y, 2.0))
    assert tf_crit.student_loss(tf.constant(s), None) is None
    assert_parity(tf_crit(tf.constant(s), tf.constant(t), None),
                  pt_crit(torch.tensor(s), torch.tensor(t), None),
                  0.7 * ref.kd("KL", s, t, 2.0))


def test_all_ignored_labels_give_zero_not_nan_and_finite_gradients():
    s, t = logits_pair(shape=(5, 4), seed=14)
    y = np.full((5,), -100, dtype=np.int64)
    crit = TensorflowKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"],
                                               loss_weights=[0.3, 0.7])
    z = tf.Variable(s)
    with tf.GradientTape() as tape:
        student = crit.student_loss(z, tf.constant(y))
        loss = crit(z, tf.constant(t), tf.constant(y))
    assert tf_value(student) == 0.0
    np.testing.assert_allclose(tf_value(loss), 0.7 * ref.kd("KL", s, t, 2.0), rtol=RTOL)
    assert np.isfinite(tape.gradient(loss, z).numpy()).all()


@pytest.mark.parametrize("kd_type", ["CE", "KL", "MSE"])
def test_sequence_logits_count_every_position(kd_type):
    s, t = logits_pair(shape=(3, 4, 5), seed=16)
    y = labels_for("CE", s.shape, seed=17)
    y[0, 1] = -100
    tf_crit, pt_crit = both(dict(temperature=2.0, loss_types=["CE", kd_type]))
    assert_parity(tf_crit(tf.constant(s), tf.constant(t), tf.constant(y)),
                  pt_crit(torch.tensor(s), torch.tensor(t), torch.tensor(y)),
                  ref.total("CE", kd_type, [0.5, 0.5], s.reshape(12, 5), t.reshape(12, 5),
                            y.reshape(12), 2.0))


@pytest.mark.parametrize("kd_type", ["CE", "KL"])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kd_gradient_is_t_times_probability_difference(kd_type, temperature):
    # d/dz_s of T^2 * mean_batch KL is T * (p_s - p_t) / N: the T^2 keeps it O(1) in T.
    s, t = logits_pair(shape=(5, 6), seed=6)
    z = tf.Variable(s)
    crit = TensorflowKnowledgeDistillationLoss(temperature=temperature,
                                               loss_types=["CE", kd_type])
    with tf.GradientTape() as tape:
        loss = crit.distillation_loss(z, tf.constant(t))
    expected = temperature * (ref.tempered(s, temperature, True)
                              - ref.tempered(t, temperature, True)) / s.shape[0]
    np.testing.assert_allclose(tape.gradient(loss, z).numpy(), expected, rtol=1e-4, atol=1e-7)


def test_same_value_under_tf_function():
    s, t = logits_pair(seed=3)
    y = labels_for("CE", s.shape)
    crit = TensorflowKnowledgeDistillationLoss(temperature=4.0, loss_types=["CE", "KL"])
    compiled = tf.function(lambda a, b, c: crit(a, b, c))
    eager = crit(tf.constant(s), tf.constant(t), tf.constant(y))
    np.testing.assert_allclose(tf_value(compiled(tf.constant(s), tf.constant(t),
                                                 tf.constant(y))), tf_value(eager), rtol=1e-6)


def test_teacher_gets_no_gradient():
    s, t = logits_pair(seed=4)
    z_s, z_t = tf.Variable(s), tf.Variable(t)
    crit = TensorflowKnowledgeDistillationLoss(temperature=2.0, loss_types=["CE", "KL"])
    with tf.GradientTape() as tape:
        loss = crit.distillation_loss(z_s, z_t)
    grad_s, grad_t = tape.gradient(loss, [z_s, z_t])
    assert grad_s is not None and grad_t is None


# ---------------------------------------------------------------------------- arguments
def test_defaults_and_validation_match_the_yaml():
    crit = TensorflowKnowledgeDistillationLoss()
    assert (crit.temperature, crit.loss_types, crit.loss_weights, crit.from_logits) == \
        (1.0, ["CE", "CE"], [0.5, 0.5], True)
    with pytest.raises(ConfigError) as info:
        TensorflowKnowledgeDistillationLoss(temperature=-1)
    assert str(info.value) == ("TensorflowKnowledgeDistillationLoss: temperature: expected a "
                               "number > 0, got -1")
    with pytest.raises(ConfigError, match=r"loss_types: expected 1 or 2 entries"):
        TensorflowIntermediateLayersKnowledgeDistillationLoss(layer_mappings=[["a"], ["b"]],
                                                              loss_types=["MSE", "L1", "KL"])


def test_shape_mismatch_names_both_shapes():
    crit = TensorflowKnowledgeDistillationLoss()
    with pytest.raises(ModelError, match=r"student output shape \(4, 3\) and teacher output "
                                         r"shape \(4, 5\) disagree"):
        crit.distillation_loss(tf.zeros((4, 3)), tf.zeros((4, 5)))


# ---------------------------------------------------------------------------- features
def _keras_pair(student_shape, teacher_shape):
    """Functional models whose layer 'feat' has the given per-sample output shapes."""
    def model(shape, seed):
        keras.utils.set_random_seed(seed)
        x = keras.Input(shape[:-1] + (3,))
        feat = keras.layers.Dense(shape[-1], name="feat")(x)
        return keras.Model(x, keras.layers.Dense(2, name="head")(feat))
    return model(student_shape, 0), model(teacher_shape, 1)


class _TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.feat = torch.nn.Identity()

    def forward(self, x):
        return self.feat(x)


def _tf_loss(crit, s, t):
    crit._student_capture.outputs["feat"] = tf.constant(s)
    crit._teacher_captures[0].outputs["feat"] = tf.constant(t)
    return crit.distillation_loss()


def _torch_loss(crit, s, t):
    crit._student_capture.outputs["feat"] = torch.tensor(s)
    crit._teacher_captures[0].outputs["feat"] = torch.tensor(t)
    crit._build_matchers()
    crit._student_capture.outputs["feat"] = torch.tensor(s)
    crit._teacher_captures[0].outputs["feat"] = torch.tensor(t)
    return crit.distillation_loss()


@pytest.mark.parametrize("loss_type", ["MSE", "L1", "KL", "cosine"])
def test_feature_losses(loss_type):
    rng = np.random.default_rng(1)
    s = rng.normal(size=(4, 5, 6)).astype(np.float32)
    t = rng.normal(size=(4, 5, 6)).astype(np.float32)
    kwargs = dict(layer_mappings=[["feat"]], loss_types=[loss_type], loss_weights=[0.7])
    tf_crit = TensorflowIntermediateLayersKnowledgeDistillationLoss(**kwargs)
    student, teacher = _keras_pair((5, 6), (5, 6))
    tf_crit.attach(student, [teacher])
    pt_crit = PyTorchIntermediateLayersKnowledgeDistillationLoss(**kwargs)
    pt_crit.attach(_TorchNet(), [_TorchNet()])
    try:
        assert not tf_crit.needs_preparation  # identity matchers, read from the graphs
        assert_parity(_tf_loss(tf_crit, s, t), _torch_loss(pt_crit, s, t),
                      0.7 * ref.feature(loss_type, s, t))
    finally:
        tf_crit.detach()
        pt_crit.detach()


def test_dense_matcher_with_the_same_weights_as_torch_linear():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(4, 6)).astype(np.float32)
    t = rng.normal(size=(4, 5)).astype(np.float32)
    tf_crit = TensorflowIntermediateLayersKnowledgeDistillationLoss(layer_mappings=[["feat"]])
    student, teacher = _keras_pair((6,), (5,))
    tf_crit.attach(student, [teacher])
    pt_crit = PyTorchIntermediateLayersKnowledgeDistillationLoss(layer_mappings=[["feat"]])
    pt_crit.attach(_TorchNet(), [_TorchNet()])
    try:
        pt_loss = _torch_loss(pt_crit, s, t)
        linear = pt_crit.matchers[0]
        dense = tf_crit.matchers[0]
        assert type(dense).__name__ == "Dense" and type(linear).__name__ == "Linear"
        dense.set_weights([linear.weight.detach().numpy().T, linear.bias.detach().numpy()])
        mapped = s @ linear.weight.detach().numpy().T.astype(np.float64) + \
            linear.bias.detach().numpy()
        assert_parity(_tf_loss(tf_crit, s, t), pt_loss, ref.feature("MSE", mapped, t))
    finally:
        tf_crit.detach()
        pt_crit.detach()


def test_conv_matcher_nhwc_equals_torch_nchw():
    rng = np.random.default_rng(3)
    s_nchw = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    t_nchw = rng.normal(size=(2, 5, 4, 4)).astype(np.float32)

    def conv_model(channels, seed):
        keras.utils.set_random_seed(seed)
        x = keras.Input((4, 4, 1))
        feat = keras.layers.Conv2D(channels, 1, name="feat")(x)
        return keras.Model(x, keras.layers.Flatten()(feat))

    tf_crit = TensorflowIntermediateLayersKnowledgeDistillationLoss(layer_mappings=[["feat"]])
    tf_crit.attach(conv_model(3, 0), [conv_model(5, 1)])
    pt_crit = PyTorchIntermediateLayersKnowledgeDistillationLoss(layer_mappings=[["feat"]])
    pt_crit.attach(_TorchNet(), [_TorchNet()])
    try:
        pt_loss = _torch_loss(pt_crit, s_nchw, t_nchw)
        conv = pt_crit.matchers[0]
        matcher = tf_crit.matchers[0]
        assert type(matcher).__name__ == "Conv2D"
        kernel = conv.weight.detach().numpy().transpose(2, 3, 1, 0)  # (1, 1, in, out)
        matcher.set_weights([kernel, conv.bias.detach().numpy()])
        nhwc = (0, 2, 3, 1)
        got = _tf_loss(tf_crit, s_nchw.transpose(nhwc), t_nchw.transpose(nhwc))
        # MSE is a mean over elements, so the layout does not change its value.
        np.testing.assert_allclose(tf_value(got), torch_value(pt_loss), rtol=RTOL, atol=ATOL)
    finally:
        tf_crit.detach()
        pt_crit.detach()


def test_self_distillation():
    rng = np.random.default_rng(2)
    deep, shallow = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    f_deep, f_shallow = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    T = 3.0
    kwargs = dict(layer_mappings=[[["aux", "logits"]], [["f1", "f2"]]], temperature=T,
                  loss_types=["KL", "L2"], loss_weights=[0.5, 0.2])
    arrays = {"logits": deep, "aux": shallow, "f1": f_shallow, "f2": f_deep}
    tf_loss = TensorflowSelfKnowledgeDistillationLoss(**kwargs).distillation_loss(
        {k: tf.constant(v, tf.float32) for k, v in arrays.items()})
    pt_loss = PyTorchSelfKnowledgeDistillationLoss(**kwargs).distillation_loss(
        {k: torch.tensor(v, dtype=torch.float32) for k, v in arrays.items()})
    expected = 0.5 * ref.kd("KL", shallow, deep, T) + 0.2 * ref.feature("MSE", f_shallow, f_deep)
    assert_parity(tf_loss, pt_loss, expected)
