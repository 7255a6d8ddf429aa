"""The method: backbones, the CAM network, CAMs, the paper's loss, training and metrics."""
