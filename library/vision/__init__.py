"""The image kit, on top of the task-neutral core: a project that classifies images, finds
boxes or segments them uses it through the same doors (``library/contract.py``) any project
has. The core never imports it.

    options.py   its keys (labels_file, image_key, label_key, mask_key; num_classes,
                 class_names)
    records.py   the image record schema (TensorFlow's own readers' keys); parsing a label
                 of any kind (a class, a float, a float vector, an encoded mask); a writer of
                 an image with any other features, PNG bytes of a mask
    convert.py   image folders -> sharded records (convert_dataset.py)
    images.py    decode to 1 or 3 channels, crop (the crop window returned) and flip, and
                 the boxes and masks that follow them; masks resized by the nearest pixel
    classes.py   class names from a labels file (prepare_fn), class names of predictions
    serving.py   the exported model's encoded-image input, image files for predict, the
                 record whose image, mask or any declared encoded key does not decode or is
                 missing (diagnose_fn)
    figures.py   confusion matrix, sample predictions, input pictures and first-layer
                 filters; masks (image, true, predicted) and boxes (true, predicted) in
                 TensorBoard and the best folder (recorders for callbacks_fn)
    sample.py    a few striped images of two classes, as records: an image classifier's
                 sample_fn

Importing this package loads nothing: ``options`` imports no TensorFlow, for
``project/hyperparameters.py``.
"""
