"""Teacher and student networks for the MNIST-1D distillation example.

Both take a float tensor of shape (batch, 40) and return logits (batch, 10),
so they are interchangeable in any training or distillation loop.
"""

from torch import nn


class Teacher(nn.Module):
    """Small 1-D CNN (9,610 parameters).

    Convolutions suit MNIST-1D because the digit templates are randomly
    translated and sheared: weight sharing along the sequence gives the
    translation tolerance an MLP has to learn from data, which is why this
    net reaches ~93% while an MLP of similar size stays near ~66%.
    """

    def __init__(self, channels=32):
        super().__init__()
        self.features = nn.Sequential(
            # Full resolution first layer, then two stride-2 layers that
            # halve the length (40 -> 20 -> 10) while widening the receptive field.
            nn.Conv1d(1, channels, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        # Flatten rather than global-pool: where along the (sheared) series a
        # feature occurs still carries class information.
        self.head = nn.Linear(channels * 10, 10)

    def forward(self, x):
        h = self.features(x.unsqueeze(1))  # (batch, 40) -> (batch, 1, 40)
        return self.head(h.flatten(1))


def build_teacher():
    return Teacher()


def build_student():
    """The 40-100-100-10 ReLU MLP used as the student throughout."""
    return nn.Sequential(
        nn.Linear(40, 100),
        nn.ReLU(),
        nn.Linear(100, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )
