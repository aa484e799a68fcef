"""The notebooks' set-up call and the claim line their checked cells compare."""
import pytest
import torch

from course_utils.lessons.notebook import check_claim, setup


def test_a_claim_that_holds_prints_one_stable_line(capsys):
    assert check_claim("semi-hard beats random", 0.81 > 0.65, measured="0.81 vs 0.65") is None
    assert capsys.readouterr().out == "holds: semi-hard beats random\n"


def test_a_claim_that_fails_says_so_with_the_measured_numbers(capsys):
    check_claim("semi-hard beats random", torch.tensor(0.6) > 0.65, measured="0.60 vs 0.65")
    assert capsys.readouterr().out == "DOES NOT HOLD on this run: semi-hard beats random (measured: 0.60 vs 0.65)\n"


def test_setup_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="unknown mode 'fast'"):
        setup(mode="fast")


def test_course_mode_picks_the_mode_when_auto(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_MODE", "full")
    settings = setup(seed=3, mode="auto", device="cpu")
    assert not settings.quick and settings.seed == 3
    assert capsys.readouterr().out == "Course set-up: device=cpu, mode=full, seed=3\n"
