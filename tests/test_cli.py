"""The command line, run as a reader would: ``python -m cl_toolkit ...`` in a subprocess, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cl_toolkit.__main__ import main


def run_cli(repo_root, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", CL_QUIET="1", CL_PROFILE="quick")
    env.setdefault("CL_THREADS", str(torch.get_num_threads()))  # as many threads as this process
    env["PYTHONPATH"] = os.pathsep.join([str(repo_root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, "-m", "cl_toolkit", *args], cwd=repo_root, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def test_eval_sts_prints_a_table(repo_root, data_dir):
    from cl_toolkit.evaluate import sts
    from cl_toolkit.models import Encoder

    out = run_cli(repo_root, "eval", "sts", "--model", "tiny", "--tasks", "stsb").stdout
    lines = [line for line in out.strip().split("\n") if line.strip()]
    assert lines[0].split() == ["model", "STSB", "AVG"]
    assert set(lines[1]) == {"-"}
    name, stsb, avg = lines[2].split()
    assert name == "tiny" and stsb == avg
    # the CLI's "tiny" is Encoder.tiny(seed=0): the same number in this process
    assert float(stsb) == pytest.approx(sts(Encoder.tiny(seed=0), "stsb", "test"), abs=0.011)


@pytest.fixture(scope="module")
def trained(repo_root, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "simcse"
    proc = run_cli(repo_root, "train", "simcse", "--profile", "quick", "--out", str(out), "--steps", "4", "--no-eval")
    return out, proc


def test_train_simcse_writes_summary(trained):
    out, proc = trained
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile"] == "quick"
    assert summary["steps"] == 4
    assert summary["best_step"] == 4  # evaluated at the end of the run
    assert isinstance(summary["best_stsb_dev"], float) and -100 < summary["best_stsb_dev"] < 100
    assert summary["model_dir"] == str(out / "model")
    assert "sts" not in summary  # --no-eval
    assert json.loads(proc.stdout.strip().split("\n")[-1])["steps"] == 4
    assert (out / "run" / "checkpoint" / "trainer_state.json").is_file()


def test_train_simcse_model_loads_in_sentence_transformers(trained):
    from sentence_transformers import SentenceTransformer

    from cl_toolkit.models import Encoder

    out, _ = trained
    sentences = ["A man is playing a guitar.", "Two dogs run in the snow.", "hello"]
    st = SentenceTransformer(str(out / "model"), device="cpu")
    theirs = st.encode(sentences, convert_to_tensor=True).cpu()
    ours = Encoder.from_pretrained(str(out / "model"), pooling="mean").encode(sentences)
    assert theirs.shape == ours.shape == (3, 384)  # the quick start: fresh layers over MiniLM's embeddings
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)
    # it was trained: not the seeded initial encoder any more
    from cl_toolkit.simcse import SimCSE

    initial = SimCSE.for_profile("quick").build_model()
    assert not torch.allclose(ours, initial.encode(sentences), atol=1e-4)


@pytest.mark.parametrize(
    "argv",
    [[], ["eval"], ["eval", "sts"], ["train", "simcse"], ["train", "simcse", "--out", "x", "--profile", "medium"]],
    ids=["nothing", "eval", "eval-sts-no-model", "train-no-out", "bad-profile"],
)
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_eval_accepts_the_train_output_folder(trained, repo_root):
    """What a user types next: `eval sts --model <the --out folder>` uses its saved model."""
    out, _ = trained
    proc = run_cli(repo_root, "eval", "sts", "--model", str(out), "--tasks", "stsb")
    assert proc.stdout.strip().split("\n")[-1].split()[0] == str(out)


def test_eval_of_a_folder_without_a_model_says_so_in_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no model here")
    assert main(["eval", "sts", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0] and "holds no model" in err[0]


def test_threads_follow_omp_num_threads(monkeypatch):
    from cl_toolkit.config import default_threads

    monkeypatch.delenv("CL_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("CL_THREADS", "2")
    assert default_threads() == 2
    monkeypatch.setenv("CL_THREADS", "zero")
    with pytest.raises(ValueError, match="CL_THREADS"):
        default_threads()
