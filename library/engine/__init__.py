"""The engine: the Estimator facade, the training state, the train and eval steps, the outer
loop and its actions, the evaluator, durations in steps, the distribution strategy."""
