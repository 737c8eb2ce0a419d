"""Identity loss (pSp): 1 - cosine similarity of face-recognition embeddings, interchangeable backbones.

Backbones (each from a local weights file, frozen):

- ``ir_se50`` (default): the ArcFace IR-SE50 of pSp, ``model_ir_se50.pth``, 112² input.
- ``arcface_onnx``: insightface recognition models (``w600k_r50.onnx``, ``w600k_mbf.onnx``) converted with
  ``onnx2torch`` (optional dependency). insightface feeds them ``cv2.dnn.blobFromImage(bgr, 1/127.5, (112, 112),
  (127.5,) * 3, swapRB=True)``: NCHW **RGB** with (x - 127.5) / 127.5, i.e. exactly our [-1, 1] RGB tensors
  (models whose graph starts with Sub/Mul nodes normalise internally; the w600k models do not).
- ``facenet``: facenet-pytorch's InceptionResnetV1 (VGGFace2, ``20180402-114759-vggface2.pt``), 160² input
  with fixed standardisation (x - 127.5) / 128.

Images are ``[B, 3, H, W]`` in [-1, 1], FFHQ-aligned: resized to 256² (average-pooled when larger), cropped
to pSp's face region ``[35:223, 32:220]`` and resized to the backbone's input size.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from render2style.criteria.resize import resize_image
from render2style.pretrained import (
    KNOWN_WEIGHTS,
    MissingWeightsError,
    load_torch_file,
    require_known_weights,
    require_weights,
)

FACE_CROP = (slice(35, 223), slice(32, 220))  # rows, columns of the face in a 256² aligned image (pSp)
INPUT_SIZES = {"ir_se50": 112, "arcface_onnx": 112, "facenet": 160}


def _load_state_dict(net: nn.Module, path: os.PathLike, what: str, drop_prefix: str | None = None) -> None:
    state = load_torch_file(path, f"a {what} state dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a {what} state dict, got {type(state).__name__}")
    if drop_prefix:
        state = {k: v for k, v in state.items() if not k.startswith(drop_prefix)}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: not a {what} state dict ({e})") from e


def load_ir_se50(path: str | os.PathLike | None) -> nn.Module:
    """pSp's ArcFace IR-SE50 from ``model_ir_se50.pth`` (strict keys)."""
    from render2style.encoders.irse import Backbone

    path = require_known_weights(path, "ir_se50")
    net = Backbone(112, 50, "ir_se", 0.4, True)
    _load_state_dict(net, path, "IR-SE50 (model_ir_se50.pth)")
    return net


def load_arcface_onnx(path: str | os.PathLike | None) -> nn.Module:
    """An insightface ArcFace ONNX model (``w600k_r50.onnx``, ``w600k_mbf.onnx``) as a torch module."""
    r50, mbf = KNOWN_WEIGHTS["arcface_r50"], KNOWN_WEIGHTS["arcface_mbf"]
    if path is None:
        raise MissingWeightsError(f"the arcface_onnx identity backbone needs an ONNX file: {r50.file} "
                                  f"({r50.source}) or {mbf.file} ({mbf.source})")
    path = require_weights(path, f"{r50.file} or {mbf.file}", f"{r50.source}; or {mbf.source}")
    try:
        import onnx2torch
    except ImportError as e:
        raise ImportError("the arcface_onnx identity backbone needs onnx2torch: "
                          "pip install \"render2style[onnx]\" (in a working copy: pip install -e \".[onnx]\")") from e
    try:
        return onnx2torch.convert(str(path))
    except Exception as e:  # onnx raises its own error types for bad files
        raise ValueError(f"{path}: cannot convert this ONNX model to torch ({e})") from e


def load_facenet(path: str | os.PathLike | None) -> nn.Module:
    """facenet-pytorch's InceptionResnetV1 with VGGFace2 weights from a local file (no download)."""
    from facenet_pytorch import InceptionResnetV1

    path = require_known_weights(path, "facenet_vggface2")
    net = InceptionResnetV1(pretrained=None, classify=False)
    _load_state_dict(net, path, "facenet InceptionResnetV1", drop_prefix="logits.")  # classifier unused
    return net


LOADERS = {"ir_se50": load_ir_se50, "arcface_onnx": load_arcface_onnx, "facenet": load_facenet}


class IdentityEncoder(nn.Module):
    """Unit 512-d identity embeddings of face images in [-1, 1] (frozen, eval mode).

    ``crop=True``: images are FFHQ-aligned faces (pSp's crop is applied); ``crop=False``: images are
    already tight face crops and are only resized to the backbone's input size.
    """

    def __init__(self, backbone: str = "ir_se50", weights: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu", crop: bool = True):
        super().__init__()
        if backbone not in LOADERS:
            raise ValueError(f"identity backbone must be one of {sorted(LOADERS)}, got {backbone!r}")
        self.backbone, self.crop, self.input_size = backbone, crop, INPUT_SIZES[backbone]
        self.net = LOADERS[backbone](weights).eval().requires_grad_(False).to(device)

    def train(self, mode: bool = True) -> IdentityEncoder:
        super().train(mode)
        self.net.eval()  # BatchNorm statistics and dropout of the pretrained net stay fixed
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W], got {tuple(images.shape)}")
        if self.crop:
            images = resize_image(images, 256)[(..., *FACE_CROP)]
        images = resize_image(images, self.input_size)
        if self.backbone == "facenet":
            images = images * (127.5 / 128.0)  # [-1, 1] -> (pixel - 127.5) / 128
        return F.normalize(self.net(images).flatten(1).float(), dim=1)


class IDLoss(nn.Module):
    """pSp's identity loss: mean of 1 - cos(E(y_hat), E(y)); logs the improvement over the input x."""

    def __init__(self, backbone: str = "ir_se50", weights: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.encoder = IdentityEncoder(backbone, weights, device)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """y_hat: output, y: target, x: input (only its RGB channels are used).
        Returns (loss, {'loss_id', 'id_improve' = mean(cos(y_hat, y) - cos(y, x))}), the logs as detached
        0-dim tensors (no host sync in the training step)."""
        feats_hat = self.encoder(y_hat)
        with torch.no_grad():
            feats_y = self.encoder(y)
            feats_x = self.encoder(x[:, :3])
        sim_target = (feats_hat * feats_y).sum(dim=1)
        sim_views = (feats_y * feats_x).sum(dim=1)
        loss = (1.0 - sim_target).mean()
        improve = (sim_target.detach() - sim_views).mean()
        return loss, {"loss_id": loss.detach(), "id_improve": improve}
