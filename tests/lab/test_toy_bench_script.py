"""Issue 5: scripts/toy_bench.py turns per-method results into the committed table, CSV and figure."""

import json

from conftest import load_script


def summary(method, subject, prompt):
    kind = {"class_accuracy": 1.0, "prompt_fidelity": prompt, "subject_fidelity": subject, "embedding_cosine": 0.5}
    return dict(method=method, subject_fidelity=subject, embedding_cosine=0.5, prompt_fidelity=prompt,
                class_accuracy=1.0, extra_params=0, setup_seconds=0.0, seconds_per_image=0.1, images=75,
                by_kind_recontext=kind, by_kind_accessory=kind, by_kind_property=kind, seeds=1, identities=3,
                steps=25, text_scale=5.0, ref_scale=None, subject_chance=0.21,
                command="python scripts/toy_bench.py --seeds 1")


def test_report_writes_table_csv_and_figure(tmp_path):
    bench = load_script("toy_bench")
    out = tmp_path / "figures" / "toy_bench"
    out.mkdir(parents=True)
    per_attribute = {"pattern": 0.5, "glyph": 0.75, "body_colour": None, "pattern_colour": 0.25}
    for method, subject, prompt in [("text", 0.21, 0.9), ("dreamcache", 0.7, 0.88)]:
        result = summary(method, subject, prompt)
        if method == "dreamcache":  # a result with the newer per-attribute fields beside an older one
            result.update(subject_by_attribute=per_attribute, cache_bytes=1234, identity_gain=0.6)
        (out / f"{method}.json").write_text(json.dumps(result))
    bench.report(out)
    table = (tmp_path / "figures" / "toy_bench.md").read_text()
    assert "| text | 0.210 | - |" in table and "| dreamcache | 0.700 | 0.600 |" in table  # older results: no gain
    assert "| dreamcache | 0.500 | - | - | 0.750 | - | 0.250 |" in table and "| text | - | - | - | - | - | - |" in table
    assert "python scripts/toy_bench.py --seeds 1" in table
    rows = (tmp_path / "figures" / "toy_bench.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("method,subject_fidelity") and "subject_glyph" in rows[0]
    assert (tmp_path / "figures" / "toy_bench.png").stat().st_size > 1000
