"""StyleGAN2 training and fine-tuning (``train_generator.py``): losses, regularizers, augmentation, G EMA,
the image data and the training loop, with checkpoints in the rosinality layout."""
