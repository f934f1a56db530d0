"""visionatlas-timm: every timm model that produces feature maps as a ``timm/<model>`` backbone."""
