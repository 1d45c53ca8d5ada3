"""Actor and critic as ONE ``nn.Module``, so accelerate/DeepSpeed wrap a single engine with a single optimizer.

* ``shared`` critic: the value head reads the policy's last hidden state (one forward pass, cheapest; the value
  loss also shapes the policy's trunk, weighted by ``vf_coef``).
* ``separate`` critic: the value head sits on its own backbone (a copy of the policy's, or another checkpoint).
  Its parameters are disjoint from the policy's, so summing the two losses trains each network on its own loss;
  only gradient clipping is joint (one norm over both).

Under DeepSpeed ZeRO-3 both backbones are partitioned by the one engine; generation gathers them
(``trl.models.utils.unwrap_model_for_generation``) and calls ``module.policy.generate``.

Saved layout (``save_actor_critic``): the policy as a standard Hugging Face directory at ``output_dir`` (with
LoRA: merged there, adapter in ``output_dir/adapter``), the critic under ``output_dir/critic/``
(``value_head.safetensors`` + the backbone directory when separate). Resuming a killed run goes through the
``checkpoint-N`` directories (``alignment.ppo_checkpoint``), not through this final layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


class ActorCritic(nn.Module):
    """``forward(input_ids, attention_mask, position_ids) -> (logits (B, L, V), values (B, L))``."""

    def __init__(self, policy: nn.Module, critic_backbone: nn.Module | None = None, init_std: float = 0.0):
        super().__init__()
        self.policy = policy
        self.critic_backbone = critic_backbone
        hidden_size = (critic_backbone or policy).config.hidden_size
        self.value_head = nn.Linear(hidden_size, 1)
        # std 0 (the default) starts every value at 0, a neutral baseline instead of noise fed into GAE.
        nn.init.normal_(self.value_head.weight, std=init_std)
        nn.init.zeros_(self.value_head.bias)

    @property
    def shared(self) -> bool:
        return self.critic_backbone is None

    @property
    def is_gradient_checkpointing(self) -> bool:  # read by trl's unwrap_model_for_generation
        return False

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.policy(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=self.shared,
            use_cache=False,
        )
        if self.shared:
            hidden = out.hidden_states[-1]
        else:
            hidden = self.critic_backbone(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            ).last_hidden_state
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return out.logits, values

    def critic_parameters(self) -> list[nn.Parameter]:
        params = list(self.value_head.parameters())
        if self.critic_backbone is not None:
            params += [p for p in self.critic_backbone.parameters() if p.requires_grad]
        return params

    def policy_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.policy.parameters() if p.requires_grad]


def join_query_response(
    queries: torch.Tensor, query_mask: torch.Tensor, responses: torch.Tensor, response_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, Q)`` left-padded prompts + ``(B, R)`` right-padded responses -> ``input_ids, attention_mask,
    position_ids`` of shape ``(B, Q + R)``; positions skip the left padding, as ``generate`` counts them."""
    input_ids = torch.cat([queries, responses], dim=1)
    attention_mask = torch.cat([query_mask.long(), response_mask.long()], dim=1)
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    return input_ids, attention_mask, position_ids


def save_actor_critic(
    model: ActorCritic, state_dict: dict[str, torch.Tensor], output_dir: str | Path, base_model_path: str
) -> None:
    """Write the policy and the critic; ``state_dict`` is the full gathered one (main process only).

    Call with the state dict from ``accelerator.get_state_dict`` (ZeRO-3 gathers it). With LoRA the adapter
    goes to ``output_dir/adapter`` and the merged model to ``output_dir`` (as the other stages save), so the
    next stage and evaluation load ``output_dir`` like any checkpoint.
    """
    from safetensors.torch import save_file

    output_dir = Path(output_dir)
    part = {"policy.": {}, "value_head.": {}, "critic_backbone.": {}}
    for key, tensor in state_dict.items():
        prefix = next(p for p in part if key.startswith(p))
        part[prefix][key[len(prefix) :]] = tensor.detach().cpu().contiguous()
    if hasattr(model.policy, "peft_config"):
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        model.policy.save_pretrained(output_dir / "adapter", state_dict=part["policy."])
        base = AutoModelForCausalLM.from_pretrained(base_model_path)
        PeftModel.from_pretrained(base, output_dir / "adapter").merge_and_unload().save_pretrained(output_dir)
    else:
        model.policy.save_pretrained(output_dir, state_dict=part["policy."])
    critic_dir = output_dir / "critic"
    critic_dir.mkdir(parents=True, exist_ok=True)
    save_file(part["value_head."], str(critic_dir / "value_head.safetensors"))
    if model.critic_backbone is not None:
        model.critic_backbone.save_pretrained(critic_dir / "backbone", state_dict=part["critic_backbone."])
    (critic_dir / "critic.json").write_text(json.dumps({"shared_with_policy": model.shared}) + "\n")
