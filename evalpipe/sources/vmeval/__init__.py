"""VMEvalKit data roots: questions with a master manifest, model outputs, evaluator scores."""
