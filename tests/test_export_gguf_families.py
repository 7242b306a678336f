"""GGUF families beyond llama/mistral/qwen2, checked by the two readers that matter: transformers' GGUF
loader (where it knows the architecture) and llama.cpp itself (llama-cpp-python), against base + adapter.

Tolerances, on tiny fp32 models whose logits reach about 3.5-4 in magnitude (see export_fixtures.tiny_model):
- transformers' loader, f16: 1e-2 absolute, as in test_export_gguf.py; measured 3.0e-3 (qwen3), 3.9e-3 (gemma2),
  4.7e-3 (gemma3_text), 5.1e-3 (multimodal gemma3), 4.1e-3 (phi3).
- llama.cpp, as shares of the largest logit, over 13 cases x 3 texts, each with the reference's 8-token greedy
  continuation (about 190 positions per case):
  f16: logits within 1% (measured 0.13-0.27%; llama.cpp on CPU also rounds activations to f16 before each f16
  product); the same best token wherever the reference's leads its second by more than 0.5% (llama.cpp
  differed at 0-1 positions per case, all near-ties with leads of at most 0.14%; 91-97% of positions lead by
  more). Hence llama.cpp continues greedily as the merged model does: every continuation matched.
  q8_0: logits within 10% (measured 2.9-7.2%); the same best token above a 3% lead (differences at leads of at
  most 2.0%; 61-73% of positions lead by more).
  The lead thresholds are below half the logit tolerance, so the top-1 check is not implied by the logit one.
- One deliberate mistake per family feature (CONTROLS: no +1 on Gemma norms, a dropped sliding window, rope
  scaling key, rope factor tensor or attention factor, Phi-4-mini's partial rotary ignored) moves llama.cpp's
  logits by 13-144% of the largest.
- llama.cpp also tokenizes plain text as the run's tokenizer does, for each tokenizer kind the families ship.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

from export_fixtures import logits, max_diff, sentencepiece_tokenizer, ticket, tiny_run
from jupyter_finetune.export import ExportError, export_run, gguf_families

pytestmark = pytest.mark.skipif(
    not {"qwen3", "gemma3"} <= set(__import__("gguf").MODEL_ARCH_NAMES.values()),
    reason="this gguf package predates llama.cpp's qwen3 and gemma3 architectures: those exports are refused, "
           "naming the fix (test_export_gguf.py)")
READ_BY_TRANSFORMERS = ["qwen3", "gemma2", "gemma3_text", "gemma3-multimodal", "phi"]
"""The cases (below) of new families whose GGUF transformers 5 can load back; it ignores rope scaling keys."""
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
GEMMA3_ROPE = {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
               "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}


def longrope(original: int) -> dict:
    """Phi-3.5-mini's rope: per-frequency factors, short ones up to ``original`` positions, long ones past it."""
    return {"max_position_embeddings": 1024, "original_max_position_embeddings": original, "rope_parameters": {
        "rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0 + 0.1 * i for i in range(8)],
        "long_factor": [1.0 + 2.0 * i for i in range(8)]}}


class Case(NamedTuple):
    model_type: str
    overrides: dict = {}
    """tiny_model settings on top of the family's."""
    context: int = 128
    """llama.cpp's n_ctx."""
    tokenizer: str = "byte-level"
    """The suite's byte-level BPE, or a sentencepiece-style one in the ``llama`` (Mistral, Phi-3) or ``gemma`` style."""


LLAMA_CPP_CASES = {
    "llama": Case("llama"),
    "mistral": Case("mistral", tokenizer="llama"),
    "qwen2": Case("qwen2"),
    "llama-3.1-rope": Case("llama", {"rope_parameters": LLAMA3_ROPE}),
    "qwen3": Case("qwen3"),
    "gemma2": Case("gemma2", tokenizer="gemma"),
    "gemma3_text": Case("gemma3_text", tokenizer="gemma"),
    "gemma3-4b-rope": Case("gemma3_text", {"rope_parameters": GEMMA3_ROPE}),
    "gemma3-multimodal": Case("gemma3", tokenizer="gemma"),
    "phi": Case("phi3", tokenizer="llama"),
    "phi-longrope-short": Case("phi3", longrope(256), context=256),
    "phi-longrope-long": Case("phi3", longrope(32)),
    "phi4-mini": Case("phi3", {"partial_rotary_factor": 0.75}),
    "llama-256": Case("llama", {"hidden_size": 256, "intermediate_size": 512}),
    "qwen3-256": Case("qwen3", {"hidden_size": 256, "intermediate_size": 512}),
}
"""Every family with the tokenizer kind it ships, and each rope variant llama.cpp must reproduce. A context at
most the original one keeps Phi-3.5's short factors in both readers; past it (texts over 32 tokens) both switch
to the long ones. The case names the run and so the GGUF's general.name; none holds 'phi3' or 'phi-3', since
llama.cpp then looks up '</s>', '<unk>', '<s>' and '<|endoftext|>' by text, which Phi-3's tokenizer has and the
tiny ones lack. Rows of the other cases (64 values) are too short for K-quant blocks (256), so q4_k_m falls back to
Q5_0 there as llama.cpp does; the two 256-wide cases put Q4_K and Q6_K blocks through llama.cpp."""
class Tolerance(NamedTuple):
    logits: float
    """The largest logit difference from base + adapter, as a share of the largest logit."""
    clear_lead: float
    """Where the reference's best token leads its second by more than this share of the largest logit,
    llama.cpp must pick the same token; below it, a near-tie may go either way."""


QUANTS_TO_CHECK = {"f16": Tolerance(logits=0.01, clear_lead=0.005), "q8_0": Tolerance(logits=0.10, clear_lead=0.03)}
"""q4_k_m moves a tiny random model's logits by 20-60% (random weights are the worst case for 4 bits), so it is
checked against what llama.cpp's own quantizer makes of our f16 file instead (below)."""
TEXTS = ["Ticket 42: shipping was late and the box arrived damaged twice this month. I want a refund, please, "
         "and a call back from a manager before Friday!",
         "Ünïcødé ✅, tabs\tand  double  spaces, digits 1234567 and JSON {\"a\": [1, 2.5, null]}"]


def texts_for(tokenizer):
    """All over 32 tokens, so Phi-3.5's long rope factors take effect where its original context is 32."""
    return [tokenizer.apply_chat_template(ticket(3), tokenize=False), *TEXTS]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_tokenizer):
    """Per llama.cpp case, built on first use: a finished run (tiny base + LoRA adapter), base + adapter, and
    the tokenizer."""
    root, built = tmp_path_factory.mktemp("gguf-families"), {}

    def run(case):
        if case not in built:
            spec = LLAMA_CPP_CASES[case]
            tokenizer = tiny_tokenizer if spec.tokenizer == "byte-level" else sentencepiece_tokenizer(spec.tokenizer)
            built[case] = (*tiny_run(root, tokenizer, spec.model_type, name=case, model_overrides=spec.overrides),
                           tokenizer)
        return built[case]
    return run


@pytest.fixture(scope="module")
def llama_cpp():
    """Real llama.cpp, the consumer of these files; CI installs it (.ci/llama_cpp.sh), a plain checkout may not."""
    return pytest.importorskip("llama_cpp")


@pytest.mark.parametrize("case", ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "gemma3-multimodal",
                                  "phi", "phi4-mini"])
def test_merged_export_equals_base_plus_adapter_within_1e_4(runs, case):
    """The streamed merge of each family (fused Phi-3 qkv/gate_up, Gemma 3's multimodal names included)."""
    from transformers import AutoModelForCausalLM

    run, reference, tokenizer = runs(case)
    model = AutoModelForCausalLM.from_pretrained(export_run(run, "merged", overwrite=True).path,
                                                 dtype=torch.float32).eval()
    texts = texts_for(tokenizer)
    assert max_diff(logits(model, tokenizer, texts), logits(reference, tokenizer, texts)) < 1e-4


@pytest.mark.parametrize("case", READ_BY_TRANSFORMERS)
def test_f16_gguf_read_back_by_transformers_gives_the_merged_models_logits_within_1e_2(runs, case):
    from transformers import AutoModelForCausalLM

    run, reference, tokenizer = runs(case)
    path = export_run(run, "gguf", quant="f16", overwrite=True).path
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    texts = texts_for(tokenizer)
    difference = max_diff(logits(model, tokenizer, texts), logits(reference, tokenizer, texts))
    print(f"transformers {case} f16: largest difference {difference:.1e}")
    assert difference < 1e-2


@pytest.mark.parametrize("quant", list(QUANTS_TO_CHECK))
@pytest.mark.parametrize("case", list(LLAMA_CPP_CASES))
def test_llama_cpp_gets_the_merged_models_greedy_answers(runs, llama_cpp, case, quant):
    run, reference, tokenizer = runs(case)
    path = export_run(run, "gguf", quant=quant, overwrite=True).path
    tolerance = QUANTS_TO_CHECK[quant]
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=LLAMA_CPP_CASES[case].context, logits_all=True, verbose=False)
    share, differing, leads = _llama_cpp_agreement(llm, reference, tokenizer)
    print(f"llama.cpp {case} {quant}: largest difference {share:.2%} of the largest logit; another best token at "
          f"{len(differing)} of {len(leads)} positions, where the reference led by at most "
          f"{max(differing, default=0):.2%}; {(leads > tolerance.clear_lead).mean():.0%} led by more than "
          f"{tolerance.clear_lead:.1%}")
    assert share < tolerance.logits
    assert max(differing, default=0) < tolerance.clear_lead
    assert (leads > tolerance.clear_lead).mean() > 0.5  # the same greedy answers, not a string of near-ties


@pytest.mark.parametrize("case", list(LLAMA_CPP_CASES))
def test_llama_cpp_runs_our_q4_k_m_as_well_as_its_own_quantizer_makes_it(runs, llama_cpp, case, tmp_path):
    """Our q4_k_m file has the tensor types llama-quantize gives each tensor of our f16 file, each tensor as close
    to the f16 values as llama-quantize's (ours is quantized from the fp32 merge, theirs from f16, so the bytes
    may differ), and llama.cpp's logits from it are as close to base + adapter's as from theirs."""
    import ctypes

    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    run, reference, tokenizer = runs(case)
    ours = export_run(run, "gguf", quant="q4_k_m", overwrite=True).path
    f16 = export_run(run, "gguf", quant="f16", overwrite=True).path
    theirs = tmp_path / "theirs.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert llama_cpp.llama_model_quantize(str(f16).encode(), str(theirs).encode(), ctypes.byref(params)) == 0
    values = {t.name: np.asarray(t.data, dtype=np.float32) for t in GGUFReader(f16).tensors}
    tensors = [{t.name: t for t in GGUFReader(path).tensors} for path in (ours, theirs)]
    types = [{n: t.tensor_type.name for n, t in file.items()} for file in tensors]
    assert types[0] == types[1]
    if case.endswith("-256"):  # rows long enough for K-quant blocks
        assert {"Q4_K", "Q6_K"} <= {t.tensor_type.name for t in tensors[0].values()}
    for name, want in values.items():
        ours_error, theirs_error = (np.abs(dequantize(file[name].data, file[name].tensor_type).reshape(want.shape)
                                           - want).mean() for file in tensors)
        assert ours_error <= 1.05 * theirs_error + 1e-6, name
    shares = [_llama_cpp_agreement(llama_cpp.Llama(model_path=str(path), n_ctx=LLAMA_CPP_CASES[case].context,
                                                   logits_all=True, verbose=False), reference, tokenizer)[0]
              for path in (ours, theirs)]
    print(f"llama.cpp {case} q4_k_m: largest logit difference {shares[0]:.1%} (ours), {shares[1]:.1%} (llama-quantize)")
    assert shares[0] <= 1.25 * shares[1]


def _skip_keys(*names):
    """A patch under which the GGUF writer drops these keys, as if the family never wrote them."""
    def patch(monkeypatch):
        import gguf

        for name in names:
            monkeypatch.setattr(gguf.GGUFWriter, f"add_{name}", lambda self, *args: None)
    return patch


def _replace(owner, attribute, wrong):
    return lambda monkeypatch: monkeypatch.setattr(owner, attribute, wrong)


CONTROLS = {
    "gemma norms without +1": ("gemma2", _replace(gguf_families.GemmaFamily, "transform",
                                                  lambda self, hf_name, data, config: data)),
    "gemma2 without its sliding window": ("gemma2", _skip_keys("sliding_window")),
    "gemma3 4B without linear rope scaling": ("gemma3-4b-rope", _skip_keys("rope_scaling_type", "rope_scaling_factor")),
    "llama 3.1 without rope_freqs": ("llama-3.1-rope", _replace(gguf_families.GgufFamily, "extra_tensors",
                                                                lambda self, config: iter(()))),
    "phi-3.5 without its long rope factors": ("phi-longrope-long", _replace(gguf_families.Phi3Family, "extra_tensors",
                                                                           lambda self, config: iter(()))),
    "phi-3.5 without longrope's attention factor": ("phi-longrope-long", _skip_keys("rope_scaling_attn_factors")),
    "phi-4-mini rotating every dimension": ("phi4-mini", _replace(gguf_families, "_rotary_dims",
                                                                  gguf_families.head_dim)),
}
"""One wrong transform, key or tensor per family feature; each moves llama.cpp's logits far past the tolerance."""


@pytest.mark.parametrize("control", list(CONTROLS))
def test_llama_cpp_check_catches_a_family_mistake(runs, llama_cpp, monkeypatch, control):
    """The control for the tolerance above: the same check fails on a file with one deliberate mistake."""
    case, patch = CONTROLS[control]
    run, reference, tokenizer = runs(case)
    patch(monkeypatch)
    path = export_run(run, "gguf", quant="f16", out=run.path / "wrong", overwrite=True).path
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=LLAMA_CPP_CASES[case].context, logits_all=True, verbose=False)
    share, _, _ = _llama_cpp_agreement(llm, reference, tokenizer)
    print(f"llama.cpp {control}: largest difference {share:.0%} of the largest logit")
    assert share > 5 * QUANTS_TO_CHECK["f16"].logits


def test_gguf_keys_follow_llama_cpps_converter_per_family(runs):
    from gguf import GGUFReader

    def fields(case):
        path = export_run(runs(case)[0], "gguf", quant="f16", overwrite=True).path
        reader = GGUFReader(path)
        return ({n: f.contents() for n, f in reader.fields.items() if not n.startswith(("GGUF.", "tokenizer."))},
                {t.name: t.data.copy() for t in reader.tensors})

    keys, tensors = fields("qwen3")
    assert (keys["qwen3.attention.key_length"], keys["qwen3.attention.value_length"]) == (128, 128)
    assert tensors["blk.0.attn_q_norm.weight"].shape == (128,) and "output.weight" not in tensors

    keys, tensors = fields("gemma2")
    assert keys["general.architecture"] == "gemma2" and keys["gemma2.attention.key_length"] == 256
    assert (keys["gemma2.attn_logit_softcapping"], keys["gemma2.final_logit_softcapping"]) == (50.0, 30.0)
    assert keys["gemma2.attention.sliding_window"] == 8
    assert {"blk.0.post_attention_norm.weight", "blk.0.post_ffw_norm.weight"} <= set(tensors)

    keys, tensors = fields("gemma3-4b-rope")
    assert keys["gemma3.attention.sliding_window"] == 8 and "gemma3.attn_logit_softcapping" not in keys
    assert (keys["gemma3.rope.freq_base"], keys["gemma3.rope.freq_base_swa"]) == (1000000.0, 10000.0)
    assert (keys["gemma3.rope.scaling.type"], keys["gemma3.rope.scaling.factor"]) == ("linear", 8.0)
    assert keys["gemma3.block_count"] == 6 and "blk.5.attn_k_norm.weight" in tensors

    keys, tensors = fields("gemma3-multimodal")  # the language model only: no vision tower, no projector
    assert keys["general.architecture"] == "gemma3" and keys["gemma3.block_count"] == 6
    assert {name.split(".")[0] for name in tensors} == {"token_embd", "blk", "output_norm"}

    keys, tensors = fields("phi-longrope-long")
    assert (keys["phi3.rope.scaling.original_context_length"], keys["phi3.context_length"]) == (32, 1024)
    assert keys["phi3.rope.scaling.attn_factor"] == pytest.approx(2 ** 0.5)  # sqrt(1 + ln(1024 / 32) / ln(32))
    rope = longrope(32)["rope_parameters"]
    assert list(tensors["rope_factors_long.weight"]) == rope["long_factor"]
    assert list(tensors["rope_factors_short.weight"]) == pytest.approx(rope["short_factor"])
    assert tensors["blk.0.attn_qkv.weight"].shape == (128, 64) and tensors["blk.0.ffn_up.weight"].shape == (256, 64)
    assert keys["phi3.attention.sliding_window"] == 0

    keys, _ = fields("phi4-mini")
    assert keys["phi3.rope.dimension_count"] == 12  # 0.75 of 16


@pytest.mark.parametrize("model_type, settings, message", [
    ("gemma", {}, r"supports the .* families; this model is 'gemma'"),  # Gemma 1: not asked for
    ("qwen3", {"use_sliding_window": True, "max_window_layers": 1, "num_hidden_layers": 2},
     r"llama.cpp's layout of sliding-window and full-attention layers \(no sliding window\)"),
    ("gemma2", {"num_hidden_layers": 2, "layer_types": ["full_attention", "full_attention"]},
     r"\(one full-attention layer in every 2, the others sliding\); this model has \['full_attention', "
     r"'full_attention'\]"),
    ("gemma2", {"head_dim": 64, "query_pre_attn_scalar": 100}, r"needs query_pre_attn_scalar 64 as in Google's"),
    ("gemma2", {"num_hidden_layers": 46, "hidden_size": 4608, "num_attention_heads": 32, "query_pre_attn_scalar": 256},
     r"needs query_pre_attn_scalar 144 .*this model has 256"),  # 27B
    ("gemma3_text", {"attn_logit_softcapping": 50.0}, r"needs attn_logit_softcapping unset, as llama.cpp's gemma3"),
    ("qwen3", {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0,
                                   "original_max_position_embeddings": 32768}},
     r"does not handle 'yarn' rope scaling for qwen3; supported: default"),
])
def test_what_llama_cpp_would_run_differently_is_refused_from_the_config(model_type, settings, message):
    from transformers import AutoConfig

    with pytest.raises(ExportError, match=message):
        gguf_families.family_of(AutoConfig.for_model(model_type, **settings))


PUBLISHED_SHAPES = {
    "Llama-3.2-1B": ("llama", dict(num_hidden_layers=16, hidden_size=2048, num_attention_heads=32, head_dim=64,
                                   rope_parameters={**LLAMA3_ROPE, "factor": 32.0,
                                                    "original_max_position_embeddings": 8192})),
    "Qwen3-8B": ("qwen3", dict(num_hidden_layers=36, hidden_size=4096, num_attention_heads=32, head_dim=128)),
    "gemma-2-2b": ("gemma2", dict(num_hidden_layers=26, hidden_size=2304, num_attention_heads=8, head_dim=256)),
    "gemma-2-27b": ("gemma2", dict(num_hidden_layers=46, hidden_size=4608, num_attention_heads=32, head_dim=128,
                                   query_pre_attn_scalar=144)),
    "gemma-3-1b": ("gemma3_text", dict(num_hidden_layers=26, hidden_size=1152, num_attention_heads=4, head_dim=256)),
    "gemma-3-27b": ("gemma3_text", dict(num_hidden_layers=62, hidden_size=5376, num_attention_heads=32, head_dim=128,
                                        query_pre_attn_scalar=168, rope_parameters=GEMMA3_ROPE)),
    "gemma-3-4b-it": ("gemma3", dict(text_config=dict(num_hidden_layers=34, hidden_size=2560, num_attention_heads=8,
                                                      head_dim=256, rope_parameters=GEMMA3_ROPE))),
    "Phi-3-mini-4k": ("phi3", dict(num_hidden_layers=32, hidden_size=3072, num_attention_heads=32,
                                   sliding_window=2047)),
    "Phi-3.5-mini": ("phi3", dict(num_hidden_layers=32, hidden_size=3072, num_attention_heads=32,
                                  max_position_embeddings=131072, original_max_position_embeddings=4096,
                                  rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                                   "short_factor": [1.0] * 48, "long_factor": [2.0] * 48})),
    "Phi-4-mini": ("phi3", dict(num_hidden_layers=32, hidden_size=3072, num_attention_heads=24, num_key_value_heads=8,
                                partial_rotary_factor=0.75, max_position_embeddings=131072,
                                original_max_position_embeddings=4096,
                                rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                                 "short_factor": [1.0] * 48, "long_factor": [2.0] * 48})),
}
"""The shapes of published checkpoints (from their config.json), where the family checks have something to say."""


@pytest.mark.parametrize("name", list(PUBLISHED_SHAPES))
def test_published_checkpoints_of_each_family_are_accepted(name):
    from transformers import AutoConfig

    model_type, shape = PUBLISHED_SHAPES[name]
    gguf_families.family_of(AutoConfig.for_model(model_type, **shape))


def _llama_cpp_agreement(llm, reference, tokenizer):
    """Over the texts and the reference's 8-token greedy continuations: the largest logit difference, the
    reference's lead (best token over second) where llama.cpp picks another token, and its lead everywhere;
    all as shares of the largest logit."""
    import numpy as np

    # Not the chat text: after a special token llama.cpp adds the '▁' prefix (as sentencepiece does) where
    # HF's Llama-style tokenizers do not; files from llama.cpp's own converter behave the same.
    for text in TEXTS:
        assert llm.tokenize(text.encode(), add_bos=False) == tokenizer(text, add_special_tokens=False)["input_ids"]
    worst, leads, differing = 0.0, [], []
    for text in texts_for(tokenizer):
        prompt = tokenizer(text)["input_ids"]
        with torch.no_grad():
            ids = reference.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False,
                                     attention_mask=torch.ones(1, len(prompt), dtype=torch.long))[0].tolist()
            want = reference(torch.tensor([ids])).logits[0].numpy()
        llm.reset()
        llm.eval(ids)
        got = np.asarray(llm.scores[:len(ids)])
        largest = float(np.abs(want).max())
        worst = max(worst, float(np.abs(got - want).max()) / largest)
        top2 = np.sort(want, axis=-1)[:, -2:]
        lead = (top2[:, 1] - top2[:, 0]) / largest
        leads.extend(lead)
        differing.extend(lead[got.argmax(-1) != want.argmax(-1)].tolist())
    return worst, differing, np.asarray(leads)
