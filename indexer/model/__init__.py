"""The model: the encoder and its precision ladder, weights, the plain ViT and timm's transform
redone, the prepared-model cache, the compiled graph, CPU features, preprocessing on the device,
and the ImageNet label head."""
