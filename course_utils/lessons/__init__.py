"""What the notebooks use beside the lesson's own code: notebook set-up, the experiments,
plots and interactive explorers. Nothing here is needed to train or use a model."""
