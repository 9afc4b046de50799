"""Encoders that turn text, images and faces into vectors, all working offline.

Heavy dependencies (torch, onnxruntime, dlib) are imported lazily inside each encoder.
"""
