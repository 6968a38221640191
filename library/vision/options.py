"""The kit's keys, for a project's ``hyperparameters.py`` (no TensorFlow here): ``RUN_OPTIONS``
(an image classifier's) or ``MASK_RUN_OPTIONS`` (a segmentation's) go in project.yaml,
``HYPERPARAMETERS`` (the classes) in hyperparameters.yaml."""

from library.config.schema import Field

LABELS_FILE = Field(
    "labels_file", str, "", "class names, one per line; empty: labels.txt beside train_files"
)
IMAGE_KEY = Field(
    "image_key", str, "image/encoded", "feature key of the encoded image in the records"
)
LABEL_KEY = Field(
    "label_key", str, "image/class/label", "feature key of the int64 label in the records"
)
MASK_KEY = Field(
    "mask_key",
    str,
    "image/segmentation/class/encoded",
    "feature key of the encoded mask (PNG) in the records",
)
RUN_OPTIONS = (LABELS_FILE, IMAGE_KEY, LABEL_KEY)
MASK_RUN_OPTIONS = (IMAGE_KEY, MASK_KEY)

NUM_CLASSES = Field("num_classes", int, 0, "classes; 0: count the class names", interval="[0, inf)")
CLASS_NAMES = Field(
    "class_names", list[str], [], "the classes, in label order; []: the lines of labels_file"
)
HYPERPARAMETERS = (NUM_CLASSES, CLASS_NAMES)
