"""What trains in a stage: a registry of stage specs and the one function that applies them.

    from llava_train.stages import get_stage, apply_stage
    spec = get_stage("stage1")             # StageSpec(projector=True, llm=False, tower=False, lora=False, bits=None)
    report = apply_stage(model, spec)      # sets requires_grad, returns the trainable-module table

Stage 1 (LLaVA-1.5 pretraining) trains only the projector; stage 2 trains projector + LLM; the
LoRA variants train LoRA adapters on the LLM + the full projector; QLoRA also loads the LLM in 4
bits. The tower can be unfrozen in any stage (`train_tower: true`, with its own lr). Learning
rates per part live in the training arguments (`learning_rate`, `mm_projector_lr`,
`vision_tower_lr`); `param_groups` splits trainable parameters accordingly.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from clips_tower.distributed import numel
from clips_tower.io import lookup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSpec:
    projector: bool
    llm: bool
    tower: bool = False
    lora: bool = False
    bits: int | None = None  # 4 -> QLoRA (bitsandbytes nf4)


STAGES: dict[str, StageSpec] = {
    "stage1": StageSpec(projector=True, llm=False),
    "stage2": StageSpec(projector=True, llm=True),
    "stage2_lora": StageSpec(projector=True, llm=False, lora=True),
    "stage2_qlora": StageSpec(projector=True, llm=False, lora=True, bits=4),
}


def get_stage(name: str, train_tower: bool = False) -> StageSpec:
    spec = lookup(STAGES, name, "stage")
    return replace(spec, tower=train_tower or spec.tower)


def part_of(param_name: str) -> str:
    """'projector' | 'tower' | 'lora' | 'llm' for a (possibly peft-wrapped) Llava parameter name."""
    if "multi_modal_projector" in param_name:
        return "projector"
    if "vision_tower" in param_name:
        return "tower"
    if "lora_" in param_name:
        return "lora"
    return "llm"


def apply_stage(model, spec: StageSpec) -> str:
    """Freeze everything, then unfreeze the parts `spec` trains; returns (and logs) a table.

    With LoRA the model is already peft-wrapped: peft has marked the adapters trainable and the
    projector sits in `modules_to_save`, so only tower/projector flags are applied on top.
    """
    train = {"projector": spec.projector, "tower": spec.tower, "llm": spec.llm, "lora": spec.lora}
    for name, p in model.named_parameters():
        part = part_of(name)
        if spec.lora and part in ("projector", "lora"):
            continue  # peft's choice: adapters + modules_to_save copy train, originals stay frozen
        p.requires_grad_(bool(train[part]) and p.dtype.is_floating_point)
    return trainable_report(model)


def trainable_report(model) -> str:
    """Per top-level part: trainable / total parameter counts, one line each (also logged)."""
    totals: dict[str, list[int]] = {}
    for name, p in model.named_parameters():
        n = numel(p)  # the whole parameter, also under ZeRO-3
        t = totals.setdefault(part_of(name), [0, 0])
        t[1] += n
        t[0] += n if p.requires_grad else 0
    lines = [f"{part:>9}: {tr:>12,} / {tot:>12,} trainable" for part, (tr, tot) in sorted(totals.items())]
    trainable = sum(t[0] for t in totals.values())
    lines.append(f"{'total':>9}: {trainable:>12,} / {sum(t[1] for t in totals.values()):>12,} trainable")
    table = "trainable modules:\n" + "\n".join(lines)
    log.info(table)
    return table


def param_groups(model, lr: float, projector_lr: float | None, tower_lr: float | None,
                 weight_decay: float) -> list[dict]:
    """AdamW groups: per part lr (projector/tower fall back to `lr`), no decay on biases and norms."""
    lrs = {"projector": projector_lr or lr, "tower": tower_lr or lr, "llm": lr, "lora": lr}
    groups: dict[tuple[str, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2 and "norm" not in name.lower()
        groups.setdefault((part_of(name), decay), []).append(p)
    return [{"params": ps, "lr": lrs[part], "weight_decay": weight_decay if decay else 0.0}
            for (part, decay), ps in sorted(groups.items())]
