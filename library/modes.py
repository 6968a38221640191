"""What a function is being called for, as in tf.estimator."""


class ModeKeys:
    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "predict"
