"""The image-classification kit, on top of the task-neutral core: a project that classifies
images uses it through the same doors (``library/contract.py``) any project has. The core
never imports it.

    options.py   its keys (labels_file, image_key, label_key; num_classes, class_names)
    records.py   the image record schema (TensorFlow's own readers' keys)
    convert.py   image folders -> sharded records (convert_dataset.py)
    images.py    decode, crop (the crop window returned, so boxes can follow) and flip
    classes.py   class names from a labels file (prepare_fn), class names of predictions
    serving.py   the exported model's encoded-image input, image files for predict, the
                 record whose image does not decode (diagnose_fn)
    figures.py   confusion matrix, sample predictions, input pictures and first-layer
                 filters in TensorBoard (recorders for callbacks_fn)

Importing this package loads nothing: ``options`` imports no TensorFlow, for
``project/hyperparameters.py``.
"""
