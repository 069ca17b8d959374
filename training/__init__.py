"""nanoGPT's train.py in TensorFlow: hyperparameters and presets, the input pipeline, the loop on tf.distribute."""
