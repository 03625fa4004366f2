"""The TensorFlow / Keras 3 adapter. Importing any module below imports tensorflow and keras."""
