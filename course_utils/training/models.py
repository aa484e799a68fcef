"""The embedding network: a picture in, an encoding f(x) on the unit sphere out (FaceNet's L2 normalisation),
so the squared distance d(A,B) = ||f(A) - f(B)||^2 lies in [0, 4] and the margin alpha has a fixed scale."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_utils._validate import check_whole_number



def _small_backbone(in_channels: int, width: int) -> tuple[nn.Sequential, int]:
    """Four 3x3 conv + batch norm + ReLU + 2x2 max-pool blocks (width, 2, 4, 8 x width channels), then pooling."""
    channels = [in_channels, width, 2 * width, 4 * width, 8 * width]
    # ceil_mode keeps odd sizes (and 1x1 maps) valid instead of shrinking them to 0.
    blocks = [nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                            nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=2, ceil_mode=True))
              for c_in, c_out in zip(channels[:-1], channels[1:])]
    # Adaptive pooling makes the network accept any picture size, 8x8 digits included.
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten()), channels[-1]


class EmbeddingNet(nn.Module):
    """Map pictures (B, C, H, W) to float32 encodings (B, embedding_dim).

    Args:
        in_channels: colour channels of the input (3 for faces, 1 for digits).
        embedding_dim: length of each encoding (FaceNet used 128).
        normalize: divide each encoding by its length so it lies on the unit sphere.
        backbone: "small", four conv blocks (the only one; weight sidecars record it).
        width: channels of the first block (16 trains quickly on a CPU, 32 or 64 suits a GPU).
    """

    def __init__(self, in_channels: int = 3, embedding_dim: int = 128, normalize: bool = True,
                 backbone: str = "small", width: int = 32):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("embedding_dim", embedding_dim), ("width", width)):
            check_whole_number(value, name)
        if backbone != "small":
            raise ValueError(f"unknown backbone {backbone!r}; the course's network is backbone='small'.")
        self.in_channels, self.embedding_dim, self.normalize = in_channels, embedding_dim, bool(normalize)
        self.backbone_name, self.width = backbone, width
        self.backbone, feature_dim = _small_backbone(in_channels, width)
        self.head = nn.Linear(feature_dim, embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) pictures -> (B, embedding_dim) float32 encodings (length 1 when normalize)."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}.")
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"images must have shape (B, {self.in_channels}, H, W), got {tuple(images.shape)}. Add a "
                             "batch dimension with images.unsqueeze(0) for a single picture, or build the network "
                             f"with in_channels={images.shape[1] if images.dim() == 4 else '...'}.")
        # float32 even under mixed precision: distances computed from it are not rounded to half precision.
        encodings = self.head(self.backbone(images)).float()
        if self.normalize:
            # eps keeps an all-zero output finite (it stays zero) instead of dividing by 0.
            encodings = F.normalize(encodings, dim=1, eps=torch.finfo(encodings.dtype).eps)
        return encodings

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, embedding_dim={self.embedding_dim}, normalize={self.normalize}, "
                f"backbone={self.backbone_name!r}")
