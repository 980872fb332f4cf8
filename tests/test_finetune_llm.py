"""Chapter 4, part B: instruction data from SafetyScenes ground truth, LoRA and QLoRA on SmolLM2."""

import json

import pytest

from efsora_helpers.finetuning import llm_data as d
from efsora_helpers.reasoner.evaluation import EVAL_SCENES, load_eval_set
from efsora_helpers.safetyscenes.shipped import shipped_scene


@pytest.fixture(scope="module")
def few_scenes():
    return d.shipped_source_scenes()[:6]


@pytest.fixture(scope="module")
def rows(few_scenes):
    return d.generate_examples(few_scenes, per_kind=2)


def test_sources_never_use_the_test_split():
    scenes = d.shipped_source_scenes()
    assert scenes and not any(s.scene_id.startswith("test_") for s in scenes)
    assert not {s.scene_id for s in scenes} & set(EVAL_SCENES)


def test_facts_from_ground_truth_agree_with_the_ground_truth(few_scenes):
    for scene in few_scenes:
        g = scene.ground_truth
        r = d.facts_from_ground_truth(g)
        assert r.safety.workers_without_hard_hat == g["counts"]["workers_without_hard_hat"]
        assert r.safety.workers_without_vest == g["counts"]["workers_without_vest"]
        assert len(r.objects) == len(g["objects"]) and [o.id for o in r.objects] == list(range(len(r.objects)))


def test_answers_match_chapter_2_scoring_on_ground_truth():
    """Answer the evaluation's own questions on its own scenes from ground-truth facts: chapter 2's
    scorer must call every answer right (the generator's answers are the truth, in the schema)."""
    from efsora_helpers.reasoner.evaluation import score
    from efsora_helpers.reasoner.structured import DirectResponse

    kind_of = {"people": "people", "no_hard_hat": "without_hat", "no_vest": "without_vest", "in_zone": "in_zone",
               "forklifts": "forklifts", "any_no_hat": "any_without_hat", "sign_text": "sign_text"}
    for q in load_eval_set():
        result = d.facts_from_ground_truth(shipped_scene(q.scene).ground_truth)
        answer = DirectResponse.model_validate(d.answer_for(kind_of[q.id.split(":")[1]], result))
        assert score(q, answer.answer, answer.number), (q.id, answer)


def test_direct_prompt_is_the_one_the_local_provider_sends(few_scenes):
    """Like for like: the training prompt equals LocalProvider.prompt_for's text for the same request."""
    from efsora_helpers.llm.local_provider import LocalProvider
    from efsora_helpers.llm.structured import schema_of
    from efsora_helpers.llm.types import ChatRequest
    from efsora_helpers.reasoner.prompts import PromptEngine
    from efsora_helpers.reasoner.structured import DirectResponse

    result = d.facts_from_ground_truth(few_scenes[0].ground_truth)
    question = "How many pallets can you see?"
    provider = LocalProvider.__new__(LocalProvider)  # no model load: prompt_for only renders

    class _Text:
        render = staticmethod(lambda m: d.tokenizer().apply_chat_template(m, tokenize=False, add_generation_prompt=True))

    provider.llm = _Text()
    built = PromptEngine(d.count_tokens, token_budget=d.TOKEN_BUDGET).build(result, question, "direct")
    expected, _, _ = provider.prompt_for(ChatRequest(model="m", messages=built.messages, response_schema=schema_of(DirectResponse)))
    messages, _ = d.direct_messages(result, question)
    assert d.render_row({"messages": messages, "completion": "{}"})["prompt"] == expected


def test_completions_validate_and_tool_calls_run(rows):
    from efsora_helpers.reasoner.structured import DirectResponse

    finals = [r for r in rows if r["turn"] == "final"]
    assert finals and all(DirectResponse.model_validate_json(r["completion"]) for r in finals)
    calls = [json.loads(r["completion"]) for r in rows if r["turn"] == "call"]
    assert {c["tool"] for c in calls} >= {"count_objects", "check_ppe", "objects_in_zone"}


def test_decontamination_catches_eval_scenes_and_questions(rows):
    """The proof: rows built from an evaluation scene, or asking an evaluation question, are flagged;
    rows from other scenes with new wording are not."""
    ref = d.eval_reference()
    planted = d.generate_examples([d.SourceScene(s, int(shipped_scene(s).ground_truth["seed"]),
                                                 shipped_scene(s).ground_truth) for s in EVAL_SCENES[:2]])
    assert planted and all("eval scene id" in d.contamination(r, ref) for r in planted)
    assert all("eval scene facts" in d.contamination(r, ref) for r in planted)
    # the same scene under another id is still caught by its seed and its facts
    disguised = [{**r, "scene_id": "train_9999"} for r in planted]
    assert all(d.contamination(r, ref) for r in disguised)
    for q in ref.questions:
        assert d.contamination({**rows[0], "question": q}, ref), q
        assert d.contamination({**rows[0], "question": "Please look closely. " + q}, ref), q
    clean = [r for r in rows if r["question"] not in ref.questions]
    assert any(not d.contamination(r, ref) for r in clean)


def test_prepare_dedups_decontaminates_and_splits_by_scene(rows):
    data, report = d.prepare(rows, val_fraction=0.2, seed=0)
    assert report.removed["duplicates"] > 0 and report.removed["decontamination"] > 0
    train, val = data["train"], data["validation"]
    assert not set(train["scene_id"]) & set(val["scene_id"])
    texts = list(train["text"]) + list(val["text"])
    assert len(set(texts)) == len(texts)
    ref = d.eval_reference()
    assert not any(d.contamination(r, ref) for part in (train, val) for r in part)
    assert all(t.endswith("<|im_end|>") for t in texts)


# ---- LoRA ------------------------------------------------------------------------------------------
def test_lora_forward_equals_the_merged_weight():
    import torch

    from efsora_helpers.finetuning.llm_lora import lora_delta, lora_forward

    g = torch.Generator().manual_seed(0)
    W, A, B = torch.randn(6, 5, generator=g), torch.randn(2, 5, generator=g), torch.randn(6, 2, generator=g)
    x = torch.randn(3, 5, generator=g)
    assert torch.allclose(lora_forward(x, W, A, B, alpha=4, r=2), x @ (W + lora_delta(A, B, 4, 2)).T, atol=1e-5)
    assert torch.linalg.matrix_rank(lora_delta(A, B, 4, 2)) <= 2


@pytest.fixture(scope="module")
def base_model():
    from efsora_helpers.finetuning.llm_lora import load_base

    return load_base()


@pytest.fixture(scope="module")
def short_examples(rows):
    from datasets import Dataset

    from efsora_helpers.finetuning.llm_lora import encode, shortest

    rendered = Dataset.from_list(rows).map(d.render_row)
    return [encode(r) for r in shortest(rendered, 3)]


@pytest.mark.slow
def test_parameter_counts_match_peft(base_model):
    import copy

    from efsora_helpers.finetuning.llm_lora import TARGETS, LoraSettings, lora_parameter_counts, peft_model, trainable_parameters

    rows = {(r["targets"], r["rank"]): r["trainable"] for r in lora_parameter_counts(base_model, ranks=(4, 8))}
    assert rows[("q,v", 8)] == 30 * 8 * ((576 + 576) + (576 + 192))  # SmolLM2-135M: 30 layers, 3 KV heads of 64
    for name in ("q,v", "all linear"):
        model = peft_model(LoraSettings(rank=4, targets=TARGETS[name]), copy.deepcopy(base_model))
        assert trainable_parameters(model) == rows[(name, 4)]


@pytest.mark.slow
def test_merged_and_unmerged_agree_and_adapter_is_small(base_model, short_examples, scratch_dir):
    import copy

    from efsora_helpers.finetuning.llm_lora import LoraSettings, merge_agreement, peft_model, save_adapter

    # random B (not zeros) so the adapter changes the output and the comparison means something
    model = peft_model(LoraSettings(rank=8, dropout=0.0), copy.deepcopy(base_model), init_lora_weights=False)
    agree = merge_agreement(model, short_examples[:1])
    assert agree["max_abs_logit_diff"] < 1e-3 and agree["same_argmax"]
    saved = save_adapter(model, scratch_dir / "adapter")
    assert "adapter_model.safetensors" in saved["files"] and saved["mb"] < 5


@pytest.mark.slow
def test_a_few_lora_steps_lower_the_validation_loss(base_model, short_examples):
    import copy

    from efsora_helpers.finetuning.llm_lora import LoraSettings, peft_model, train

    settings = LoraSettings(rank=8, lr=2e-3, steps=4, eval_every=4, warmup_steps=1, dropout=0.0)
    model = peft_model(settings, copy.deepcopy(base_model))
    log = train(model, short_examples[:2], short_examples[2:], settings)
    assert log.best_val_loss < log.initial_val_loss


@pytest.mark.slow
def test_qlora_gradients_survive_a_validation_pass(short_examples):
    """bitsandbytes repacks NF4 weights for CPU inference after an eval-mode pass; that path has no
    backward. With the repacking left on, half the LoRA matrices got no gradient after one validation
    pass; load_base turns it off, so the gradients equal those of a model never evaluated."""
    import torch

    from efsora_helpers.finetuning.llm_lora import LoraSettings, completion_loss, load_base, peft_model

    def grads(validate_first):
        torch.manual_seed(0)
        model = peft_model(LoraSettings(rank=4, quantization="nf4", dropout=0.0), load_base("nf4"),
                           init_lora_weights=False)
        if validate_first:
            completion_loss(model, short_examples[:1])
        model.train()
        ex = short_examples[1]
        model(input_ids=torch.tensor([ex["input_ids"]]), labels=torch.tensor([ex["labels"]])).loss.backward()
        return {k: p.grad for k, p in model.named_parameters() if p.requires_grad}

    fresh, after = grads(False), grads(True)
    assert all(g is not None for g in after.values())
    assert max(float((fresh[k] - after[k]).abs().max()) for k in fresh) < 1e-5


@pytest.mark.slow
def test_lora_command_ships_adapter_log_and_card(rows, scratch_dir):
    from efsora_helpers.cli import main

    data, _ = d.prepare(rows, val_fraction=0.2, seed=0)
    data.save_to_disk(str(scratch_dir / "data"))
    (scratch_dir / "data" / "report.json").write_text(json.dumps({"counts": {"train": len(data["train"])}}))
    code = main(["finetune", "lora", "--data", str(scratch_dir / "data"), "--out", str(scratch_dir / "run"),
                 "--steps", "1", "--grad-accum", "1", "--warmup", "1", "--eval-every", "1", "--max-train", "1",
                 "--max-val", "1", "--max-tokens", "256"])
    assert code == 0
    run = scratch_dir / "run"
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps_run"] == 1 and metrics["adapter_mb"] < 5
    assert "smollm2-135m-warehouse" in (run / "README.md").read_text()
    assert len((run / "train_log.jsonl").read_text().splitlines()) == 1


def test_lora_command_without_data_is_one_line_error(tmp_path, capsys):
    from efsora_helpers.cli import main

    assert main(["finetune", "lora", "--data", str(tmp_path / "missing")]) == 2
    assert "efsora finetune llm-data" in capsys.readouterr().err


@pytest.mark.slow
def test_fast_runtime_serves_the_adapter_baked_in(base_model, scratch_dir):
    """onnxruntime-genai built with the adapter gives PEFT's logits and greedy text (~30-60 s build)."""
    import copy

    import torch

    from efsora_helpers.finetuning.llm_lora import LoraSettings, build_ort_with_adapter, ort_agreement, peft_model, save_adapter

    torch.manual_seed(0)
    model = peft_model(LoraSettings(rank=8, dropout=0.0), copy.deepcopy(base_model), init_lora_weights=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)  # random but not wild: it changes the answer
    save_adapter(model, scratch_dir / "adapter")
    ort_dir = build_ort_with_adapter(scratch_dir / "adapter", scratch_dir / "ort")
    prompt = d.tokenizer().apply_chat_template([{"role": "user", "content": "How many forklifts are there?"}],
                                               tokenize=False, add_generation_prompt=True)
    r = ort_agreement(model, ort_dir, prompt, new_tokens=12)
    assert r["max_abs_logit_diff_peft_vs_base"] > 0.5  # the adapter matters...
    assert r["max_abs_logit_diff_ort_vs_peft"] < 1e-3 and r["same_greedy_tokens"]  # ...and ORT applies it


@pytest.mark.slow
def test_chapter_2_reasoner_runs_on_the_adapted_model(base_model, scratch_dir):
    import copy

    from efsora_helpers.finetuning.llm_lora import LoraSettings, adapted_client, peft_model, save_adapter
    from efsora_helpers.reasoner import VisualReasoner
    from efsora_helpers.reasoner.evaluation import evaluate

    save_adapter(peft_model(LoraSettings(rank=4), copy.deepcopy(base_model)), scratch_dir / "adapter")
    client = adapted_client(scratch_dir / "adapter", cache_dir=scratch_dir / "cache")
    assert client.label == "local/smollm2-135m-warehouse"
    answers = evaluate(lambda: VisualReasoner(client), load_eval_set()[:2], progress=False)
    assert all(a.valid and a.error is None for a in answers)


def test_shipped_adapter_is_a_registered_asset_with_a_card():
    from efsora_helpers.finetuning.llm_lora import ADAPTER_MODEL_ID, shipped_adapter_dir
    from efsora_helpers.llm.catalog import model_info

    folder = shipped_adapter_dir()  # checks the sha256 of the whole folder
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "metrics.json", "train_log.jsonl"} <= names
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["best_val_loss"] < metrics["initial_val_loss"]
    assert "model card" in (folder / "README.md").read_text()
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert model_info("local", ADAPTER_MODEL_ID).input_per_mtok == 0.0


@pytest.mark.slow
def test_local_provider_serves_the_tuned_model_by_its_id():
    from efsora_helpers.finetuning.llm_lora import ADAPTER_MODEL_ID
    from efsora_helpers.llm import LLMClient

    client = LLMClient("local", model=ADAPTER_MODEL_ID)
    assert client.adapter.model_id == ADAPTER_MODEL_ID
    assert ADAPTER_MODEL_ID in client.adapter.llm.path.name  # the adapted build, not the base model
    assert LLMClient("local").adapter.model_id != ADAPTER_MODEL_ID
