"""The command-line trainer: a tiny real run, resume, and one-line errors for bad arguments."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_utils import data

from course_utils.training import distributed
from course_utils.training import cli

ROOT = Path(__file__).resolve().parents[2]

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
    assert "Wrote" in printed and str(out / "checkpoint.pt") in printed
    history = json.loads((out / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1]
    expected = {"precision_at_1", "r_precision", "map_at_r", "one_shot_accuracy", "pixel_one_shot_accuracy"}
    assert expected <= metrics.keys()
    assert metrics["held_out_identities"] == 4 and metrics["epochs"] == 1
    assert json.loads((out / "config.json").read_text())["epochs"] == 1 and (out / "history.json").is_file()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1

    status, printed, _ = run_cli(capsys, *TINY, "--epochs", "2", "--out", str(out), "--resume")
    assert status == 0 and "Resumed" in printed
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [1, 2]


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, *TINY, "--epochs", "1", "--out", str(out))[0] == 0
    status, _, err = run_cli(capsys, *TINY, "--lr", "0.5", "--epochs", "2", "--out", str(out), "--resume")
    assert_one_line_error(status, err, "checkpoint.pt was written by a different run", "lr")


def test_digits_without_p_trains_with_p_equal_to_its_identities_and_says_so(tmp_path, capsys):
    """`--dataset digits` as the README writes it (default P 32 > its 8 training digits), made small."""
    status, printed, _ = run_cli(capsys, "--dataset", "digits", "--width", "4", "--embedding-dim", "8",
                                 "--epochs", "1", "--no-progress", "--out", str(tmp_path / "digits"))  # fmt: skip
    assert status == 0
    assert "--p not given: using P = 8, the number of training identities of digits." in printed.splitlines()
    assert "batches of P=8 x K=4" in printed
    assert json.loads((tmp_path / "digits" / "config.json").read_text())["p"] == 8
    assert json.loads((tmp_path / "digits" / "metrics.json").read_text())["held_out_identities"] == 2


@pytest.mark.parametrize(
    "dataset, loader, identities, pictures, expected_p",
    [
        ("olivetti", "load_olivetti_faces", 40, 10, 32),  # 32 training identities: the default fits
        ("lfw", "load_lfw_people", 62, 20, 32),  # the 62 persons with 20 or more pictures
        ("mnist", "load_mnist", 10, 30, 8),
    ],
)
def test_every_named_dataset_trains_with_the_default_p(
    tmp_path, capsys, monkeypatch, dataset, loader, identities, pictures, expected_p
):
    """The downloads' identity counts, on tiny stand-in pictures (the downloads are not here offline)."""
    labels = torch.arange(identities).repeat_interleave(pictures)
    images = torch.rand(len(labels), 1, 8, 8, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(data, loader, lambda: (images, labels))
    status, printed, _ = run_cli(capsys, "--dataset", dataset, "--width", "4", "--embedding-dim", "8",
                                 "--epochs", "1", "--no-progress", "--out", str(tmp_path / dataset))  # fmt: skip
    assert status == 0
    assert f"batches of P={expected_p} x K=4" in printed
    assert ("--p not given" in printed) == (expected_p < cli.DEFAULT_P)


@pytest.mark.parametrize(
    "arguments, phrases",
    [
        (["--dataset", "digits", "--p", "9"], ["--p 9 is larger than the 8 training identities of digits",
                                               "use --p 8 or less"]),  # fmt: skip
        (["--k", "5", "--pictures-per-identity", "4"], ["--k 5 is larger than the 4 pictures", "use --k 4 or less"]),
        (["--k", "1"], ["--k must be at least 2"]),
        (["--epochs", "0"], ["--epochs must be at least 1"]),
        (["--lr", "0"], ["lr must be a number > 0"]),
        (["--seed", "-1"], ["seed must be a whole number >= 0"]),
        (["--resume"], ["--resume was given but", "does not exist"]),
    ],
)
def test_bad_arguments_get_one_clear_line(tmp_path, capsys, arguments, phrases):
    status, _, err = run_cli(capsys, *TINY, "--out", str(tmp_path / "run"), *arguments)
    assert_one_line_error(status, err, *phrases)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    "arguments, phrase",
    [
        (["--dataset", "imagenet"], "invalid choice: 'imagenet'"),
        (["--epochs", "many"], "invalid int value: 'many'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        ([], "the following arguments are required: --out"),
    ],
)
def test_argparse_reports_bad_flags_with_the_usage(capsys, arguments, phrase):
    with pytest.raises(SystemExit) as stopped:
        cli.main([*TINY, *arguments] + (["--out", "unused"] if arguments else []))
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith("usage: python -m course_utils.training.cli")
    assert phrase in err.strip().splitlines()[-1]


def test_an_existing_run_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    status, _, err = run_cli(capsys, *TINY, "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "already holds a run", "--resume")


def test_gpu_asked_for_but_absent(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status, _, err = run_cli(capsys, *TINY, "--device", "cuda", "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "no CUDA GPU is visible")


@pytest.mark.parametrize(
    "method, error",
    [("__init__", torch.OutOfMemoryError), ("fit", torch.cuda.OutOfMemoryError)],  # the second is an alias
)
def test_out_of_gpu_memory_says_which_flags_make_the_run_smaller(tmp_path, capsys, monkeypatch, method, error):
    def out_of_memory(*args, **kwargs):
        raise error("CUDA out of memory. Tried to allocate 2.00 GiB.\nGPU 0 has a total capacity of 8 GiB.")

    monkeypatch.setattr(cli.Trainer, method, out_of_memory)
    status, _, err = run_cli(capsys, *TINY, "--out", str(tmp_path / "run"))
    assert_one_line_error(
        status, err, "out of GPU memory", "--p or --k", "--image-size", "--device cpu",
        "(OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8 GiB.)",
    )  # fmt: skip


def test_missing_download_while_offline(tmp_path, capsys, monkeypatch):
    def offline():
        raise RuntimeError("Olivetti faces are not in data/cache/olivetti and the network is unreachable.")

    monkeypatch.setattr(data, "load_olivetti_faces", offline, raising=False)
    status, _, err = run_cli(capsys, "--dataset", "olivetti", "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "cannot load dataset 'olivetti'", "network is unreachable")


def test_help_documents_every_flag():
    result = subprocess.run(
        [sys.executable, "-m", "course_utils.training.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    for action in cli.build_parser()._actions:
        assert action.help, f"{action.option_strings} has no help text"
        for option in action.option_strings:
            assert option in help_text


def test_bad_flag_from_a_real_shell_prints_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "course_utils.training.cli", "--dataset", "nope", "--out", "unused"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "invalid choice: 'nope'" in result.stderr and "Traceback" not in result.stderr


def readme_trainer_commands() -> list[tuple[str, list[str]]]:
    """(launcher, trainer flags) of every `python/torchrun ... -m course_utils.training.cli ...` in the README."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")  # join continued lines
    found = re.findall(r"(python|torchrun)[^`]*?-m course_utils\.training\.cli ([^`]*?)\s*(?:`|\n```)", text)
    return [(launcher, shlex.split(flags)) for launcher, flags in found]


README_COMMANDS = readme_trainer_commands()
# Appended to a README command, these make it a seconds-long run (later flags win).
SMALL = [
    "--identities", "40", "--pictures-per-identity", "4", "--image-size", "16", "--width", "4",
    "--embedding-dim", "8", "--epochs", "1", "--device", "cpu", "--no-progress",
]  # fmt: skip


def test_readme_shows_a_python_and_a_torchrun_command():
    assert {launcher for launcher, _ in README_COMMANDS} == {"python", "torchrun"}


@pytest.mark.parametrize("launcher, flags", README_COMMANDS, ids=[launcher for launcher, _ in README_COMMANDS])
def test_readme_command_runs_as_written(tmp_path, capsys, launcher, flags):
    if launcher == "torchrun":
        distributed.torchrun_command(2, flags)  # refuses a bare --p, which torchrun would take as its own
    status, printed, err = run_cli(capsys, *flags, *SMALL, "--out", str(tmp_path / "run"))
    assert status == 0, err
    assert "Wrote" in printed

