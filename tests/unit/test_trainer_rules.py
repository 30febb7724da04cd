import torch
from torch import nn

from sm_toolkit.train import rules as R
from sm_toolkit.train.monitor import ActivationStats, GradientFlow


def obs(**kw):
    base = dict(step_losses=[], epoch_train_loss=[], epoch_val_loss=[], activations=None,
                grads=GradientFlow(nn.Linear(2, 2)), non_finite_steps=[])  # fmt: skip
    return R.Observations(**{**base, **kw})


def test_loss_not_decreasing_compares_window_means():
    falling = [2.0 - 0.05 * i for i in range(30)]
    flat = [1.0] * 30
    rising = [1.0 + 0.02 * i for i in range(30)]
    assert not R.loss_not_decreasing(obs(step_losses=falling)).issues_found
    assert R.loss_not_decreasing(obs(step_losses=flat)).issues_found
    result = R.loss_not_decreasing(obs(step_losses=rising))
    assert result.issues_found and result.detail.startswith("increased")


def test_overfit_uses_ratio_of_gap_to_train_loss():
    assert not R.overfit(obs(epoch_train_loss=[1.0, 0.5], epoch_val_loss=[1.05, 0.54])).issues_found
    assert R.overfit(obs(epoch_train_loss=[1.0, 0.2], epoch_val_loss=[1.0, 0.4])).issues_found


def test_exploding_tensor_reports_the_first_bad_step():
    result = R.exploding_tensor(obs(non_finite_steps=[12, 13]))
    assert result.issues_found and "step 12" in result.detail
    assert result.line().startswith("[rule] exploding_tensor: IssuesFound (")


def test_vanishing_gradient_in_a_deep_sigmoid_stack():
    torch.manual_seed(0)
    layers = []
    for _ in range(12):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    deep = nn.Sequential(*layers, nn.Linear(16, 1))
    with torch.no_grad():
        for m in deep:
            if isinstance(m, nn.Linear):
                m.weight.mul_(0.3)
    flow = GradientFlow(deep)
    deep(torch.randn(32, 16)).mean().backward()
    flow.record(deep, 0)
    result = R.vanishing_gradient(obs(grads=flow))
    assert result.issues_found and result.detail.startswith("0:")  # the first layer


def test_dead_relu_and_saturation_are_measured_per_unit():
    relu_net = nn.Sequential(nn.Linear(4, 10), nn.ReLU())
    with torch.no_grad():
        relu_net[0].bias[:6] = -100.0  # 6 of 10 units can never fire
    stats = ActivationStats(relu_net)
    stats.sample(5)
    relu_net(torch.randn(64, 4))
    stats.stop()
    result = R.dead_relu(obs(activations=stats))
    assert result.issues_found and "60%" in result.detail and "step 5" in result.detail

    tanh_net = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    with torch.no_grad():
        tanh_net[0].bias[:] = 50.0  # every input far beyond 9.5: saturated
    stats = ActivationStats(tanh_net)
    stats.sample(0)
    tanh_net(torch.randn(8, 4))
    assert R.saturated_activation(obs(activations=stats)).issues_found
    assert not R.dead_relu(obs(activations=stats)).issues_found  # no ReLU layers at all


def test_rule_names_accept_sagemaker_spelling_and_keep_unknown_ones():
    assert R.normalise_rule_names(["VanishingGradient", "dead_relu", "LossNotDecreasing"]) == (
        "vanishing_gradient", "dead_relu", "loss_not_decreasing",
    )  # fmt: skip
    assert R.normalise_rule_names(["class_imbalance", " "]) == ("class_imbalance",)


def test_a_rule_sm_toolkit_does_not_implement_is_reported_not_failed():
    verdicts = R.evaluate_rules(["class_imbalance", "exploding_tensor"], obs())
    unknown, known = verdicts
    assert unknown.status == "NotEvaluatedLocally" and not unknown.issues_found
    assert "not evaluated locally" in unknown.line()
    assert unknown.to_dict()["status"] == "NotEvaluatedLocally"
    assert known.status == "NoIssuesFound"
