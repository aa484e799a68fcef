"""The mining explorer: its figure and its widget, driven without a browser."""
import pytest
import torch
from matplotlib.figure import Figure

from course_utils.core.distances import pairwise_distances
from course_utils.core.mining import mine_triplets
from course_utils.lessons.explorers import MiningExplorer, triplet_kinds_figure
from course_utils.lessons.triplet_kinds import triplet_kind_counts

D_AP = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5])
D_AN = torch.tensor([0.4, 0.5, 0.6, 0.75, 0.9])


def test_figure_title_and_legend_carry_the_counts():
    figure = triplet_kinds_figure(D_AP, D_AN, alpha=0.25)
    ax = figure.axes[0]
    assert ax.get_title() == "easy: 2, semi-hard: 1, hard: 2"
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "easy: 2" in labels and "semi-hard: 1" in labels and "hard: 2" in labels
    assert "squared distance" in ax.get_xlabel() and "squared distance" in ax.get_ylabel()


def test_slider_recolours_and_updates_the_label():
    explorer = MiningExplorer(D_AP, D_AN, alpha=0.25)
    (slider,) = explorer.sliders
    assert slider.description == "alpha"
    assert explorer.label.value == "easy: 2, semi-hard: 1, hard: 2"
    before = explorer.picture.value
    slider.value = 0.0
    assert explorer.label.value == triplet_kind_counts(D_AP, D_AN, 0.0).text == "easy: 4, semi-hard: 0, hard: 1"
    assert bytes(explorer.picture.value) != bytes(before) and bytes(explorer.picture.value).startswith(b"\x89PNG")


def test_a_real_batch_gives_one_point_per_valid_triplet():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(12, 4, generator=generator), dim=1)
    labels = torch.arange(4).repeat_interleave(3)
    dist, (anchor, positive, negative) = pairwise_distances(embeddings), mine_triplets(embeddings, labels, "all")
    d_ap, d_an = dist[anchor, positive], dist[anchor, negative]
    assert len(d_ap) == len(d_an) == 4 * 3 * 2 * 9
    assert triplet_kind_counts(d_ap, d_an, 0.2).total == len(d_ap)
    figure = triplet_kinds_figure(d_ap, d_an, 0.2)
    assert isinstance(figure, Figure)
    assert sum(len(c.get_offsets()) for c in figure.axes[0].collections[1:]) == len(d_ap)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="slider goes up to 1.0"):
        MiningExplorer(D_AP, D_AN, alpha=1.5)
    with pytest.raises(ValueError, match="one entry per triplet"):
        MiningExplorer(D_AP, D_AN[:3])
