"""Ollama export: the Modelfile's TEMPLATE prompts the model exactly as its chat template does.

The TEMPLATE is Go text/template. It is rendered two ways: always with the package's small Go
template interpreter (itself checked here against templates with known Go output), and, where a
Go toolchain is installed, with Go's real text/template executed the way Ollama executes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from export_fixtures import SYSTEM, MISTRAL_TEMPLATE, ticket, tiny_run
from jupyter_finetune.models.tokenizer import CHATML_TEMPLATE
from jupyter_finetune.export import ExportError, export_run
from jupyter_finetune.export.gotemplate import GoTemplateError, render
from jupyter_finetune.export.ollama import shared_system_prompt
from jupyter_finetune.export.ollama_template import chat_layout, render_ollama

MULTI_TURN = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Ticket 1: the printer on floor 3 is broken."},
    {"role": "assistant", "content": '{"team": "it", "priority": "high"}'},
    {"role": "user", "content": "Ticket 2: my invoice shows the wrong amount.\nPlease check."},
    {"role": "assistant", "content": '{"team": "billing", "priority": "medium"}'},
    {"role": "user", "content": "Ticket 3: {{ not a template }} \"quoted\" and a tab\there."},
]
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
SYSTEM_INTO_FIRST_USER_TEMPLATE = (  # Mistral v0.3 style: no system turn of its own
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] + '\n\n' %}"
    "{% set messages = messages[1:] %}{% else %}{% set sys = '' %}{% endif %}{% for m in messages %}"
    "{% if m['role'] == 'user' %}[INST] {% if loop.first %}{{ sys }}{% endif %}{{ m['content'] }} [/INST]"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")
GO_RENDERER = """package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Case struct {
	Template string     `json:"template"`
	Messages []*Message `json:"messages"`
}

// Executes each template as Ollama's template.Execute does for a chat: missingkey=zero, its json
// function, the collated messages and every system message joined as .System.
func main() {
	var cases []Case
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	var out []string
	for _, c := range cases {
		var system []string
		for _, m := range c.Messages {
			if m.Role == "system" {
				system = append(system, m.Content)
			}
		}
		t := template.Must(template.New("").Option("missingkey=zero").Funcs(funcs).Parse(c.Template))
		var b strings.Builder
		values := map[string]any{"System": strings.Join(system, "\\n\\n"), "Messages": c.Messages, "Response": ""}
		if err := t.Execute(&b, values); err != nil {
			panic(err)
		}
		out = append(out, b.String())
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
"""
# Templates with the output Go's text/template gives them (checked with go1.19), for the interpreter.
KNOWN_GO = [
    ("{{ range $i, $m := .Messages }}{{ $i }}:{{ $m.Role }};{{ end }}", "0:user;1:assistant;"),
    ("{{- range .Messages -}}\n  [{{ .Content }}]\n{{- end }}", "[hi][yo]"),
    ('{{ if eq .System "" }}none{{ else if .System }}sys{{ else }}never{{ end }}', "none"),
    ("{{ range .Missing }}x{{ else }}empty{{ end }}|{{ .Missing }}", "empty|<no value>"),
    ('{{ and .Response "a" }}|{{ or .Response "b" }}|{{ not .Messages }}', "|b|false"),
    ("{{ len (slice .Messages 1) }}{{ (index .Messages 0).Role }}", None),  # field of a parenthesised call: refused
    ('{{ $x := "outer" }}{{ if true }}{{ $x := "inner" }}{{ $x }}{{ end }} {{ $x }}', "inner outer"),
    ('{{ $x := "a" }}{{ range .Messages }}{{ $x = .Role }}{{ end }}{{ $x }}', "assistant"),
    ('{{ "tab\\there\\u00e9" }} {{ `raw\\n` }} {{ 42 }}', "tab\there\u00e9 raw\\n 42"),
    ("{{ range $i, $m := .Messages }}{{ if eq (len (slice $.Messages $i)) 1 }}last={{ $m.Content }}{{ end }}{{ end }}",
     "last=yo"),
]
HI_YO = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]


@pytest.fixture(scope="module")
def ollama_run(tmp_path_factory, tiny_tokenizer):
    run, _ = tiny_run(tmp_path_factory.mktemp("ollama"), tiny_tokenizer)
    return run, export_run(run, "ollama", quant="q8_0")


def modelfile_template(folder) -> str:
    return re.search(r'^TEMPLATE """(.*?)"""$', (folder / "Modelfile").read_text(), re.S | re.M).group(1)


def apply(tokenizer, messages, template=None):
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=messages[-1]["role"] != "assistant")


def go_render(tmp_path, cases: list[tuple[str, list[dict[str, str]]]]) -> list[str]:
    """Each (template, messages) executed by Go's text/template as Ollama executes a chat template."""
    (tmp_path / "render.go").write_text(GO_RENDERER)
    payload = json.dumps([{"template": t, "messages": m} for t, m in cases])
    done = subprocess.run(["go", "run", str(tmp_path / "render.go")], input=payload, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, "GOTOOLCHAIN": "local"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


needs_go = pytest.mark.skipif(shutil.which("go") is None, reason="no Go toolchain (apt-get install golang-go) to "
                              "run Go's real text/template; the interpreter tests still run")


def test_ollama_folder_holds_the_gguf_a_modelfile_and_the_create_command(ollama_run):
    run, result = ollama_run
    assert result.path == run.path / "export" / "ollama" and result.quant == "q8_0"
    assert sorted(f.path for f in result.files) == ["Modelfile", f"{run.name}-q8_0.gguf"]
    modelfile = (result.path / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{run.name}-q8_0.gguf\n")
    assert result.command == f"cd {result.path} && ollama create {run.name} -f Modelfile"
    assert result.command in result.summary()


def test_modelfile_stops_on_the_end_of_turn_tokens_and_keeps_the_training_system_prompt(ollama_run):
    _, result = ollama_run
    modelfile = (result.path / "Modelfile").read_text()
    assert re.findall(r"^PARAMETER stop (.*)$", modelfile, re.M) == ['"<|im_end|>"', '"<|im_start|>"']
    assert modelfile.endswith(f'SYSTEM """{SYSTEM}"""\n')


def test_modelfile_template_renders_the_chat_templates_prompt_for_a_multi_turn_conversation(ollama_run, tiny_tokenizer):
    _, result = ollama_run
    template = modelfile_template(result.path)
    for messages in (MULTI_TURN, MULTI_TURN[1:], MULTI_TURN[:-1]):
        assert render_ollama(template, messages) == apply(tiny_tokenizer, messages)


@pytest.mark.slow
@needs_go
def test_modelfile_template_renders_the_same_prompt_in_gos_real_text_template(ollama_run, tiny_tokenizer, tmp_path):
    _, result = ollama_run
    template = modelfile_template(result.path)
    conversations = [MULTI_TURN, MULTI_TURN[1:], MULTI_TURN[:-1]]
    rendered = go_render(tmp_path, [(template, m) for m in conversations])
    assert rendered == [apply(tiny_tokenizer, m) for m in conversations]


@pytest.mark.slow
@needs_go
def test_interpreter_agrees_with_go_on_the_known_templates(tmp_path):
    cases = [(t, HI_YO) for t, expected in KNOWN_GO if expected is not None]
    assert go_render(tmp_path, cases) == [expected for _, expected in KNOWN_GO if expected is not None]


@pytest.mark.parametrize(("template", "expected"), KNOWN_GO)
def test_interpreter_gives_gos_output_or_refuses(template, expected):
    if expected is None:
        with pytest.raises(GoTemplateError):
            render_ollama(template, HI_YO)
    else:
        assert render_ollama(template, HI_YO) == expected


def test_interpreter_refuses_syntax_outside_its_subset():
    for template in ("{{ with .System }}x{{ end }}", "{{ .System | printf }}", "{{ if .System }}x", "{{ end }}",
                     '{{ printf "%s" .System }}'):
        with pytest.raises(GoTemplateError):
            render(template, {"System": "s", "Messages": []})


@pytest.mark.parametrize(("name", "template"), [("chatml", CHATML_TEMPLATE), ("llama3", LLAMA3_TEMPLATE),
                                                ("inst", MISTRAL_TEMPLATE),
                                                ("system-in-first-user", SYSTEM_INTO_FIRST_USER_TEMPLATE)])
def test_derived_template_matches_other_chat_template_layouts(tiny_tokenizer, name, template):
    tokenizer = _with_template(tiny_tokenizer, template)
    go_template = chat_layout(tokenizer).go_template()
    for messages in (MULTI_TURN, MULTI_TURN[1:], MULTI_TURN[:-1]):
        assert render_ollama(go_template, messages) == apply(tokenizer, messages)


def test_system_prompt_is_set_only_when_every_conversation_shares_it():
    assert shared_system_prompt([ticket(1), ticket(2)]) == (SYSTEM, None)
    assert shared_system_prompt([ticket(1, system=None), ticket(2, system=None)]) == (None, None)
    system, note = shared_system_prompt([ticket(1), ticket(2, system="Other.")])
    assert system is None and "2 different system prompts" in note and "send the system message" in note
    system, note = shared_system_prompt([ticket(1), ticket(2, system=None)])
    assert system is None and "(some none)" in note


def test_ollama_export_of_mixed_system_prompts_writes_no_system_and_says_why(tmp_path, tiny_tokenizer):
    run, _ = tiny_run(tmp_path, tiny_tokenizer, name="mixed", conversations=[ticket(1), ticket(2, system="Other.")])
    result = export_run(run, "ollama")
    assert "SYSTEM" not in (result.path / "Modelfile").read_text()
    assert any("different system prompts" in note for note in result.notes)


@pytest.mark.smollm2
def test_smollm2_modelfile_template_keeps_its_default_system_prompt(tmp_path):
    """SmolLM2's template adds its own system message when a conversation has none; the TEMPLATE must too."""
    from jupyter_finetune.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    layout = chat_layout(tokenizer)
    assert layout.default_system.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    for messages in (MULTI_TURN, MULTI_TURN[1:]):
        assert render_ollama(layout.go_template(), messages) == apply(tokenizer, messages)
    if shutil.which("go"):
        cases = [(layout.go_template(), m) for m in (MULTI_TURN, MULTI_TURN[1:])]
        assert go_render(tmp_path, cases) == [apply(tokenizer, m) for _, m in cases]


def _with_template(tokenizer, template):
    import copy

    clone = copy.deepcopy(tokenizer)
    clone.chat_template = template
    return clone
