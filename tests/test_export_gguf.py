"""GGUF export: read back with transformers' GGUF loader, the file gives the merged model's logits and tokens.

Tolerances, on tiny fp32 models whose logits reach about 3.5 in magnitude:
- f16: 1e-2 absolute. f16 keeps 11 significant bits (relative rounding 2^-11 ~ 5e-4 per weight);
  measured 4.3e-3 (llama), 5.8e-3 (qwen2), 4.5e-3 (mistral).
- q8_0: two checks. (1) The file holds exactly Q8_0 of the merged weights: its logits equal those
  of the merged model with every 2-D weight rounded through gguf's own Q8_0 quantize/dequantize,
  within 1e-4 (measured 0.0). (2) Against the unquantized merged model, within 10% of the largest
  logit. Q8_0 stores each block of 32 weights as int8 times one scale (block max / 127), so each
  weight moves by up to 1/254 of its block's largest value (~0.5% RMS); summed over the ~9
  quantized matrices on any path, the worst logit over a vocabulary and a few dozen positions
  moves by a few percent of the logit scale: measured 3.8% (llama), 4.8% (qwen2), 3.3% (mistral)
  here, and 3.0% on SmolLM2 (1.15 of 38). 10% leaves 2x headroom, while the layout error in the
  control below moves logits by ~100% (3.4 of 3.5).
"""

from __future__ import annotations

import copy
from importlib.metadata import version

import numpy as np
import pytest
import torch
from packaging.version import Version

from export_fixtures import logits, max_diff, sentencepiece_tokenizer, ticket, tiny_model, tiny_run
from jupyter_finetune.export import ExportError, export_run
from jupyter_finetune.export import gguf_families, gguf_writer
from jupyter_finetune.export.gguf_vocab import CONTROL, gguf_vocab, pre_tokenizer_name, source_pre_tokenizer
from jupyter_finetune.export.merge import MergedWeights

FAMILIES = ["llama", "qwen2", "mistral"]
Q8_0_TOLERANCE = 0.10
"""Of the largest logit magnitude; see the module docstring."""
TEXTS = ["Ticket 42: shipping was late and the box arrived damaged. Refund, please!",
         "Ünïcødé ✅, tabs\tand  double  spaces, digits 1234567 and JSON {\"a\": [1, 2.5, null]}"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_tokenizer):
    """One finished run per family: llama and qwen2 with the byte-level BPE, mistral with a sentencepiece one."""
    root = tmp_path_factory.mktemp("gguf")
    spm = sentencepiece_tokenizer()
    return {family: tiny_run(root, spm if family == "mistral" else tiny_tokenizer, family) for family in FAMILIES}


def load_gguf(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


READS_GGUF_TOKENIZERS_BACK = Version(version("transformers")) >= Version("5.24")
"""transformers' own GGUF reader, this test's stand-in for llama.cpp, rebuilds the tokenizers as they
were written at 5.24 (checked); the same files read back with a second BOS for llama at 5.0 and 5.1 and for
mistral at 5.9 and 5.17, and qwen2's text split differently there; at 5.0 qwen2's and mistral's text split
differently. The logits are compared at every version."""


def texts_for(tokenizer):
    return [tokenizer.apply_chat_template(ticket(3), tokenize=False), *TEXTS]


@pytest.mark.parametrize("family", FAMILIES)
def test_f16_gguf_read_back_gives_the_merged_models_logits_within_1e_2(runs, family):
    run, reference = runs[family]
    result = export_run(run, "gguf", quant="f16", overwrite=True)
    assert result.path == run.path / "export" / "gguf" / f"{run.name}-f16.gguf" and result.quant == "f16"
    model, gguf_tokenizer = load_gguf(result.path)
    texts = texts_for(gguf_tokenizer)
    tokenizer = _run_tokenizer(run)
    if READS_GGUF_TOKENIZERS_BACK:
        for text in texts:
            assert gguf_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert max_diff(logits(model, tokenizer, texts), logits(reference, tokenizer, texts)) < 1e-2


@pytest.mark.parametrize("family", FAMILIES)
def test_q8_0_gguf_holds_exactly_q8_0_of_the_merged_weights(runs, family):
    import gguf

    run, reference = runs[family]
    tokenizer = _run_tokenizer(run)
    model, _ = load_gguf(export_run(run, "gguf", quant="q8_0", overwrite=True).path)
    texts = texts_for(tokenizer)
    got, want = logits(model, tokenizer, texts), logits(reference, tokenizer, texts)
    assert max_diff(got, want) < Q8_0_TOLERANCE * _largest(want)

    rounded = copy.deepcopy(reference).merge_and_unload()
    q8 = gguf.GGMLQuantizationType.Q8_0
    with torch.no_grad():
        for name, param in rounded.named_parameters():
            if param.ndim == 2 and param.shape[-1] % 32 == 0:
                data = param.detach().numpy().astype(np.float32)
                param.copy_(torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(data, q8), q8)))
    assert max_diff(got, logits(rounded, tokenizer, texts)) < 1e-4


def test_logit_check_catches_a_gguf_without_llamas_q_k_permutation(runs, monkeypatch):
    """The control for the tolerances above: a layout error llama.cpp would suffer is far outside them."""
    run, reference = runs["llama"]
    monkeypatch.setattr(gguf_families, "_permute", lambda weights, n_head: weights)
    model, _ = load_gguf(export_run(run, "gguf", quant="f16", out=run.path / "unpermuted").path)
    tokenizer = _run_tokenizer(run)
    texts = texts_for(tokenizer)
    want = logits(reference, tokenizer, texts)
    assert max_diff(logits(model, tokenizer, texts), want) > 5 * Q8_0_TOLERANCE * _largest(want)


def test_gguf_metadata_follows_llama_cpps_converter(runs):
    from gguf import GGMLQuantizationType, GGUFReader

    run, _ = runs["llama"]
    reader = GGUFReader(export_run(run, "gguf", quant="q8_0", overwrite=True).path)
    field = {name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    assert field["general.architecture"] == "llama" and field["general.name"] == run.name
    shape = ("llama.block_count", "llama.embedding_length", "llama.feed_forward_length")
    assert tuple(field[k] for k in shape) == (2, 64, 128)
    assert (field["llama.attention.head_count"], field["llama.attention.head_count_kv"]) == (4, 2)
    assert field["llama.context_length"] == 512 and field["llama.rope.dimension_count"] == 16
    assert field["llama.rope.freq_base"] == 10000.0
    assert field["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    assert field["general.file_type"] == 7 and field["general.quantization_version"] == 2
    assert (field["tokenizer.ggml.model"], field["tokenizer.ggml.pre"]) == ("gpt2", "gpt-2")
    tokenizer = _run_tokenizer(run)
    assert len(field["tokenizer.ggml.tokens"]) == len(tokenizer) and field["tokenizer.ggml.merges"]
    types = field["tokenizer.ggml.token_type"]
    assert [types[tokenizer.convert_tokens_to_ids(t)] for t in ("<|im_start|>", "<|im_end|>")] == [CONTROL, CONTROL]
    assert (field["tokenizer.ggml.eos_token_id"], field["tokenizer.ggml.bos_token_id"]) == (tokenizer.eos_token_id,
                                                                                         tokenizer.bos_token_id)
    assert field["tokenizer.ggml.add_bos_token"] is False
    assert field["tokenizer.chat_template"] == tokenizer.chat_template
    kinds = {t.name: t.tensor_type for t in reader.tensors}
    assert kinds["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32
    assert kinds["blk.1.ffn_down.weight"] == kinds["token_embd.weight"] == GGMLQuantizationType.Q8_0
    assert "output.weight" not in kinds  # tied embeddings: llama.cpp reuses token_embd


def test_sentencepiece_vocabulary_is_written_as_llama_with_byte_tokens_and_merge_scores(runs):
    from gguf import GGUFReader

    run, _ = runs["mistral"]
    field = {n: f.contents() for n, f in GGUFReader(export_run(run, "gguf", overwrite=True).path).fields.items()
             if n.startswith("tokenizer.")}
    assert field["tokenizer.ggml.model"] == "llama" and "tokenizer.ggml.pre" not in field
    assert field["tokenizer.ggml.add_bos_token"] is True and field["tokenizer.ggml.add_space_prefix"] is True
    tokens, types, scores = (field[f"tokenizer.ggml.{k}"] for k in ("tokens", "token_type", "scores"))
    assert (tokens[3], types[3], tokens[258], types[258]) == ("<0x00>", 6, "<0xFF>", 6)
    assert (types[0], types[1], types[2]) == (2, 3, 3)  # unknown, then <s> and </s> as control
    first, second = (m.replace(" ", "") for m in field["tokenizer.ggml.merges"][:2])
    assert scores[tokens.index(first)] == 0.0 and scores[tokens.index(second)] == -1.0


def test_llama3_rope_scaling_is_written_as_rope_freqs_matching_transformers(tmp_path, tiny_tokenizer):
    from gguf import GGUFReader
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    folder = tiny_model(tmp_path / "m", tiny_tokenizer, rope_parameters=rope)
    config = AutoConfig.from_pretrained(folder)
    gguf_writer.write_gguf(MergedWeights.of(folder, config, None), gguf_vocab(tiny_tokenizer, len(tiny_tokenizer)),
                           tmp_path / "m.gguf", quant="f16", name="llama3")
    (freqs,) = [t for t in GGUFReader(tmp_path / "m.gguf").tensors if t.name == "rope_freqs.weight"]
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    default = 1.0 / (500000.0 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16))
    np.testing.assert_allclose(np.asarray(freqs.data), (default / scaled.double()).numpy(), rtol=1e-5)
    assert len(set(np.round(np.asarray(freqs.data), 4))) > 2  # all three wavelength bands are exercised


def test_unsupported_architecture_is_refused_before_weights_load_naming_the_supported_ones(runs, monkeypatch):
    from transformers import GPT2Config

    run, _ = runs["llama"]
    monkeypatch.setattr("jupyter_finetune.export.source.RunSource.base_config", GPT2Config())
    monkeypatch.setattr("jupyter_finetune.export.run_export.merged_weights", lambda source: pytest.fail("weights loaded"))
    with pytest.raises(ExportError, match=r"supports the llama \(LlamaForCausalLM, Llama 3.x rope scaling included\), "
                                          r"mistral \(MistralForCausalLM\), qwen2 \(Qwen2ForCausalLM\), qwen3 "
                                          r"\(Qwen3ForCausalLM\), gemma2 \(Gemma2ForCausalLM\), gemma3_text "
                                          r"\(Gemma3ForCausalLM: text-only Gemma 3\), gemma3 "
                                          r"\(Gemma3ForConditionalGeneration: its language model, without the vision "
                                          r"tower\) and phi3 \(Phi3ForCausalLM: Phi-3, 3.5 and 4\) families; this "
                                          r"model is 'gpt2'"):
        export_run(run, "gguf", overwrite=True)


def test_unsupported_rope_scaling_is_refused(tiny_tokenizer, tmp_path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model(tmp_path / "m", tiny_tokenizer, family="qwen2", rope_parameters={
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 128}))
    with pytest.raises(ExportError, match=r"does not handle 'yarn' rope scaling for qwen2; supported: default"):
        gguf_families.family_of(config)


def test_a_pre_tokenizer_llama_cpp_cannot_name_is_refused_naming_the_known_ones():
    assert pre_tokenizer_name({"type": "ByteLevel", "use_regex": True}) == "gpt-2"
    assert pre_tokenizer_name({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel", "use_regex": True}]}) == "smollm"
    with pytest.raises(ExportError, match=r"\(Whitespace\) is not one llama.cpp knows.*supported: gpt-2 \(ByteLevel\)"):
        pre_tokenizer_name({"type": "Whitespace"})


def test_pre_tokenizer_of_a_source_gguf_is_read_from_its_header(runs):
    """How a base converted from a GGUF (the packaged SmolLM2) keeps llama.cpp's name for its pre-tokenizer."""
    assert source_pre_tokenizer(export_run(runs["llama"][0], "gguf", overwrite=True).path) == "gpt-2"
    assert source_pre_tokenizer(export_run(runs["mistral"][0], "gguf", overwrite=True).path) is None
    assert source_pre_tokenizer(None) is None


def _largest(values) -> float:
    return max(float(v.abs().max()) for v in values)


def _run_tokenizer(run):
    from jupyter_finetune.export.source import RunSource

    return RunSource.of(run).tokenizer()


def test_a_family_the_installed_gguf_package_does_not_know_is_refused_naming_the_upgrade(tiny_tokenizer, tmp_path,
                                                                                         monkeypatch):
    import gguf
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model(tmp_path / "m", tiny_tokenizer, family="qwen2"))
    monkeypatch.setattr(gguf, "MODEL_ARCH_NAMES", {k: v for k, v in gguf.MODEL_ARCH_NAMES.items() if v != "qwen2"})
    with pytest.raises(ExportError, match=r"GGUF export of qwen2 needs a gguf package that knows llama.cpp's 'qwen2' "
                                          r"architecture; gguf \S+ is installed. Run pip install -U gguf"):
        gguf_families.family_of(config)
