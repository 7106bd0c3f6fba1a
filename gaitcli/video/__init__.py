"""From videos to gait silhouettes, offline on the CPU (docs/video.md).

``readers`` decodes video files, image-sequence folders, cameras and stream URLs into frames;
``backends`` turns a frame into a person mask (background subtraction, MediaPipe, a user's ONNX
model); ``tracking`` follows each walker across frames; ``stream`` and ``silhouettes`` normalise the
tracks through ``gait prepare``'s own pretreatment and write them as a prepared pkl tree.
"""
