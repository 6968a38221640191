"""The kit's keys, for a project's ``project/hyperparameters.py`` (no TensorFlow here):
``RUN_OPTIONS`` go in project.yaml, ``HYPERPARAMETERS`` in hyperparameters.yaml."""

from library.config.schema import Field

# fmt: off
RUN_OPTIONS = (
    Field("labels_file", str, "", "class names, one per line; empty: labels.txt beside train_files"),
    Field("image_key", str, "image/encoded", "feature key of the encoded image in the records"),
    Field("label_key", str, "image/class/label", "feature key of the int64 label in the records"),
)
HYPERPARAMETERS = (
    Field("num_classes", int, 0, "classes; 0: count the class names", interval="[0, inf)"),
    Field("class_names", list[str], [], "the classes, in label order; []: the lines of labels_file"),
)
# fmt: on
