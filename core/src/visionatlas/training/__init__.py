"""The contract between task plugins and training engines (``TaskTraining``,
``CustomFitTraining``) and the image and dataset readers task plugins share."""
