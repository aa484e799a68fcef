"""Training steps as learners write them: two right ones and the typical mistakes.

Shared by the training-step check's tests and the grading tests."""
import torch

from course_utils.core.losses import TripletLoss


def correct(model, optimizer, loss_fn, images, labels):
    optimizer.zero_grad()
    embeddings = model(images)
    loss = loss_fn(embeddings, labels)
    loss.backward()
    optimizer.step()
    return loss, embeddings


def correct_zero_grad_late(model, optimizer, loss_fn, images, labels):
    embeddings = model(images)
    loss = loss_fn(embeddings, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item(), embeddings.detach()


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
    return correct(model, optimizer, loss_fn, images, labels)[1]


def returns_only_the_loss(model, optimizer, loss_fn, images, labels):
    """What the exercise asked before the contract became (loss, embeddings)."""
    return correct(model, optimizer, loss_fn, images, labels)[0]


def returns_them_swapped(model, optimizer, loss_fn, images, labels):
    loss, embeddings = correct(model, optimizer, loss_fn, images, labels)
    return embeddings, loss


def encodes_again_after_the_step(model, optimizer, loss_fn, images, labels):
    loss, _ = correct(model, optimizer, loss_fn, images, labels)
    return loss, model(images)


def returns_the_images(model, optimizer, loss_fn, images, labels):
    loss, _ = correct(model, optimizer, loss_fn, images, labels)
    return loss, images


def returns_three_things(model, optimizer, loss_fn, images, labels):
    return (*correct(model, optimizer, loss_fn, images, labels), labels)


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
