"""Training an embedding network: the model, one training step, the trainer with its
checkpoints, pretrained weights, training on several processes and the command line."""
