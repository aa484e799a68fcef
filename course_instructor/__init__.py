"""Instructor tooling, apart from the learner's package: student copies and the book
(``copies``), classroom grading with nbgrader (``grading``) and its hidden tests
(``hidden_tests``). A learner's notebooks never import it."""
