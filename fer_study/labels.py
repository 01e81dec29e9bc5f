"""The FER2013 label set, in the dataset's own integer order."""

EMOTIONS: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES: int = len(EMOTIONS)
IMAGE_SIZE: int = 48  # FER2013 images are 48x48 grayscale
SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
CHANCE_ACCURACY: float = 1.0 / NUM_CLASSES
