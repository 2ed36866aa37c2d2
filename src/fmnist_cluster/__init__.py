"""fmnist-cluster: clustering and analysis experiments on Fashion-MNIST."""

__version__ = "0.1.0"

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
