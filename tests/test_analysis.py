"""sarvit.analysis library: the model's attention maps and the attention figure."""
import numpy as np
import torch

import sarvit
from sarvit.analysis import attention_figure, attention_maps

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5)


def test_attention_maps_shapes():
    torch.manual_seed(0)
    model = sarvit.create_model("vit_tiny_patch16_224", **TINY).eval()
    logits, S, A = attention_maps(model, torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 5) and S.shape == A.shape == (2, 3, 4, 4)
    assert (A >= 0).all() and (A.sum(dim=(-2, -1)) <= 1 + 1e-5).all()


# ----------------------------------------------------------------------------------------- figure
def test_attention_figure_layout():
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    attention = torch.rand(7, 4, 4)
    foreground = torch.zeros(32, 32, dtype=torch.bool)
    foreground[8:24, 8:24] = True
    figure = attention_figure(image, attention, torch.rand(7), foreground=foreground,
                              head_jaccard=[0.1] * 7, title="x")
    # 7 heads at 6 per row: 1 image row + 2 groups x (raw, thresholded) = 5 rows x 6 columns, + 7 colour bars
    assert len(figure.axes) == 30 + 7
    titles = [axis.get_title() for axis in figure.axes]
    assert titles[0] == "image" and titles[1] == "ground-truth foreground"
    assert titles[6].startswith("head 0\nSE=") and titles[6].endswith("(S > mean)") and titles[12].startswith("60% mass:")
    assert titles[18].startswith("head 6\nSE=")
    legend = " ".join(text.get_text() for text in figure.axes[5].texts)  # which threshold each row uses
    assert "S > mean(S)" in legend and "60% of the attention" in legend
