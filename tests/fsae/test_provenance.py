"""Provenance: run_info.json's fields, SHA-256 records of dependencies and products, and the warnings when a recorded
file changes (``check_dependencies``, and ``load_fsae`` for a checkpoint beside its run's record)."""

import importlib.metadata
import json
import platform
import re
import warnings

import pytest
import torch

from fsae.checkpoint import load_fsae, save_fsae
from fsae.model import FSAE, FSAEConfig, LayerSpec
from fsae.provenance import ProvenanceWarning, check_dependencies, run_info, sha256_file, write_run_info


def _model(seed: int) -> FSAE:
    torch.manual_seed(seed)
    return FSAE(FSAEConfig((1, 8, 8), [LayerSpec("conv", 2, 4, 2), LayerSpec("linear", 3)]))  # reads every pixel


def test_run_info_fields():
    info = run_info()
    assert info["version"] == importlib.metadata.version("fsae-rl")
    assert info["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", info["git_commit"])
    assert info["python"] == platform.python_version() and info["torch"] == torch.__version__
    assert info["hostname"] and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", info["time"])
    json.dumps(info)  # plain values only


def test_records_dependencies_and_products(tmp_path):
    dep = tmp_path / "elsewhere" / "fsae_round.pt"
    save_fsae(dep, _model(0))
    run = tmp_path / "run"
    made = save_fsae(run / "out.pt", _model(1))
    info = json.loads(write_run_info(run, depends_on={"fsae": dep}, produced={"out.pt": made}).read_text())
    assert info["depends_on"] == {"fsae": {"path": str(dep.resolve()), "sha256": sha256_file(dep)}}
    assert info["produced"] == {"out.pt": {"path": "out.pt", "sha256": sha256_file(made)}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_dependencies(run) == []


def test_changed_dependency_warns_with_both_hashes(tmp_path):
    dep = save_fsae(tmp_path / "fsae_round.pt", _model(0))
    run = tmp_path / "run"
    run.mkdir()
    write_run_info(run, depends_on={"fsae": dep})
    before = sha256_file(dep)
    save_fsae(dep, _model(1))  # retrained in place
    after = sha256_file(dep)
    with pytest.warns(ProvenanceWarning, match=f"{re.escape(str(dep))} has SHA-256 {after}, but .* recorded {before}"):
        messages = check_dependencies(run)
    assert len(messages) == 1 and "\n" not in messages[0]
    dep.unlink()
    with pytest.warns(ProvenanceWarning, match="is gone"):
        check_dependencies(run)


def test_load_fsae_warns_only_for_a_modified_checkpoint(tmp_path):
    path = save_fsae(tmp_path / "fsae_plain.pt", _model(0))
    write_run_info(tmp_path, produced={path.name: path})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unmodified: no warning at all
        load_fsae(path)
    recorded = sha256_file(path)
    save_fsae(path, _model(1))  # same format, other weights: loads fine, but is not what the run wrote
    with pytest.warns(ProvenanceWarning, match=f"fsae_plain.pt has SHA-256 {sha256_file(path)}, but .*{recorded}"):
        model = load_fsae(path)
    assert torch.equal(
        model.state_dict()["abstract.layers.0.weight"], _model(1).state_dict()["abstract.layers.0.weight"]
    )


def test_load_fsae_without_a_record_is_silent_and_an_unreadable_one_is_said(tmp_path):
    path = save_fsae(tmp_path / "fsae_plain.pt", _model(0))
    expected = _model(0).state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning fails the test
        model = load_fsae(path)  # no run_info.json: nothing to check
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    (tmp_path / "run_info.json").write_text("not json")  # unreadable: one warning, not fatal, not silent
    with pytest.warns(ProvenanceWarning, match=r"run_info.json is unreadable \(Expecting value.*not checked$"):
        model = load_fsae(path)
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
