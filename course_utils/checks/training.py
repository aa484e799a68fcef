"""Check of notebook 06's exercise: training_step(model, optimizer, loss_fn, images, labels) -> (loss, embeddings),
the contract of `course_utils.training.step.training_step`. The learner's step and the course's run on
identical copies of a small network with stale gradients; weights, then answers are compared, and a
difference is explained by replaying the typical mistakes."""
from __future__ import annotations

import math
from dataclasses import replace
from functools import partial
from typing import Callable, NamedTuple

import torch
from torch import nn

from course_utils.checks.runner import Case, CheckResult, ErrorHint, Exercise, run_check
from course_utils.core.losses import TripletLoss
from course_utils.training.step import training_step as reference_training_step

EXERCISE = "training_step"
# Both sides run the same float32 operations; the tolerance only absorbs a different order.
RELATIVE_TOLERANCE = 1e-5
ABSOLUTE_TOLERANCE = 1e-6
WHY_BOTH = ("the loop records the loss, and the trainer measures d(A,P) and d(A,N) on the embeddings without "
            "encoding the batch a second time.")


def _scenario():
    """A small network, an optimiser with stale gradients, a loss and two P x K batches."""
    generator = torch.Generator().manual_seed(6)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
            parameter.grad = torch.full_like(parameter, 0.5)  # what an earlier backward() left, if nobody cleared it
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    batches = [(torch.rand(6, 3, 2, 2, generator=generator), labels) for _ in range(2)]
    return model, torch.optim.SGD(model.parameters(), lr=0.1), TripletLoss(alpha=0.5, mining="all"), batches


class Run(NamedTuple):
    """What a step function did on a scenario: its answer to each batch, the final weights and gradients."""

    answers: list
    weights: list[torch.Tensor]
    gradients: list[torch.Tensor | None]
    scenario: Callable


def _run(step, scenario: Callable = _scenario) -> Run:
    model, optimizer, loss_fn, batches = scenario()
    answers = [step(model, optimizer, loss_fn, images.clone(), labels.clone()) for images, labels in batches]
    return Run(answers, [p.detach().clone() for p in model.parameters()],
               [None if p.grad is None else p.grad.clone() for p in model.parameters()], scenario)


def _step_without_zero_grad(model, optimizer, loss_fn, images, labels):
    loss = loss_fn(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss


def _embeddings_after_the_step(model, optimizer, loss_fn, images, labels):
    loss, _ = reference_training_step(model, optimizer, loss_fn, images, labels)
    return loss, model(images).detach()


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.allclose(x, y, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE) for x, y in zip(a, b))


def _close(answer, expected: torch.Tensor) -> bool:
    return (isinstance(answer, torch.Tensor) and answer.shape == expected.shape
            and torch.allclose(answer.detach().float(), expected, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE))


def _same_loss(answer, loss: torch.Tensor) -> bool:
    number = isinstance(answer, (int, float)) and not isinstance(answer, bool)
    if not number and not (isinstance(answer, torch.Tensor) and answer.numel() == 1):
        return False
    return math.isclose(float(torch.as_tensor(answer).detach()), float(loss.detach()), rel_tol=RELATIVE_TOLERANCE,
                        abs_tol=ABSOLUTE_TOLERANCE)


def _describe(answer) -> str:
    if isinstance(answer, torch.Tensor):
        return f"a tensor of shape {tuple(answer.shape)}"
    if isinstance(answer, (tuple, list)):
        return f"a {type(answer).__name__} of {len(answer)}: ({', '.join(_describe(x) for x in answer)})"
    return f"{answer!r}"


def _fail(headline: str, hint: str, mistake: str | None) -> CheckResult:
    return CheckResult(EXERCISE, False, f"Not yet: {EXERCISE} {headline}\n  Hint: {hint}", mistake)


def _diagnose_weights(weights, gradients, initial, scenario: Callable = _scenario) -> CheckResult:
    if _same(weights, _run(_step_without_zero_grad, scenario).weights):
        return _fail("moves the weights too far: the gradients of earlier steps are added to this one.",
                     "PyTorch adds each backward() into .grad instead of replacing it. Call optimizer.zero_grad() "
                     "before loss.backward() in every step.", "forgot_zero_grad")
    if _same(weights, initial) and all(g is None or not bool(g.any()) for g in gradients):
        return _fail("leaves the weights unchanged and no gradient behind.",
                     "call loss.backward() to compute the gradients, after optimizer.zero_grad() and before "
                     "optimizer.step() (zero_grad between backward and step would erase them).", "no_backward")
    if _same(weights, initial):
        return _fail("computes gradients but leaves the weights unchanged.",
                     "finish with optimizer.step(), after loss.backward(): step() is what moves the weights "
                     "along the gradients.", "no_step")
    return _fail("changes the weights differently from one step of gradient descent on the triplet loss.",
                 "embed the images with model(images), give those embeddings and the labels to the loss_fn you "
                 "were given, then zero_grad, backward and step, each once per call.", "wrong_update")


def _diagnose_answer(answer, loss: torch.Tensor, embeddings: torch.Tensor, late: torch.Tensor) -> CheckResult | None:
    """None when the answer is (loss, embeddings), else why not (`late`: a second forward pass's embeddings)."""
    if answer is None:
        return _fail("updates the weights correctly but returns None.",
                     f"end with `return loss, embeddings`: {WHY_BOTH}", "returned_none")
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        for only, same in (("loss", _same_loss), ("embeddings", _close)):
            if same(answer, loss if only == "loss" else embeddings):
                return _fail(f"updates the weights correctly but returns only the {only}.",
                             f"return two things, `return loss, embeddings`: {WHY_BOTH}", f"returned_only_{only}")
        return _fail(f"updates the weights correctly but returns {_describe(answer)}.",
                     f"return the pair `loss, embeddings`: {WHY_BOTH}", "wrong_return")
    first, second = answer
    if _close(first, embeddings) and _same_loss(second, loss):
        return _fail("returns (embeddings, loss): the two are the other way round.",
                     "return the loss first: `return loss, embeddings`, the order the trainer unpacks.",
                     "swapped_return")
    if not _same_loss(first, loss):
        return _fail(f"updates the weights correctly but returns {_describe(first)} as the loss, "
                     f"instead of the loss {float(loss):.4f}.",
                     "return the loss of this batch (the tensor loss_fn gave you) first.", "wrong_return")
    if _close(second, late):
        return _fail("returns the embeddings of a second forward pass, made after optimizer.step().",
                     "return the embeddings the loss was computed on (`embeddings = model(images)` before the "
                     "loss): encoding again costs a forward pass and gives the already-updated network's encodings.",
                     "embeddings_after_step")
    if not _close(second, embeddings):
        return _fail(f"returns {_describe(second)} as the embeddings, not those of model(images) "
                     f"(shape {tuple(embeddings.shape)}).",
                     "return the tensor `embeddings = model(images)` that you gave to loss_fn.", "wrong_return")
    return None


def _verdict(run: Run, expected: Run) -> CheckResult | None:
    if not _same(run.weights, expected.weights):
        initial = [p.detach().clone() for p in run.scenario()[0].parameters()]
        return _diagnose_weights(run.weights, run.gradients, initial, run.scenario)
    late = _run(_embeddings_after_the_step, run.scenario).answers
    for answer, (loss, embeddings), (_, late_embeddings) in zip(run.answers, expected.answers, late):
        wrong = _diagnose_answer(answer, loss, embeddings, late_embeddings)
        if wrong is not None:
            return wrong
    return None


TRAINING_STEP = Exercise(
    name=EXERCISE,
    returns="the pair (loss, embeddings) of the batch",
    expected=lambda: _run(reference_training_step),
    cases=(Case("two batches of 3 persons x 2 pictures, on a small network with stale gradients", ()),),
    mistakes=(),
    error_hints=(ErrorHint("detached", "does not require grad",
                           "the loss is cut off from the network, so backward() has nothing to differentiate. Do "
                           "not call .detach(), .item() or torch.tensor(...) on the embeddings or the loss before "
                           "loss.backward(), and do not run the step inside torch.no_grad()."),),
    needs_gradient=False,
    call=_run,
    matches=lambda run, expected: _verdict(run, expected) is None,
    wrong_form=lambda exercise, case, run, expected: None,
    explain=lambda exercise, number, runs, expected: _verdict(runs[number], expected),
    passed="is correct. Two steps moved the weights exactly like the course's training_step, with stale "
           "gradients cleared first, and returned each batch's loss and embeddings.",
)


def training_step_exercise(description: str, scenario: Callable) -> Exercise:
    """The exercise on another scenario: a function returning model, optimizer, loss_fn, [(images, labels), ...]."""
    return replace(TRAINING_STEP, cases=(Case(description, ()),), call=partial(_run, scenario=scenario),
                   expected=partial(_run, reference_training_step, scenario=scenario))


def check_training_step(function) -> CheckResult:
    """Check a learner's training_step(model, optimizer, loss_fn, images, labels) -> (loss, embeddings)."""
    return run_check(function, TRAINING_STEP)
