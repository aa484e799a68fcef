"""environment.yml must not drift from pyproject.toml: it may only install the package itself."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_installs_the_package_and_repeats_no_dependency():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert {_name(d) for d in conda} <= {"python", "pip"}, f"conda packages besides python and pip: {conda}"
    assert len(pip_sections) == 1
    pip = [line for line in pip_sections[0] if not line.startswith("--")]
    installs_package = [line for line in pip if line.startswith("-e .") or line.startswith(".")]
    assert installs_package, "environment.yml must install the course package (-e .[dev])"
    extras = re.findall(r"\[([^\]]*)\]", installs_package[0])
    assert not extras or set(extras[0].split(",")) <= set(project["optional-dependencies"])
    others = [line for line in pip if line not in installs_package]
    assert not others, f"environment.yml lists packages that belong in pyproject.toml: {others}"


def test_pinned_torch_pair():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps


REPOSITORY = "https://github.com/OWNER/triplet-loss-hands-on"


def test_every_notebook_installs_the_package_on_colab_only():
    """The first code cell installs course_utils when, and only when, it runs on Colab."""
    import nbformat

    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        first = cells[0].source
        assert 'if "google.colab" in sys.modules:' in first, f"{path.name}: no Colab guard in the set-up cell"
        assert f'%pip install -q "course-utils @ git+{REPOSITORY}"' in first, path.name
        for cell in cells:
            for line in cell.source.splitlines():
                if "pip install" in line:
                    assert line.startswith("    "), f"{path.name}: a pip install outside the Colab guard: {line!r}"


def test_repository_address_is_the_same_everywhere():
    """Book launch buttons, README links and the Colab install cell point at one repository."""
    book = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert book["repository"]["url"] == REPOSITORY
    assert REPOSITORY.removeprefix("https://github.com/") in (ROOT / "README.md").read_text()
