"""The training-step check: right code passes, each typical mistake gets its own hint."""
import pytest
import torch

from course_utils.checks_training import _run, _scenario, check_training_step
from course_utils.losses import TripletLoss
from course_utils.training import training_step as reference_training_step


def correct(model, optimizer, loss_fn, images, labels):
    optimizer.zero_grad()
    embeddings = model(images)
    loss = loss_fn(embeddings, labels)
    loss.backward()
    optimizer.step()
    return loss


def correct_zero_grad_late(model, optimizer, loss_fn, images, labels):
    loss = loss_fn(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def stub(model, optimizer, loss_fn, images, labels):
    # YOUR CODE HERE
    raise NotImplementedError()


def no_zero_grad(model, optimizer, loss_fn, images, labels):
    loss = loss_fn(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss


def no_step(model, optimizer, loss_fn, images, labels):
    optimizer.zero_grad()
    loss = loss_fn(model(images), labels)
    loss.backward()
    return loss


def no_backward(model, optimizer, loss_fn, images, labels):
    optimizer.zero_grad()
    loss = loss_fn(model(images), labels)
    optimizer.step()
    return loss


def zero_grad_between_backward_and_step(model, optimizer, loss_fn, images, labels):
    loss = loss_fn(model(images), labels)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss


def detached(model, optimizer, loss_fn, images, labels):
    optimizer.zero_grad()
    loss = loss_fn(model(images).detach(), labels)
    loss.backward()
    optimizer.step()
    return loss


def inside_no_grad(model, optimizer, loss_fn, images, labels):
    optimizer.zero_grad()
    with torch.no_grad():
        loss = loss_fn(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss


def returns_nothing(model, optimizer, loss_fn, images, labels):
    correct(model, optimizer, loss_fn, images, labels)


def returns_embeddings(model, optimizer, loss_fn, images, labels):
    optimizer.zero_grad()
    embeddings = model(images)
    loss_fn(embeddings, labels).backward()
    optimizer.step()
    return embeddings


def own_loss(model, optimizer, loss_fn, images, labels):
    optimizer.zero_grad()
    loss = TripletLoss(mining="hard")(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss


def two_steps(model, optimizer, loss_fn, images, labels):
    for _ in range(2):
        loss = correct(model, optimizer, loss_fn, images, labels)
    return loss


def test_scenario_has_a_positive_loss_and_stale_gradients():
    model, optimizer, loss_fn, batches = _scenario()
    assert all(p.grad is not None and bool(p.grad.any()) for p in model.parameters())
    losses = [float(loss) for loss, _ in _run(reference_training_step)[0]]
    assert all(loss > 0 for loss in losses)


@pytest.mark.parametrize("function", [correct, correct_zero_grad_late])
def test_correct_steps_pass(function, capsys):
    result = check_training_step(function)
    assert result.passed and result.mistake is None
    assert capsys.readouterr().out.startswith("Well done")


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
        (returns_nothing, "returned_none", "return loss"),
        (returns_embeddings, "wrong_return", "return the loss"),
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


def test_passing_the_result_instead_of_the_function():
    with pytest.raises(TypeError, match="pass the function itself"):
        check_training_step(0.5)
