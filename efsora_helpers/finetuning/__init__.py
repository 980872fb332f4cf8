"""Chapter 4: the Fine-tuning Lab. Part A fine-tunes the detector on a new SafetyScenes task
(transfer learning); part B fine-tunes the local LLM (SmolLM2-135M-Instruct) with LoRA and QLoRA on
instruction data built from SafetyScenes ground truth (``llm_data``, ``llm_lora``).

Start with ``notebooks/finetuning/``. Submodules are imported on use, so ``import
efsora_helpers.finetuning`` stays cheap.
"""

from __future__ import annotations
