"""Hook implementations of visionatlas-train: the ``train`` and ``evaluate`` commands."""
