"""Oracle weights on disk: written through `files.save_tensors`; files written before still load."""

import json

import torch
from safetensors.torch import save_file

from dreamcache_lite.files import load_tensors
from dreamcache_lite.lab.oracle import ORACLE_KIND, Oracle


def test_save_load_round_trip_and_older_files(tmp_path):
    torch.manual_seed(0)
    oracle = Oracle().eval()
    oracle.save(tmp_path / "oracle.safetensors", steps=5)
    assert load_tensors(tmp_path / "oracle.safetensors", ORACLE_KIND)[1] == {"config": oracle.config, "steps": 5}
    older = {"config": json.dumps(oracle.config), "steps": json.dumps(5)}  # the header before save_tensors
    save_file({k: v.contiguous() for k, v in oracle.state_dict().items()}, str(tmp_path / "old.safetensors"),
              metadata=older)
    for name in ("oracle", "old"):
        loaded = Oracle.load(tmp_path / f"{name}.safetensors")
        assert not loaded.training and all(torch.equal(loaded.state_dict()[k], v)
                                           for k, v in oracle.state_dict().items())
