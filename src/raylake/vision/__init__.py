"""Computer vision on the lake: image tables streamed through Ray Data (decode and
augment in CPU tasks) into a ResNet-style CNN on Ray Train (DDP), registered as an
``image_classifier`` model with its table version. See docs/vision.md."""
