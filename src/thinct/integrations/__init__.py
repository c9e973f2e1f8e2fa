"""thinct inside other tools' pipelines: TorchIO, MONAI and nnU-Net."""
