"""The training-step check: right code passes, each typical mistake gets its own hint."""
import pytest
import torch

from course_utils.checks.runner import judge
from course_utils.checks.training import _run, _scenario, check_training_step, training_step_exercise
from course_utils.data import make_synthetic_faces
from course_utils.core.losses import TripletLoss
from course_utils.training.models import EmbeddingNet
from course_utils.training.trainer import Trainer
from course_utils.training.step import training_step as reference_training_step
from learner_steps import (
    correct,
    correct_zero_grad_late,
    stub,
    no_zero_grad,
    no_step,
    no_backward,
    zero_grad_between_backward_and_step,
    detached,
    inside_no_grad,
    returns_nothing,
    returns_embeddings,
    returns_only_the_loss,
    returns_them_swapped,
    encodes_again_after_the_step,
    returns_the_images,
    returns_three_things,
    own_loss,
    two_steps,
)



def test_scenario_has_a_positive_loss_and_stale_gradients():
    model, optimizer, loss_fn, batches = _scenario()
    assert all(p.grad is not None and bool(p.grad.any()) for p in model.parameters())
    losses = [float(loss) for loss, _ in _run(reference_training_step)[0]]
    assert all(loss > 0 for loss in losses)


@pytest.mark.parametrize("function", [correct, correct_zero_grad_late])
def test_correct_steps_pass(function, capsys):
    result = check_training_step(function)
    assert result.passed and result.mistake is None
    assert capsys.readouterr().out == ("Well done: training_step is correct. Two steps moved the weights exactly like "
                                       "the course's training_step, with stale gradients cleared first, and returned "
                                       "each batch's loss and embeddings.\n")


@pytest.mark.parametrize(
    "function, mistake, phrase",
    [
        (stub, "not_implemented", "not implemented yet"),
        (no_zero_grad, "forgot_zero_grad", "optimizer.zero_grad()"),
        (no_step, "no_step", "optimizer.step()"),
        (no_backward, "no_backward", "loss.backward()"),
        (zero_grad_between_backward_and_step, "no_backward", "zero_grad between backward and step"),
        (detached, "detached", ".detach()"),
        (inside_no_grad, "detached", "torch.no_grad()"),
        (returns_nothing, "wrong_return", "returns None"),
        (returns_embeddings, "wrong_return", "(shape (6, 4))"),
        (returns_only_the_loss, "returned_only_loss", "return loss, embeddings"),
        (returns_them_swapped, "wrong_return", "the loss first"),
        (encodes_again_after_the_step, "wrong_return", "after optimizer.step()"),
        (returns_the_images, "wrong_return", "model(images)"),
        (returns_three_things, "wrong_return", "return loss, embeddings"),
        (own_loss, "wrong_update", "the loss_fn"),
        (two_steps, "wrong_update", "once per call"),
    ],
)
def test_each_mistake_gets_its_hint(function, mistake, phrase, capsys):
    result = check_training_step(function)
    assert not result.passed
    assert result.mistake == mistake
    assert phrase in result.message
    assert capsys.readouterr().out.strip() == result.message.strip()


@pytest.mark.parametrize("function", [correct, correct_zero_grad_late])
def test_what_the_check_passes_the_trainer_runs(function):
    """One contract: a step the check accepts trains in Trainer(step=...) like the course's own step."""
    images, labels = make_synthetic_faces(n_identities=12, images_per_identity=4, image_size=16, seed=0)
    histories = []
    for step in (None, function):
        torch.manual_seed(0)
        trainer = Trainer(EmbeddingNet(embedding_dim=8, width=4), images, labels, TripletLoss(mining="semihard"),
                          p=4, k=4, lr=1e-2, step=step, progress=False, verbose=False)
        histories.append([row["loss"] for row in trainer.fit(1)])
    assert histories[0] == pytest.approx(histories[1], abs=1e-6)


def test_passing_the_result_instead_of_the_function():
    with pytest.raises(TypeError, match="pass the function itself"):
        check_training_step(0.5)


def _momentum_scenario():
    """Another network, optimiser and loss than the check's own: what a hidden test passes."""
    generator = torch.Generator().manual_seed(61)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
            parameter.grad = torch.full_like(parameter, 0.25)
    labels = torch.arange(4).repeat_interleave(2)
    batches = [(torch.rand(8, 2, 2, 2, generator=generator), labels) for _ in range(3)]
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), TripletLoss(alpha=0.3), batches


@pytest.mark.parametrize("function, mistake", [
    (correct, None), (no_zero_grad, "forgot_zero_grad"), (no_step, "no_step"),
    (returns_only_the_loss, "returned_only_loss"),
])
def test_the_exercise_runs_on_another_scenario(function, mistake):
    verdict = judge(function, training_step_exercise("three batches, SGD with momentum", _momentum_scenario))
    assert verdict.passed == (mistake is None) and verdict.mistake == mistake


def test_an_unknown_error_is_shown_with_a_generic_hint(capsys):
    def typo(model, optimizer, loss_fn, images, labels):
        return los, model(images)  # noqa: F821 - the learner's typo

    result = check_training_step(typo)
    printed = capsys.readouterr().out
    assert not result.passed and result.mistake is None and "NameError" in printed and "new cell" in printed
