"""Check of notebook 06's exercise: training_step(model, optimizer, loss_fn, images, labels) -> (loss, embeddings),
run beside course_utils.training.step.training_step on identical small networks with stale gradients."""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Callable, NamedTuple

import torch
from torch import nn

from course_utils.checks.runner import Case, CheckResult, Exercise, fail, run_check, same, show_value
from course_utils.core.losses import TripletLoss
from course_utils.training.step import training_step as reference_training_step

EXERCISE = "training_step"


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


# What a step function did on a scenario: its answer to each batch, the final weights and gradients.
Run = NamedTuple("Run", [("answers", list), ("weights", tuple), ("gradients", list), ("scenario", Callable)])


def _run(step, scenario: Callable = _scenario) -> Run:
    model, optimizer, loss_fn, batches = scenario()
    answers = [step(model, optimizer, loss_fn, images.clone(), labels.clone()) for images, labels in batches]
    return Run(answers, tuple(p.detach().clone() for p in model.parameters()), [p.grad for p in model.parameters()],
               scenario)


def _step_without_zero_grad(model, optimizer, loss_fn, images, labels):
    loss_fn(model(images), labels).backward()
    optimizer.step()


def _as_tensors(answer):
    """The answer with a loss read by .item() made a tensor again, and a list made a tuple."""
    if isinstance(answer, (tuple, list)):
        return tuple(map(_as_tensors, answer))
    return torch.tensor(answer) if isinstance(answer, float) else answer


def _diagnose_weights(run: Run) -> CheckResult:
    """Why the weights differ from one step of gradient descent per batch."""
    unchanged = same(run.weights, tuple(p.detach().clone() for p in run.scenario()[0].parameters()))
    if same(run.weights, _run(_step_without_zero_grad, run.scenario).weights):
        return fail(EXERCISE, "moves the weights too far: the gradients of earlier steps are added to this one.",
                    "PyTorch adds each backward() into .grad instead of replacing it. Call optimizer.zero_grad() "
                    "before loss.backward() in every step.", "forgot_zero_grad")
    if unchanged and all(g is None or not bool(g.any()) for g in run.gradients):
        return fail(EXERCISE, "leaves the weights unchanged and no gradient behind.",
                    "call loss.backward() to compute the gradients, after optimizer.zero_grad() and before "
                    "optimizer.step() (zero_grad between backward and step would erase them).", "no_backward")
    if unchanged:
        return fail(EXERCISE, "computes gradients but leaves the weights unchanged.",
                    "finish with optimizer.step(), after loss.backward(): step() moves the weights.", "no_step")
    return fail(EXERCISE, "changes the weights differently from one step of gradient descent on the triplet loss.",
                "embed the images with model(images), give those embeddings and the labels to the loss_fn you "
                "were given, then zero_grad, backward and step, each once per call.", "wrong_update")


def _diagnose_answer(answer, expected: tuple[torch.Tensor, torch.Tensor]) -> CheckResult | None:
    """None when the answer is the expected (loss, embeddings), else why not."""
    answer = _as_tensors(answer)
    if same(answer, expected):
        return None
    if same(answer, expected[0]):
        return fail(EXERCISE, "updates the weights correctly but returns only the loss.",
                    "return both, `return loss, embeddings`: the trainer measures distances on the embeddings without "
                    "encoding the batch a second time.", "returned_only_loss")
    return fail(EXERCISE, f"updates the weights correctly but returns {show_value(answer)}.",
                "end with `return loss, embeddings`: the loss first, then the embeddings of model(images) that you "
                "gave loss_fn (not a second forward pass after optimizer.step()).", "wrong_return")


def _verdict(run: Run, expected: Run) -> CheckResult | None:
    if not same(run.weights, expected.weights):
        return _diagnose_weights(run)
    return next((wrong for wrong in map(_diagnose_answer, run.answers, expected.answers) if wrong is not None), None)


TRAINING_STEP = Exercise(
    name=EXERCISE,
    returns="the pair (loss, embeddings) of the batch",
    expected=lambda: _run(reference_training_step),
    cases=(Case("two batches of 3 persons x 2 pictures, on a small network with stale gradients", ()),),
    needs_gradient=False,
    call=_run,
    matches=lambda run, expected: _verdict(run, expected) is None,
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
