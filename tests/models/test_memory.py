"""Memory held by the encoder: weights checked without being made resident, freed activations handed back,
finiteness checks that need a few MB whatever the size of a weight (issue 18, item 3)."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy
import pytest
import torch

from spacy_clinalign.models import finite_weights, heap
from spacy_clinalign.models.finite_weights import (NonFiniteWeightsError, check_finite, check_safetensors_finite,
                                                   safetensors_files)

ROOT = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads /proc/self/smaps (Linux)")


def _run(code: str) -> dict:
    """Run `code` in a fresh interpreter (a clean heap and clean mappings); it prints one JSON line."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def wide_encoder(tiny_encoder, tmp_path_factory) -> Path:
    """The tiny encoder's tokenizer over a BERT whose embedding table is 48 MiB (100k x 128 float32), saved
    as safetensors: large enough that making it resident shows in RSS."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("wide_bert")
    for path in tiny_encoder.iterdir():
        if path.name.startswith(("tokenizer", "special_tokens", "vocab")):
            shutil.copy(path, folder / path.name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100_000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=256, max_position_embeddings=160)
    BertModel(config).save_pretrained(folder)
    assert safetensors_files(folder) == [folder / "model.safetensors"]
    return folder


@linux_only
def test_loading_an_encoder_leaves_its_weights_file_mostly_unread(wide_encoder):
    """transformers memory-maps safetensors weights; the NaN/inf check reads the file, not the map, so the
    embedding table is not made resident at load (it was: +0.37 GiB of RSS for e5-small)."""
    result = _run(f"""
        import json
        from spacy_clinalign.models.safe_shim import load_local_encoder
        hf = load_local_encoder({str(wide_encoder)!r}, {{}}, {{}})
        rss = mapped = 0
        current = None
        for line in open("/proc/self/smaps"):
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:
                current = head[-1] if len(head) >= 6 else None
            elif head and head[0] == "Rss:" and current and current.endswith("model.safetensors"):
                rss += int(head[1]) * 1024
                mapped = 1
        print(json.dumps({{"rss": rss, "mapped": mapped}}))
    """)
    if not result["mapped"]:
        pytest.skip("this transformers version copies safetensors weights instead of memory-mapping them")
    size = (wide_encoder / "model.safetensors").stat().st_size
    assert result["rss"] < 0.1 * size, f"{result['rss'] / 2**20:.1f} MiB of the {size / 2**20:.1f} MiB weights resident"


def _safetensors_with(tmp_path: Path, dtype: torch.dtype, bad_index: int, value: float) -> Path:
    from safetensors.torch import save_file

    weight = torch.zeros(3000, 7, dtype=dtype)  # 21,000 elements: several reads at a small chunk size
    if bad_index >= 0:
        weight.view(-1)[bad_index] = value
    path = tmp_path / f"{str(dtype).split('.')[-1]}.safetensors"
    save_file({"a.bias": torch.ones(5), "b.weight": weight, "c.ids": torch.arange(4)}, str(path))
    return path


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", [0, 9_999, 20_999])
def test_safetensors_check_finds_a_non_finite_value_anywhere(tmp_path, monkeypatch, dtype, value, where):
    monkeypatch.setattr(finite_weights, "CHUNK_BYTES", 4096)
    path = _safetensors_with(tmp_path, dtype, where, value)
    with pytest.raises(NonFiniteWeightsError, match="'b.weight' contains NaN or infinite"):
        check_safetensors_finite([path], "test")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_safetensors_check_accepts_finite_extremes(tmp_path, monkeypatch, dtype):
    monkeypatch.setattr(finite_weights, "CHUNK_BYTES", 4096)
    path = _safetensors_with(tmp_path, dtype, 20_999, torch.finfo(dtype).max)
    check_safetensors_finite([path], "test")  # the largest finite value is not inf


def test_safetensors_check_refuses_a_cut_file(tmp_path):
    path = _safetensors_with(tmp_path, torch.float32, -1, 0.0)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cut short"):
        check_safetensors_finite([path], "test")


def test_local_encoder_with_nan_in_its_safetensors_is_refused(tiny_encoder, tmp_path):
    from safetensors.torch import load_file, save_file

    from spacy_clinalign.models.safe_shim import load_local_encoder

    folder = tmp_path / "enc"
    shutil.copytree(tiny_encoder, folder)
    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k in state if k.endswith("word_embeddings.weight"))
    state[key][-1, -1] = float("nan")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_local_encoder(str(folder), {}, {})


def test_parameter_check_works_in_chunks(monkeypatch):
    monkeypatch.setattr(finite_weights, "CHUNK_ELEMENTS", 10)
    module = torch.nn.Linear(7, 9)
    check_finite(module, "test")
    with torch.no_grad():
        module.weight[-1, -1] = float("inf")
    with pytest.raises(NonFiniteWeightsError, match="'weight'"):
        check_finite(module, "test")


@pytest.mark.skipif(not heap.can_release(), reason="the C library has no malloc_trim (not glibc)")
def test_release_free_heap_returns_freed_blocks_that_live_objects_pin():
    """The pattern of an encoder run: blocks under glibc's (raised) mmap threshold freed while small objects
    allocated after them live on. glibc keeps such memory; release_free_heap hands it back."""
    result = _run("""
        import json, numpy, psutil
        from spacy_clinalign.models.heap import release_free_heap
        proc = psutil.Process()
        big = numpy.ones(16 * 2**20, dtype=numpy.uint8); del big  # raises glibc's mmap threshold to 16 MiB
        blocks, pins = [], []
        start = proc.memory_info().rss
        for _ in range(200):
            blocks.append(numpy.ones(2**20, dtype=numpy.uint8))  # 1 MiB, now from the heap
            pins.append(bytearray(4096))  # lives on, after the block (above pymalloc's 512 bytes: from malloc)
        del blocks
        before = proc.memory_info().rss
        released = release_free_heap()
        print(json.dumps({"held": before - start, "freed": before - proc.memory_info().rss, "released": released}))
    """)
    assert result["released"]
    if result["held"] < 150 * 2**20:
        # The kernel took the freed, idle pages back by itself before the call (proactive reclaim such as DAMON
        # on a loaded machine): there is nothing left for release_free_heap to hand back, so nothing to measure.
        pytest.skip(f"only {result['held'] / 2**20:.0f} MiB of the 200 freed MiB were still resident")
    assert result["freed"] > 100 * 2**20, f"only {result['freed'] / 2**20:.0f} MiB released"


def test_encoder_calls_release_the_freed_heap(tiny_encoder, monkeypatch):
    """Both inference shims (float32 and int8) hand freed memory and the embedding pages they read back after
    each forward pass, for the model they ran."""
    import spacy

    from spacy_clinalign.models import quantize, safe_shim
    from spacy_clinalign.pairs import make_pair
    from tests.conftest import aligner_config

    calls = []
    monkeypatch.setattr(safe_shim, "release_after_call", lambda model: calls.append(("fp32", model)))
    monkeypatch.setattr(quantize, "release_after_call", lambda model: calls.append(("int8", model)))
    for mode in ("none", "int8"):
        nlp = spacy.blank("xx")
        nlp.add_pipe("clinical_aligner", config=aligner_config(tiny_encoder, quantize=mode))
        nlp.initialize()
        calls.clear()
        nlp(make_pair(nlp.make_doc("la casa es pequeña"), "the house is small", nlp))
        assert [kind for kind, _ in calls] == ["fp32" if mode == "none" else "int8"]
        assert hasattr(calls[0][1], "get_input_embeddings")


_MAPPED_TABLE = """
    import json, torch
    from spacy_clinalign.models.mapped_pages import mapped_file_range, release_mapped_pages, resident_pages
    from spacy_clinalign.models.safe_shim import load_local_encoder
    hf = load_local_encoder({folder!r}, {{}}, {{}})
    weight = hf.transformer.get_input_embeddings().weight.detach()
    span = mapped_file_range(weight)
    if span is None:
        print(json.dumps({{"mapped": False}})); raise SystemExit
    expected = weight.sum(dim=1).clone()  # reads every row: the whole table becomes resident
    {write}
    before = resident_pages(*span)[0]
    released = release_mapped_pages(weight)
    after = resident_pages(*span)[0]
    same = bool(torch.equal(weight.sum(dim=1), expected))
    print(json.dumps({{"mapped": True, "before": before, "after": after, "released": released, "same": same,
                      "row0": float(weight[5, 0])}}))
"""


@linux_only
def test_release_mapped_pages_drops_the_read_rows_and_keeps_every_value(wide_encoder):
    """After a read of the whole 48 MiB mapped table, its pages leave this process's RSS; reading again
    gives the same numbers (they come back from the file)."""
    result = _run(_MAPPED_TABLE.format(folder=str(wide_encoder), write=""))
    if not result["mapped"]:
        pytest.skip("this transformers version copies safetensors weights instead of memory-mapping them")
    assert result["before"] * 4096 > 40 * 2**20
    assert result["released"] == result["before"] * 4096
    assert result["after"] < 0.02 * result["before"]
    assert result["same"]


@linux_only
def test_release_mapped_pages_never_drops_a_written_page(wide_encoder):
    """A row changed in place (a fine-tuned or delta-applied weight) lives in a copy-on-write page that the
    file does not hold: nothing is released, and the change stays."""
    result = _run(_MAPPED_TABLE.format(folder=str(wide_encoder),
                                       write="weight[5, 0] = 123.0; expected[5] = weight[5].sum()"))
    if not result["mapped"]:
        pytest.skip("this transformers version copies safetensors weights instead of memory-mapping them")
    assert result["released"] == 0
    assert result["after"] == result["before"]
    assert result["row0"] == 123.0 and result["same"]


def test_release_mapped_pages_leaves_memory_the_process_allocated():
    """A tensor the process allocated is not file-mapped: releasing its pages would zero it, so nothing is done."""
    from spacy_clinalign.models.mapped_pages import mapped_file_range, release_mapped_pages

    weight = torch.arange(4 * 2**20, dtype=torch.float32)
    assert mapped_file_range(weight) is None
    assert release_mapped_pages(weight) == 0
    assert float(weight[-1]) == 4 * 2**20 - 1


@linux_only
def test_loading_a_saved_pipeline_keeps_one_copy_of_the_weights_it_loads(tiny_encoder, tmp_path):
    """A saved pipeline's weights come from its bytes: the loaded tensors become the parameters (no randomly
    initialised copy written first, then overwritten). Loading a 98 MiB table peaked at 5.0 times its size
    before, 4.1 now (the file's bytes, their msgpack field and torch.load's buffers remain)."""
    from transformers import BertConfig, BertModel

    folder = tmp_path / "big_bert"
    folder.mkdir()
    for path in tiny_encoder.iterdir():
        if path.name.startswith(("tokenizer", "special_tokens", "vocab")):
            shutil.copy(path, folder / path.name)
    config = BertConfig(vocab_size=200_000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=256, max_position_embeddings=160)
    BertModel(config).save_pretrained(folder)  # a 98 MiB embedding table
    weights = (folder / "model.safetensors").stat().st_size
    result = _run(f"""
        import json, spacy
        from tests.conftest import aligner_config
        nlp = spacy.blank("xx")
        nlp.add_pipe("clinical_aligner", config=aligner_config({str(folder)!r}))
        nlp.initialize()
        nlp.to_disk({str(tmp_path / "pipe")!r})
        del nlp
        import gc; gc.collect()
        from spacy_clinalign.models.heap import release_free_heap
        release_free_heap()

        def status(key):
            return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) * 1024

        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark to the current RSS
        spacy.load({str(tmp_path / "pipe")!r})
        print(json.dumps({{"load": status("VmHWM") - before}}))
    """)
    assert result["load"] < 4.5 * weights, f"loading took {result['load'] / weights:.2f} x the weights"
