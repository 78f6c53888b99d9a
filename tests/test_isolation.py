"""The method stands alone: importing it loads nothing of the laboratory or the teaching helpers."""

import json
import subprocess
import sys

METHOD = ("dreamcache_lite.pipeline", "dreamcache_lite.training", "dreamcache_lite.adapters", "dreamcache_lite.cache")


def test_the_method_loads_no_lab_or_teaching_module():
    code = ("import importlib, json, sys\n"
            f"for name in {METHOD!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('dreamcache_lite'))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout.splitlines()[-1])
    assert set(METHOD) <= set(loaded)
    assert not [m for m in loaded if m.startswith(("dreamcache_lite.lab", "dreamcache_lite.teach"))], loaded
