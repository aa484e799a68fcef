"""The command-line trainer: a tiny real run, resume, and one-line errors for bad arguments."""
import json
import subprocess
import sys

import pytest
import torch

from course_utils import data
from course_utils import train as cli

TINY = [
    "--identities", "20", "--pictures-per-identity", "4", "--image-size", "16", "--p", "4", "--k", "4",
    "--width", "4", "--embedding-dim", "8", "--lr", "0.01", "--no-progress",
]  # fmt: skip


def run_cli(capsys, *arguments):
    status = cli.main(list(arguments))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, *phrases):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for phrase in phrases:
        assert phrase in lines[0]


def test_tiny_run_writes_checkpoint_history_and_metrics_then_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    status, printed, _ = run_cli(capsys, *TINY, "--epochs", "1", "--out", str(out))
    assert status == 0
    assert "Wrote" in printed and str(out / "metrics.json") in printed
    history = json.loads((out / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1]
    expected = {"precision_at_1", "r_precision", "map_at_r", "one_shot_accuracy", "pixel_one_shot_accuracy"}
    assert expected <= metrics.keys()
    assert metrics["held_out_identities"] == 4 and metrics["epochs"] == 1
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1

    status, printed, _ = run_cli(capsys, *TINY, "--epochs", "2", "--out", str(out), "--resume")
    assert status == 0 and "Resumed" in printed
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [1, 2]


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, *TINY, "--epochs", "1", "--out", str(out))[0] == 0
    status, _, err = run_cli(capsys, *TINY, "--lr", "0.5", "--epochs", "2", "--out", str(out), "--resume")
    assert_one_line_error(status, err, "checkpoint.pt was written by a different run", "lr")


def test_digits_run(tmp_path, capsys):
    arguments = ["--dataset", "digits", "--p", "4", "--k", "8", "--width", "4", "--embedding-dim", "8"]
    status, _, _ = run_cli(capsys, *arguments, "--epochs", "1", "--no-progress", "--out", str(tmp_path / "digits"))
    assert status == 0
    assert json.loads((tmp_path / "digits" / "metrics.json").read_text())["held_out_identities"] == 2


@pytest.mark.parametrize(
    "arguments, phrases",
    [
        (["--dataset", "imagenet"], ["invalid choice: 'imagenet'", "see --help"]),
        (["--epochs", "many"], ["invalid int value: 'many'"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
        (["--k", "5", "--pictures-per-identity", "4"], ["--k 5 is larger than --pictures-per-identity 4"]),
        (["--k", "1"], ["--k must be at least 2"]),
        (["--epochs", "0"], ["--epochs must be at least 1"]),
        (["--test-fraction", "1.5"], ["--test-fraction must be between 0 and 1"]),
        (["--alpha", "-0.1"], ["--alpha must be >= 0"]),
        (["--resume"], ["--resume was given but", "does not exist"]),
        (["--mixed-precision", "on", "--device", "cpu"], ["only used on a CUDA GPU"]),
    ],
)
def test_bad_arguments_get_one_clear_line(tmp_path, capsys, arguments, phrases):
    status, _, err = run_cli(capsys, *TINY, "--out", str(tmp_path / "run"), *arguments)
    assert_one_line_error(status, err, *phrases)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_missing_out_and_existing_run(tmp_path, capsys):
    status, _, err = run_cli(capsys, *TINY)
    assert_one_line_error(status, err, "the following arguments are required: --out")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    status, _, err = run_cli(capsys, *TINY, "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "already holds a run", "--resume")


def test_gpu_asked_for_but_absent(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status, _, err = run_cli(capsys, *TINY, "--device", "cuda", "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "no CUDA GPU is visible")


def test_missing_download_while_offline(tmp_path, capsys, monkeypatch):
    def offline():
        raise RuntimeError("Olivetti faces are not in data/cache/olivetti and the network is unreachable.")

    monkeypatch.setattr(data, "load_olivetti_faces", offline, raising=False)
    status, _, err = run_cli(capsys, "--dataset", "olivetti", "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "cannot load dataset 'olivetti'", "network is unreachable")


def test_help_documents_every_flag():
    result = subprocess.run(
        [sys.executable, "-m", "course_utils.train", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    for action in cli.build_parser()._actions:
        assert action.help, f"{action.option_strings} has no help text"
        for option in action.option_strings:
            assert option in help_text


def test_bad_flag_from_a_real_shell_prints_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "course_utils.train", "--dataset", "nope", "--out", "unused"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
