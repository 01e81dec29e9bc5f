"""The FER2013 label set, in the dataset's own integer order, and the geometry of its faces."""

EMOTIONS: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES: int = len(EMOTIONS)
IMAGE_SIZE: int = 48  # FER2013 images are 48x48 grayscale
SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
CHANCE_ACCURACY: float = 1.0 / NUM_CLASSES
# Where eyes (with brows) and mouth sit in a 48x48 FER2013-style face, as fractions
# (row0, row1, col0, col1) of the image. FER2013 faces are roughly registered (eyes near row
# 19, mouth near row 36); the synthetic faces put eyes at row ~22 and mouth at ~35, inside the
# same bands. The occlusion corruptions and the Grad-CAM region masses use the same bands.
FACE_REGIONS: dict[str, tuple[float, float, float, float]] = {
    "eyes": (0.29, 0.52, 0.10, 0.90),
    "mouth": (0.65, 0.88, 0.22, 0.78),
}
