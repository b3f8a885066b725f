"""vivit-tl: ViViT + TokenLearner/TokenFuser video classification in PyTorch."""

__version__ = "0.1.0"
